"""The strict backend (CuPy's rules on a CPU): its rules, and whole pipelines run through it.

Every op's forward/backward already runs on it through the ``xp_name`` fixture; here: the
rules themselves, a deliberate host conversion inside an op, the CRF, ResNet features, a
text-CRF and an MGCMT training run (train steps, optimiser, decoding, checkpoint save and
load), ``explain``'s data, and the host↔device traffic of one train step.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from minimner import _strict, backend
from minimner.crf import crf_marginals, crf_nll_backward, crf_nll_forward, crf_viterbi, paths_to_lists
from minimner.ops.linear import linear_forward


@pytest.fixture
def strict():
    backend.set_backend("strict")
    yield backend.xp()
    backend.set_backend("numpy")


def _host(tree):
    """Every device array of a (nested) result on the host, for comparisons."""
    if isinstance(tree, dict):
        return {k: _host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_host(v) for v in tree)
    return backend.asnumpy(tree) if backend.is_device_array(tree) else tree


# ----------------------------------------------------------------------------- the rules
def test_no_implicit_conversion_and_no_mixing(strict):
    a = strict.ones((2, 3), dtype=np.float32)
    assert backend.device_of(a) == "strict" and backend.get_xp(a) is strict
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array([a[0], a[1]])
    host = np.ones(3, np.float32)
    for mixed in (lambda: a + host, lambda: host * a, lambda: np.concatenate([a, host[None]]),
                  lambda: strict.einsum("ij,j->i", a, host), lambda: a.__setitem__(0, host)):
        with pytest.raises(TypeError, match="cannot be mixed"):
            mixed()
    b = a * np.float32(2) + 1                                     # NumPy and Python scalars are fine
    assert isinstance(b, _strict.StrictArray) and b.dtype == np.float32


def test_reductions_are_0d_device_arrays_and_reading_them_is_a_sync(strict):
    a = strict.arange(6, dtype=np.float32).reshape(2, 3)
    with _strict.counting() as c:
        s, m, i = a.sum(), strict.max(a), a.argmax()
        assert all(isinstance(v, _strict.StrictArray) and v.shape == () for v in (s, m, i, a[1, 2]))
    assert (c.syncs, c.to_host, c.to_device) == (0, 0, 0)
    with _strict.counting() as c:
        assert float(s) == 15.0 and int(i) == 5 and bool(m > 4) and a[0].tolist() == [0, 1, 2] and s.item() == 15
        rows, _ = strict.nonzero(a > 2)                           # data-dependent shape: CuPy syncs
    assert c.syncs == 6 and (c.to_host, c.to_device) == (0, 0)


def test_explicit_moves_are_counted(strict):
    with _strict.counting() as c:
        a = backend.asarray(np.arange(4, dtype=np.float32))      # host -> device
        assert backend.asarray(a) is a                            # already there: no transfer
        h = backend.asnumpy(a)                                    # device -> host
        back = pickle.loads(pickle.dumps(a))                      # pickling goes through the host
    assert isinstance(h, np.ndarray) and backend.device_of(back) == "strict"
    np.testing.assert_array_equal(backend.asnumpy(back), h)
    assert (c.to_device, c.to_host, c.syncs) == (2, 2, 0)


def test_a_host_conversion_inside_an_op_raises(strict, monkeypatch):
    """The failure the strict backend exists to catch: ``np.asarray`` of a device array inside an op."""
    def leaky_linear(x, w):
        y, _ = linear_forward(x, w)
        return np.asarray(y) * 2                                  # the banned pattern

    x, w = strict.ones((2, 4), dtype=np.float32), strict.ones((3, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="Implicit conversion"):
        leaky_linear(x, w)
    # The same mistake buried deep in a model: the exact GELU of every BERT layer.
    from minimner.models.bert import BertConfig, BertModel
    from minimner.ops import gelu

    monkeypatch.setattr(gelu, "normal_cdf", lambda v: backend.normal_cdf(np.asarray(v)))
    bert = BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=16), rng=backend.rng(0))
    ids = backend.asarray(np.array([[1, 2, 3]]))
    with pytest.raises(TypeError, match="Implicit conversion"):
        bert(ids, backend.asarray(np.ones((1, 3), bool)))


def test_numpy_backend_is_untouched():
    a = backend.xp().ones(3)
    assert type(a) is np.ndarray and type(a.sum()) is np.float64 and np.asarray(a) is a


# ----------------------------------------------------------------------------- the CRF and ResNet
def test_crf_on_strict_equals_numpy(rng):
    from minimner.constraints import paper_constraints

    B, T, K = 3, 6, 13
    em = rng.standard_normal((B, T, K)).astype(np.float32)
    tags = rng.integers(0, K, (B, T))
    mask = np.arange(T)[None, :] < np.array([6, 4, 1])[:, None]
    start, end, trans = (rng.standard_normal(s).astype(np.float32) for s in ((K,), (K,), (K, K)))
    dnll = rng.standard_normal(B).astype(np.float32)
    word_mask = mask.copy()
    word_mask[:, 0] = False

    def run(name):
        on = [backend.asarray(a, backend=name) for a in (em, tags, mask, start, end, trans, dnll, word_mask)]
        e, t, m, s, en, tr, d, wm = on
        nll, cache = crf_nll_forward(e, t, m, s, en, tr)
        grads = crf_nll_backward(d, cache)
        marg = crf_marginals(e, m, s, en, tr)
        allowed = paper_constraints(wm, xp=backend.get_xp(e))
        paths, scores = crf_viterbi(e, m, s, en, tr, allowed=allowed)
        return _host((nll, grads, marg, scores)), paths_to_lists(paths, m)

    (ref, ref_paths), (got, got_paths) = run("numpy"), run("strict")
    assert got_paths == ref_paths
    for r, g in zip(_flat(ref), _flat(got)):
        assert g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6)


def _flat(tree):
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _flat(v)]
    return [] if tree is None else [tree]


def test_resnet_features_on_strict_equal_numpy(rng):
    from minimner.models import resnet

    model = resnet.build(18, rng=np.random.default_rng(0))
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    ref = model.features(x)
    model.to("strict")
    with _strict.counting() as c:
        got = model.features(backend.asarray(x, backend="strict"))
    assert backend.device_of(got) == "strict" and got.dtype == np.float32
    assert (c.to_device, c.to_host, c.syncs) == (1, 0, 0)        # the input only: no traffic inside
    np.testing.assert_allclose(backend.asnumpy(got), ref, rtol=1e-5, atol=1e-5)
    model.fold_bn()                                               # the feature extractor's folded path
    np.testing.assert_allclose(backend.asnumpy(model.features(backend.asarray(x, backend="strict"))), ref,
                               rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- whole training runs
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.test_train_mgcmt import make_tiny_multimodal

    return make_tiny_multimodal(tmp_path_factory.mktemp("strict"), n_train=12, n_valid=6, n_test=6)


def _cfg(tiny, out, model):
    from minimner.train import TrainConfig

    extra = {} if model == "text-crf" else dict(features=str(tiny["features"]), objects=str(tiny["objects"]),
                                                mgcmt={"char_cnn": True})
    return TrainConfig(data_dir=str(tiny["data"]), out=str(out), bert=str(tiny["bert"]), epochs=2, batch_size=4,
                       eval_batch_size=4, lr=1e-3, seed=3, model=model, aug="none", **extra)


@pytest.mark.parametrize("model", ["text-crf", "mgcmt"])
def test_training_run_on_strict_equals_numpy(tiny, tmp_path, model):
    """Two epochs (train steps, AdamW, clipping, dev decoding, checkpoints), then load and predict."""
    from minimner.checkpoint import load_checkpoint
    from minimner.train import load_run, predict_sentences, run_collator

    runs = {}
    for name in ("numpy", "strict"):
        backend.set_backend(name)
        try:
            out = tmp_path / name
            summary = _cfg(tiny, out, model)
            from minimner.train import train

            summary = train(summary, progress=False, log=lambda *a: None)
            loaded, tok, info = load_run(out, which="last")
            assert backend.device_of(next(iter(loaded.parameters())).data) == name
            from minimner.data.batching import encode_sentences
            from minimner.data.conll import read_conll

            sents = read_conll(tiny["data"] / "test.txt")
            pred = predict_sentences(loaded, encode_sentences(tok, sents), batch_size=4, progress=False,
                                     collator=run_collator(info, "test"))
        finally:
            backend.set_backend("numpy")
        runs[name] = (summary, load_checkpoint(out / "last.npz"), pred)
    (s_np, (m_np, o_np, meta_np), p_np), (s_st, (m_st, o_st, meta_st), p_st) = runs["numpy"], runs["strict"]
    assert s_st["best_dev_f1"] == s_np["best_dev_f1"] and p_st == p_np
    assert [h["dev_f1"] for h in meta_st["train_state"]["history"]] == \
        [h["dev_f1"] for h in meta_np["train_state"]["history"]]
    np.testing.assert_allclose([h["train_loss"] for h in meta_st["train_state"]["history"]],
                               [h["train_loss"] for h in meta_np["train_state"]["history"]], rtol=1e-5)
    assert m_st.keys() == m_np.keys() and o_st.keys() == o_np.keys()
    for k in m_np:
        assert m_st[k].dtype == m_np[k].dtype, k
        np.testing.assert_allclose(m_st[k], m_np[k], rtol=1e-4, atol=1e-5, err_msg=k)


def _step_setup(tiny, model_name):
    """A model on the strict backend, its optimiser, the train examples and their collator (MGCMT: chars, images)."""
    from minimner.data.batching import encode_sentences
    from minimner.data.chars import build_char_vocab
    from minimner.data.conll import read_conll
    from minimner.data.inputs import Collator
    from minimner.data.multimodal import ImageFeatures, MultimodalSource
    from minimner.models.bert import BertModel
    from minimner.models.mgcmt import MGCMT, MGCMTConfig
    from minimner.models.text_crf import TextCRFTagger
    from minimner.optim import AdamW
    from minimner.tokenization import BertWordPieceTokenizer
    from minimner.vision.objects import load_objects

    rng = backend.rng(0)
    tok = BertWordPieceTokenizer.from_pretrained(tiny["bert"])
    examples = encode_sentences(tok, read_conll(tiny["data"] / "train.txt"))
    collator = Collator()
    if model_name == "text-crf":
        model = TextCRFTagger(BertModel.from_pretrained(tiny["bert"], rng=rng), rng=rng)
    else:
        vocab = build_char_vocab([tiny["data"] / "train.txt"])
        bert = BertModel.from_pretrained(tiny["bert"], rng=rng)
        model = MGCMT(bert, MGCMTConfig(aug="none", image_dim=512, regions=49, char_cnn=True,
                                        char_vocab=len(vocab)), rng=rng)
        source = MultimodalSource("train", ImageFeatures(tiny["features"]), load_objects(tiny["objects"]))
        collator = Collator(char_vocab=vocab, source=source)
    return model.train(), AdamW(model.named_parameters(), lr=1e-3), examples, collator


#: Host↔device traffic of one train step, batch building included. To the device: the batch's
#: 7 arrays (ids, mask, labels, aux labels, first pieces, word mask, lengths); MGCMT adds the
#: char ids' word positions and table, the image grid, its region mask and the object ids.
#: To the host: one (2,) array, the loss and the global gradient norm, which the step needs there to
#: decide whether the update may be applied (a NaN/inf step is refused). Nothing else waits.
STEP_TRAFFIC = {"text-crf": (7, 1, 0), "mgcmt": (12, 1, 0)}


@pytest.mark.parametrize("model_name", list(STEP_TRAFFIC))
def test_train_step_traffic(tiny, strict, model_name):
    from minimner.train import train_step

    model, opt, examples, collator = _step_setup(tiny, model_name)
    model.zero_grad()
    counts, losses = [], []
    batches = collator.batches(examples, 4, shuffle=True, rng=np.random.default_rng(0))
    while True:
        with _strict.counting() as c:
            batch = next(batches, None)
            if batch is None:
                break
            losses.append(train_step(model, batch, opt, lr=1e-3, max_grad_norm=1.0))
        counts.append((c.to_device, c.to_host, c.syncs))
    assert len(counts) == 3 and set(counts) == {STEP_TRAFFIC[model_name]}, counts
    assert all(type(v) is float for v in losses) and np.isfinite(losses).all()   # the host copies of the losses
    with _strict.counting() as c:                                # decoding: the paths come back to the host
        model.eval().predict_words(next(collator.batches(examples, 4)))
    print(f"{model_name}: per train step {STEP_TRAFFIC[model_name]} (to device, to host, syncs); "
          f"predict one batch ({c.to_device}, {c.to_host}, {c.syncs})")
    assert c.syncs == 0 and c.to_host <= 5


def test_explain_data_on_strict_equals_numpy(tiny, rng):
    """``explain_tweet``'s tags, attention maps, gates, rollout and emissions on both backends."""
    import dataclasses

    from minimner.explain import SingleImageSource, explain_tweet
    from minimner.tokenization import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer.from_pretrained(tiny["bert"])
    source = SingleImageSource(rng.random((49, 512)).astype(np.float32), objects=["person", "dog"])
    words = ["Kevin", "Durant", "enters", "Oracle", "Arena"]
    got = {}
    for name in ("numpy", "strict"):
        backend.set_backend(name)
        try:
            model, _, _, collator = _step_setup(tiny, "mgcmt")
            got[name] = dataclasses.asdict(explain_tweet(model, tok, words, source=source, collator=collator))
        finally:
            backend.set_backend("numpy")
    ref, st = got["numpy"], got["strict"]
    assert ref.keys() == st.keys() and st["tags"] == ref["tags"] and st["pieces"] == ref["pieces"]
    for k, v in ref.items():
        for a, b in zip(_flat(v) if not isinstance(v, dict) else list(v.values()),
                        _flat(st[k]) if not isinstance(v, dict) else list(st[k].values())):
            if isinstance(a, np.ndarray):
                assert isinstance(b, np.ndarray) and b.dtype == a.dtype, k
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=k)
            else:
                assert b == a, k


def test_module_to_moves_the_dropout_generator():
    """A train-mode model built on the host and moved: its masks are drawn on the device (no mixing),
    from the same stream (strict wraps NumPy's generator), and a shared generator stays shared."""
    from minimner.models.bert import BertConfig, BertModel

    cfg = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                     max_position_embeddings=16)
    ids, mask = np.array([[1, 5, 7, 2]]), np.ones((1, 4), bool)
    ref = BertModel(cfg, rng=np.random.default_rng(0)).train()(ids, mask)
    model = BertModel(cfg, rng=np.random.default_rng(0)).to("strict").train()
    gens = {id(m.rng) for _, m in model.named_modules() if "rng" in m.__dict__}
    assert len(gens) == 1 and isinstance(model.embeddings.dropout.rng, _strict.xp.random.Generator)
    out = model(backend.asarray(ids, backend="strict"), backend.asarray(mask, backend="strict"))
    np.testing.assert_allclose(backend.asnumpy(out), ref, rtol=1e-5, atol=1e-6)
    assert isinstance(model.to("numpy").embeddings.dropout.rng, np.random.Generator)


def test_env_variable_selects_the_strict_backend():
    from tests.conftest import ROOT

    code = "from minimner import backend; a = backend.xp().ones(2); print(backend.get_backend(), backend.device_of(a))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "MINIMNER_BACKEND": "strict"})
    assert proc.stdout.split() == ["strict", "strict"], proc.stderr
