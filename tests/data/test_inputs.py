"""The Collator builds every model input of a batch, and both levels of MGCMT read the same inputs alike."""
from __future__ import annotations

import numpy as np
import pytest

from minimner.data.batching import augment_input, encode_sentences, make_batch
from minimner.data.chars import char_ids, char_vocab_from_words
from minimner.data.conll import Sentence
from minimner.data.inputs import Collator
from minimner.data.multimodal import ImageGrids, MultimodalSource
from minimner.lexicon.augment import build_table
from minimner.lexicon.io import Lexicon
from minimner.models.text_crf import TextCRFTagger
from minimner.vision.objects import image_key
from tests.models.mgcmt_helpers import TINY, tiny_model
from tests.test_train_augment import _PieceTokenizer

SENTENCES = [Sentence(["Obama", "visits", "Paris"], ["B-PER", "O", "B-LOC"], image_id="a"),
             Sentence(["NASA", "news"], ["B-ORG", "O"], image_id="b"),
             Sentence(["in", "Berlin", "today"], ["O", "B-LOC", "O"], image_id=None)]
R, CI = TINY["R"], TINY["image_dim"]


def _artefacts(rng):
    words = sorted({w for s in SENTENCES for w in s.words})
    lex = Lexicon(words, rng.standard_normal((len(words), TINY["aug_dim"])).astype(np.float32), source="mem")
    grids = {"a": rng.standard_normal((R, CI)).astype(np.float32)}            # "b" has no picture
    source = MultimodalSource("train", ImageGrids(grids, (2, 2), CI), {image_key("a"): [3], image_key("b"): []},
                              slots=TINY["O"])
    return build_table(words, lex, k=2), char_vocab_from_words(words), source, grids


def test_collator_fills_every_input_once(rng):
    table, vocab, source, grids = _artefacts(rng)
    examples = encode_sentences(_PieceTokenizer(), SENTENCES)
    batch = Collator(table, vocab, source, max_wordlen=8)(examples)
    plain = make_batch(examples)
    np.testing.assert_array_equal(batch.aug, augment_input(plain, table))
    np.testing.assert_array_equal(batch.char_ids, char_ids(plain, vocab, 8))
    assert batch.regions.shape == (3, R, CI) and batch.regions.dtype == np.float32
    np.testing.assert_array_equal(batch.regions[0], grids["a"])                 # the stored (R, C_img) grid, as is
    assert not batch.regions[1:].any()
    np.testing.assert_array_equal(batch.region_mask, [[True] * R, [False] * R, [False] * R])
    np.testing.assert_array_equal(batch.objects, [[3, 0, 0], [0, 0, 0], [0, 0, 0]])
    bare = Collator()(examples)                                                  # no artefacts: nothing added
    assert all(getattr(bare, k) is None for k in ("aug", "char_ids", "regions", "region_mask", "objects"))


@pytest.mark.parametrize("flags", [dict(), dict(aug="gate", char_cnn=True, aux_mix=True), dict(fusion="objects_only")])
def test_batch_level_equals_array_level(rng, flags):
    """The batch level and the authors' array level (image as (B, C_img, h, w)) give the same loss and gradients."""
    table, vocab, source, _ = _artefacts(rng)
    batch = Collator(table, vocab, source, max_wordlen=8)(encode_sentences(_PieceTokenizer(), SENTENCES))
    B = len(batch)
    image = batch.regions.transpose(0, 2, 1).reshape(B, CI, 2, 2)               # the authors' layout
    grads = []
    for level in ("batch", "array"):
        model = tiny_model(seed=3, sizes=dict(TINY, char_vocab=len(vocab)), **flags).eval()
        model.zero_grad()
        if level == "batch":
            loss = model.batch_loss(batch)
        else:
            loss = model.loss(batch.input_ids, batch.attention_mask, batch.aug, image, batch.objects,
                              char_ids=batch.char_ids, region_mask=batch.region_mask, labels=batch.labels,
                              aux_labels=batch.aux_labels)
        model.backward()
        grads.append((float(loss), {n: p.grad.copy() for n, p in model.named_parameters()}))
    assert grads[0][0] == grads[1][0]
    for n, g in grads[0][1].items():
        np.testing.assert_array_equal(g, grads[1][1][n], err_msg=n)


def test_both_taggers_share_the_interface():
    for cls in (TextCRFTagger, type(tiny_model())):
        for name in ("batch_emissions", "batch_loss", "backward", "predict_words", "explain"):
            assert callable(getattr(cls, name, None)), (cls.__name__, name)
        assert "forward" not in cls.__dict__                  # no tagger-level forward with its own meaning


def test_missing_inputs_are_named(rng):
    table, vocab, source, _ = _artefacts(rng)
    examples = encode_sentences(_PieceTokenizer(), SENTENCES)
    with pytest.raises(ValueError, match="has no aug_table"):
        tiny_model(aug="add").batch_loss(Collator(source=source)(examples))
    with pytest.raises(ValueError, match="has no char_vocab"):
        tiny_model(sizes=dict(TINY, char_vocab=len(vocab)), aug="none", char_cnn=True).batch_loss(Collator(source=source)(examples))
