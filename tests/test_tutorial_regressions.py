"""Regression checks that used to be asserts inside the tutorials (issue 20: narrative over verification).

The tutorials keep the asserts that teach (a derivation checked against a loop, a brute-force oracle, a
gradient check) and print what a student wants to see; the pure regression asserts (exact stored
numbers, shapes, names, repeated parity checks) live here, unchanged in strength, on the same inputs
the tutorial builds. Each section names the tutorial and the cell it came from.
"""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from minimner import backend

# --------------------------------------------------------------------------------------------------
# Tutorial 10: the tweet, the picture and the tiny MGCMT of sections 2–9, built exactly as there.
# --------------------------------------------------------------------------------------------------

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Kelly", "walk", "##s", "her", "dog", "at", "Kew",
          "park", "!"]
H, HEADS, E = 32, 2, 6


def _draw_park(size=(320, 256)):
    w, h = size
    im = Image.new("RGB", size, (135, 195, 250))
    d = ImageDraw.Draw(im)
    d.rectangle([0, int(0.55 * h), w, h], fill=(70, 160, 70))
    d.ellipse([20, 60, 100, 140], fill=(40, 110, 40))
    d.rectangle([55, 140, 65, 150], fill=(100, 60, 30))
    d.ellipse([96, 72, 122, 98], fill=(235, 190, 160))
    d.rectangle([94, 98, 124, 160], fill=(200, 40, 120))
    d.rectangle([97, 160, 107, 200], fill=(40, 40, 90))
    d.rectangle([111, 160, 121, 200], fill=(40, 40, 90))
    d.line([(124, 120), (150, 170)], fill=(30, 30, 30), width=2)
    d.ellipse([145, 165, 195, 190], fill=(150, 100, 50))
    d.ellipse([185, 155, 207, 175], fill=(130, 85, 40))
    for x in (152, 160, 178, 186):
        d.rectangle([x, 186, x + 4, 200], fill=(120, 80, 40))
    d.rectangle([225, 160, 300, 168], fill=(120, 70, 30))
    d.rectangle([225, 140, 300, 146], fill=(120, 70, 30))
    for x in (230, 292):
        d.rectangle([x, 168, x + 4, 190], fill=(60, 60, 60))
    return im


class _T10:
    pass


@pytest.fixture(scope="module")
def t10():
    from minimner.data.batching import encode_sentence, make_batch
    from minimner.data.conll import Sentence
    from minimner.models.bert import BertConfig, BertModel
    from minimner.models.mgcmt import MGCMT, MGCMTConfig
    from minimner.models.resnet import ResNet
    from minimner.plots.attention import feature_crop
    from minimner.tokenization import BertWordPieceTokenizer
    from minimner.vision.images import eval_transform, normalise
    from minimner.vision.objects import object_ids

    backend.set_backend("numpy")
    s = _T10()
    s.tokenizer = BertWordPieceTokenizer.from_vocab({p: i for i, p in enumerate(PIECES)}, lowercase=False)
    tweet = Sentence(["Kelly", "walks", "her", "dog", "at", "Kew"], ["B-PER", "O", "O", "O", "O", "B-LOC"],
                     image_id="kelly_kew")
    s.batch = make_batch([encode_sentence(s.tokenizer, tweet)])
    s.tokens = s.tokenizer.convert_ids_to_tokens(s.batch.input_ids[0])
    s.words = tweet.words
    s.first = s.batch.first_piece[0]
    s.B, s.T = s.batch.input_ids.shape
    s.W = len(s.words)
    scene = _draw_park()
    s.crop = feature_crop(scene)
    x_img = normalise(eval_transform(scene))[None]
    resnet = ResNet(18, rng=np.random.default_rng(0)).eval()
    s.image = resnet.features(x_img)
    s.objects, s.obj_mask = object_ids(["person", "dog", "bench"], slots=4)
    s.objects = s.objects[None]
    s.aug = np.zeros((s.B, s.T, E), np.float32)
    s.aug[0, s.first] = np.random.default_rng(1).standard_normal((s.W, E))
    s.inputs = dict(input_ids=s.batch.input_ids, input_mask=s.batch.attention_mask, aug=s.aug, image=s.image,
                    objects=s.objects)
    bert_config = BertConfig(vocab_size=len(PIECES), hidden_size=H, num_hidden_layers=1,
                             num_attention_heads=HEADS, intermediate_size=2 * H, max_position_embeddings=32)

    def build(seed=0, **flags):
        rng = np.random.default_rng(seed)
        bert = BertModel(bert_config, add_pooling_layer=False, rng=rng)
        return MGCMT(bert, MGCMTConfig(image_dim=512, object_slots=4, aug_dim=E, **flags), rng=rng)

    def spread(model, seed=0, prefix=""):
        g = np.random.default_rng(seed)
        for name, p in model.named_parameters():
            if not name.startswith(prefix):
                continue
            if name.endswith("LayerNorm.weight"):
                p.data[...] = 1 + 0.1 * g.standard_normal(p.data.shape)
            elif p.data.ndim == 1:
                p.data[...] = 0.1 * g.standard_normal(p.data.shape)
            else:
                p.data[...] = g.standard_normal(p.data.shape) / np.sqrt(p.data[0].size)
        return model

    s.build, s.spread = build, spread
    s.model = build().eval()
    s.model.emissions(**s.inputs)
    s.p_init = s.model.attention["txt2img"]
    spread(s.model)
    s.e_model, s.e_aux_model = s.model.emissions(**s.inputs)
    return s


def test_t10_defaults_and_flags():
    """Tutorial 10, cells 2 and 4: the default fusion and the original's (inverted) flags."""
    from minimner.models.fusion import FUSION_METHODS, fusion_method, fusion_name
    from minimner.models.mgcmt import MGCMTConfig

    assert MGCMTConfig().fusion == "gate_concat"
    paper = MGCMTConfig()
    assert paper.original_flags() == dict(use_char_cnn=1, aug_before=1, aug_gate=1, ffusion_method=2, main_cat=0,
                                          alpha_seg=1, seg_task=0)
    assert MGCMTConfig.from_original_flags() == paper
    assert MGCMTConfig.from_original_flags(use_char_cnn=0, char_vocab=9).char_cnn
    assert MGCMTConfig.from_original_flags(alpha_seg=0).aux_mix and not paper.aux_mix
    assert MGCMTConfig.from_original_flags(seg_task=0).aux_loss and not MGCMTConfig.from_original_flags(seg_task=1).aux_loss
    assert [MGCMTConfig.from_original_flags(aug_before=b, aug_gate=g).aug for b, g in ((1, 1), (1, 0), (0, 1), (2, 1))] \
        == ["add", "gate", "embed", "none"]
    assert MGCMTConfig.from_original_flags(main_cat=1).merge == "bert"
    assert [fusion_name(i) for i in range(9)] == list(FUSION_METHODS) and fusion_method("grid_only") == 8


def test_t10_tweet_picture_and_model(t10):
    """Tutorial 10, cells 6, 8, 11 and 13: the tweet's pieces, the picture's shapes, the init, the emissions."""
    from minimner.data.labels import AUX_TAGS, MAIN_TAGS
    from minimner.vision.objects import class_id

    s = t10
    assert (s.B, s.T, s.W) == (1, 9, 6) and s.tokens[3] == "##s" and s.first.tolist() == [1, 2, 4, 5, 6, 7]
    assert MAIN_TAGS[s.batch.labels[0, 3]] == "X" and AUX_TAGS[s.batch.aux_labels[0, 7]] == "B"
    assert s.crop.shape == (224, 224, 3) and s.image.shape == (1, 512, 7, 7) and s.image.dtype == np.float32
    assert s.objects.tolist() == [[class_id("person"), class_id("dog"), class_id("bench"), 0]]
    assert not s.aug[0, [0, 3, 8]].any()
    assert np.abs(s.p_init - 1 / 49).max() < 2e-3
    assert s.model.attention["txt2img"].max() > 2 / 49
    assert s.e_model.shape == (1, 9, 13) and s.e_aux_model.shape == (1, 9, 7) and s.e_model.dtype == np.float32


def test_t10_attention_maps_and_gates(t10):
    """Tutorial 10, cell 25: the twelve maps' shapes and the two gates."""
    s = t10
    B, T = s.B, s.T
    s.model.emissions(**s.inputs)
    expect = {"txt2img": (B, HEADS, T, 49), "img2txt": (B, HEADS, 49, T), "txt2txt": (B, HEADS, T, 49),
              "txt2obj": (B, HEADS, T, 4), "obj2txt": (B, HEADS, 4, T), "txt2obj_v2": (B, HEADS, T, 4),
              "img2img": (B, HEADS, 49, 49), "img2img_v2": (B, HEADS, 49, 49), "obj2obj": (B, HEADS, 4, 4),
              "obj2obj_v2": (B, HEADS, 4, 4), "self_aux": (B, HEADS, T, T), "self_main": (B, HEADS, T, T)}
    assert {k: v.shape for k, v in s.model.attention.items()} == expect
    assert set(s.model.gates) == {"image", "object"} and s.model.gates["image"].shape == (B, T, H)


def test_t10_figures_draw_the_data(t10):
    """Tutorial 10, cells 27 and 30: what plot_tweet and plot_image_attention draw is the model's data."""
    from matplotlib.figure import Figure

    from minimner.plots.attention import plot_image_attention, plot_tweet

    s = t10
    s.model.emissions(**s.inputs)
    word = s.words.index("dog")
    txt2img_words = s.model.attention["txt2img"][0][:, s.first]
    txt2obj_words = s.model.attention["txt2obj"][0][:, s.first]
    gates_words = {k: v[0, s.first] for k, v in s.model.gates.items()}
    fig = plot_tweet(s.crop, s.words, txt2img_words, txt2obj_words, s.objects[0], s.obj_mask, gates_words,
                     word_index=word, title="random MGCMT: what 'dog' looks at")
    ax_img, _, ax_obj, ax_gate = fig.axes[1:5]                      # text, image, own row, objects, gates
    grid = ax_img.images[-1].get_array()
    assert np.allclose(grid, txt2img_words[:, word].mean(0).reshape(7, 7))
    assert np.allclose([b.get_width() for b in ax_obj.patches[:4]], txt2obj_words[:, word].mean(0))
    assert np.allclose(ax_gate.images[0].get_array(), [gates_words["image"].mean(1), gates_words["object"].mean(1)])

    kew = s.words.index("Kew")
    heads_fig = Figure(figsize=(9, 4), layout="constrained")
    for j, ax in enumerate(heads_fig.subplots(1, HEADS)):
        plot_image_attention(s.crop, s.model.attention["txt2img"][0, j, s.first[kew]], word=f"Kew, head {j}", ax=ax,
                             colorbar=False)
    per_head = s.model.attention["txt2img"][0, :, s.first[kew]]
    assert all(np.allclose(ax.images[-1].get_array(), per_head[j].reshape(7, 7))
               for j, ax in enumerate(heads_fig.axes))
    assert not np.allclose(per_head[0], per_head[1])


def test_t10_decode_and_float64_copy(t10):
    """Tutorial 10, cells 37 and 39: the model's plain decode is its CRF's; double() makes float64 weights."""
    s = t10
    plain = s.model.decode(**s.inputs, constrained=False)[0]
    e32, _ = s.model.emissions(**s.inputs)
    assert plain == s.model.crf.decode(e32, s.batch.attention_mask)[0] and len(plain) == s.T
    m64 = s.build()
    m64.load_state_dict(s.model.state_dict())
    m64.double().eval()
    assert m64.fusion_w.data.dtype == np.float64


def test_t10_original_layout_and_round_trip(t10):
    """Tutorial 10, cell 43: key counts of the original layout, names, and the exact round trip."""
    from minimner.models import mgcmt_state as mscmt_keys
    from minimner.models.mgcmt import MGCMT

    s = t10
    base = mscmt_keys.original_layout(768, 3072, 12, 28996)
    used = mscmt_keys.used_keys(base, aug="add", fusion_method=2, char_cnn=False)
    assert len(base) == 509 and len(used) == 416
    assert not any(k.startswith(("gate.", "highway.", "bert.pooler.")) for k in used)
    layout = s.model.original_layout()
    assert len(layout) == 509 - 11 * 16
    mine = s.model.to_original()
    assert list(mine) == list(layout) and all(mine[k].shape == sh for k, sh in layout.items())
    assert [mscmt_keys.minimner_name(k) for k in ("maug_linear.weight", "fus1_w1", "classifier.bias")] \
        == ["augment.maug_linear.weight", "fusion.fus1_w1", "classifier.bias"]
    again = MGCMT.from_original(mine, bert_config={"num_attention_heads": HEADS})
    assert not again.training and again.load_report["used"] == len(s.model.state_dict())
    assert all(np.array_equal(again.to_original()[k], v) for k, v in mine.items())
    assert np.array_equal(again.emissions(**s.inputs)[0], s.e_model)


def test_t10_fusion_variants(t10):
    """Tutorial 10, cell 47: the variants built as there; gate_concat is the model, the others differ."""
    s = t10
    s.model.emissions(**s.inputs)
    shared = {k: v for k, v in s.model.state_dict().items() if not k.startswith("fusion.")}
    results = {}
    for name in ("gate_concat", "grid_only", "objects_only"):
        variant = s.spread(s.build(fusion=name), seed=3, prefix="fusion.")
        variant.load_state_dict({**shared, **{k: v for k, v in variant.state_dict().items()
                                              if k.startswith("fusion.")}})
        if name == "gate_concat":
            variant.load_state_dict(s.model.state_dict())
        variant.eval()
        e_v, _ = variant.emissions(**s.inputs)
        results[name] = (variant, e_v)
    assert np.array_equal(results["gate_concat"][1], s.e_model)
    assert not np.allclose(results["grid_only"][1], s.e_model) and set(results["grid_only"][0].gates) == {"gate"}
    assert results["objects_only"][0].fusion.uses == ("obj", "objtxt")


# --------------------------------------------------------------------------------------------------
# Tutorial 07: the toy data set and the tiny BERT-CRF tagger of sections 1–2.
# --------------------------------------------------------------------------------------------------

def test_t07_toy_data_sizes(tmp_path):
    """Tutorial 07, cell 4: write_toy_dataset(n_train=160, n_valid=40, n_test=40) writes those counts."""
    from minimner.data.conll import read_conll
    from minimner.data.toy import write_toy_dataset

    data_dir = write_toy_dataset(tmp_path / "toy", n_train=160, n_valid=40, n_test=40)
    train_sents = read_conll(data_dir / "train.txt")
    dev_sents = read_conll(data_dir / "valid.txt")
    test_sents = read_conll(data_dir / "test.txt")
    assert len(train_sents) == 160 and len(dev_sents) == 40 and len(test_sents) == 40


def test_t07_batch_and_step_shapes(tmp_path):
    """Tutorial 07, cells 8 and 10: a padded batch's label and word-mask shapes; H and E's shapes."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    from minimner.data.batching import encode_sentences, make_batch
    from minimner.data.conll import read_conll
    from minimner.data.labels import NUM_TAGS
    from minimner.data.toy import write_toy_dataset
    from minimner.models.bert import BertConfig, BertModel
    from minimner.models.text_crf import TextCRFTagger
    from minimner.tokenization import BertWordPieceTokenizer

    backend.set_backend("numpy")
    train_sents = read_conll(write_toy_dataset(tmp_path / "toy", n_train=16, n_valid=4, n_test=4) / "train.txt")
    pre = BertPreTokenizer()                      # the tutorial's fallback vocabulary: toy words and characters
    words = {p for s in train_sents for w in s.words for p, _ in pre.pre_tokenize_str(w.lower())}
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words - set(chars)) + chars + ["##" + c for c in chars]
    tokenizer = BertWordPieceTokenizer.from_vocab({p: i for i, p in enumerate(vocab)}, lowercase=True)
    batch = make_batch(encode_sentences(tokenizer, train_sents)[:4])
    B, T = batch.input_ids.shape
    W = batch.first_piece.shape[1]
    assert batch.labels.shape == (B, T) and batch.word_mask.shape == (B, W)

    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    rng = backend.rng(0)
    model = TextCRFTagger(BertModel(cfg, rng=rng), num_tags=NUM_TAGS, rng=rng).eval()
    H = model.bert.forward(batch.input_ids, batch.attention_mask)
    E = model.classifier.forward(model.dropout.forward(H))
    assert H.shape == (B, T, model.bert.config.hidden_size) and E.shape == (B, T, NUM_TAGS)


# --------------------------------------------------------------------------------------------------
# Tutorial 04: the gate module's names, the augmentation flag table, the paper's parameter counts.
# --------------------------------------------------------------------------------------------------

def test_t04_gate_names_and_augment_modes():
    """Tutorial 04, cells 13 and 23: the split gate keeps the original's names; the flags → modes table."""
    from minimner.nn.augment import AugmentNone, make_augment_fusion, mode_from_flags
    from minimner.nn.gate import Gate

    fus1 = Gate(4, names=("fus1_w1", "fus1_w2", "fus1_bias"), rng=np.random.default_rng(1))
    assert list(fus1.state_dict()) == ["fus1_w1", "fus1_w2", "fus1_bias"]
    assert [mode_from_flags(1, 1), mode_from_flags(1, 0), mode_from_flags(0), mode_from_flags(2)] == \
        ["add", "gate", "embed", "none"]
    assert isinstance(make_augment_fusion("embed", 3, 4), AugmentNone)


def test_t04_paper_sizes():
    """Tutorial 04, cell 27 (was an arithmetic identity there): the modules at the paper's C = 768, E = 200."""
    from minimner.nn.augment import AugmentAdd, AugmentGate

    def n_params(m):
        return sum(p.data.size for p in m.parameters())

    assert n_params(AugmentAdd(200, 768, rng=np.random.default_rng(0))) == 154_368
    assert n_params(AugmentGate(200, 768, rng=np.random.default_rng(0))) == 154_368 + 1_180_416


# --------------------------------------------------------------------------------------------------
# Tutorial 09: the COCO class table. (Tutorial 05's figure-shape asserts live in tests/plots/test_crf.py,
# which checks the drawn transition and marginal arrays by value and shape.)
# --------------------------------------------------------------------------------------------------

def test_t09_coco_class_ids():
    """Tutorial 09, cell 33: the 80 COCO classes and the ids the tutorial's examples use."""
    from minimner.vision.objects import COCO_CLASSES, NO_OBJECT, class_id, class_name

    assert len(COCO_CLASSES) == 80 and class_id("person") == 1 and class_id("car") == 3 and class_id("dog") == 17
    assert class_name(17) == "dog" and class_name(NO_OBJECT) == "<none>"
