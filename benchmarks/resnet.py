"""Benchmark: ResNet forward (final feature map) in minimner vs PyTorch, same weights, same machine, same run.

    python benchmarks/resnet.py                     # ResNet-152, 224×224, batch 8 (the recorded setting)
    python benchmarks/resnet.py --quick             # a seconds-long smoke run (ResNet-50, 64×64, batch 1)
    python benchmarks/resnet.py --device gpu        # minimner on CuPy vs PyTorch on CUDA
    python benchmarks/resnet.py --threads 1         # both sides on one thread (a busy, shared machine)

Each framework runs in its own child process (so each gets its own peak RSS) on
the same random weights (torchvision layout, realistic BN statistics) and the same
input batch. minimner runs its inference path: eval-mode BN folded into the
convolutions, im2col + one GEMM per convolution. PyTorch runs eval mode under
``torch.no_grad()`` with its default thread count. Neither library changes global
thread settings; ``--threads N`` makes *this harness* start both children with N
threads (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` and
``torch.set_num_threads``). On a machine shared with other jobs, OpenBLAS's
multi-threaded GEMM slows down far more than PyTorch's under oversubscription, so
there the one-thread comparison is the meaningful one; on a quiet machine use the
defaults. Reported: seconds per batch (best and median of the repeats),
images per second, the time ratio minimner / PyTorch (target ≤ 1.5), peak RSS
(``resource.getrusage``; on GPU also peak device memory), the machine (platform,
CPU model, cores, library versions, load average) and the max difference between
the two outputs relative to the feature scale. Results go to
``benchmarks/results/resnet<depth>_<size>_b<batch>_<device>.{json,md}``.

The machine is shared: run it when it is quiet (look at the load average in the
report), and compare ratios, not absolute times, across machines.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

# benchmarks/_harness.py (this folder is on sys.path); importing it puts the repository root there too
from _harness import add_common, blas_env, child_json, publish, timed

from minimner.machine import cpu_model


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# ----------------------------------------------------------------------------- workers
def worker_minimner(a) -> dict:
    from minimner import backend
    from minimner.convert.resnet import load_model
    from minimner.models.resnet import ResNet

    model = load_model(a.weights, a.depth)
    if a.device == "gpu":
        backend.set_backend("cupy")
        model.to("cupy")
    model.fold_bn()
    x = backend.asarray(np.load(a.input), backend=backend.get_backend())
    rss_model = _peak_rss_mib()
    out = {}

    def step():
        out["y"] = backend.asnumpy(model.features(x))   # asnumpy also waits for the GPU
    times = list(timed(step, a.repeats, a.warmup).seconds)
    np.save(a.output, out["y"])
    res = {"times_s": times, "peak_rss_mib": _peak_rss_mib(), "rss_after_load_mib": rss_model,
           "pooled_shape": list(ResNet.pool(out["y"]).shape)}
    if a.device == "gpu":
        pool = backend.xp().get_default_memory_pool()
        res["gpu_pool_bytes"] = int(pool.total_bytes())
    return res


def worker_torch(a) -> dict:
    import torch

    from tests.models.test_resnet import _torch_classes

    from minimner.files import read_npz

    model = _torch_classes()(a.depth).eval()
    state = {k: torch.from_numpy(v) for k, v in read_npz(a.weights).items()}
    model.load_state_dict(state, strict=False)          # the .npz has no fc.*: the head is unused here
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "gpu" else "cpu")
    model.to(dev)
    x = torch.from_numpy(np.load(a.input)).to(dev)
    rss_model = _peak_rss_mib()
    out = {}

    def step():
        with torch.no_grad():
            y = model.features(x)
        out["y"] = y.cpu().numpy()                      # .cpu() also waits for the GPU
    times = list(timed(step, a.repeats, a.warmup).seconds)
    np.save(a.output, out["y"])
    res = {"times_s": times, "peak_rss_mib": _peak_rss_mib(), "rss_after_load_mib": rss_model,
           "threads": torch.get_num_threads()}
    if a.device == "gpu":
        res["gpu_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    return res


# ----------------------------------------------------------------------------- driver
def _versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch
        v["torch"] = torch.__version__
    except ImportError:
        v["torch"] = None
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        v["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        v["numpy_blas"] = "unknown"
    return v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=152)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2, help="child processes per side, alternating torch/minimner")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    # --repeats are the timed forwards per child process; --threads goes to the children only (see above)
    add_common(p, quick="ResNet-50, 64×64, batch 1, 1 repeat (smoke test)", repeats=3, warmup=1, threads="all",
               threads_help="start both sides with this many threads (default: each library's own default)",
               out=("--results", "--out"), no_write=False)
    p.add_argument("--worker", choices=("minimner", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.depth, a.size, a.batch, a.repeats, a.warmup, a.rounds = 50, 64, 1, 1, 1, 1

    if a.worker:                                        # child process: run one side, print its report
        res = (worker_minimner if a.worker == "minimner" else worker_torch)(a)
        print(json.dumps(res))
        return 0

    import torch

    from tests.models.test_resnet import numpy_state, torch_resnet

    from minimner.files import write_npz_atomic

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="minimner-bench-") as tmp:
        tmp = Path(tmp)
        t = torch_resnet(a.depth, seed=0)
        write_npz_atomic(tmp / "w.npz", {k: v for k, v in numpy_state(t).items() if not k.startswith("fc.")})
        del t, torch
        x = np.random.default_rng(0).standard_normal((a.batch, 3, a.size, a.size)).astype(np.float32)
        np.save(tmp / "x.npy", x)
        reports = {"torch": [], "minimner": []}
        for _ in range(a.rounds):                       # alternate the sides so load drift hits both alike
            for side in ("torch", "minimner"):
                cmd = ["--worker", side, "--depth", str(a.depth), "--warmup", str(a.warmup), "--repeats",
                       str(a.repeats), "--device", a.device, "--weights", str(tmp / "w.npz"), "--input",
                       str(tmp / "x.npy"), "--output", str(tmp / f"{side}.npy")]
                cmd += ["--threads", str(a.threads)] if a.threads else []
                # only the children get the thread limit, before their libraries load
                reports[side].append(child_json(__file__, cmd, env=blas_env(a.threads)))
        ref, ours = np.load(tmp / "torch.npy"), np.load(tmp / "minimner.npy")
    rel_diff = float(np.abs(ours - ref).max() / np.abs(ref).max())

    def summary(rounds):
        r = dict(rounds[-1])
        r["times_s"] = [t for x in rounds for t in x["times_s"]]           # every timed repeat of every round
        r["peak_rss_mib"] = max(x["peak_rss_mib"] for x in rounds)
        best, med = min(r["times_s"]), statistics.median(r["times_s"])
        return {**r, "best_s": best, "median_s": med, "images_per_s": a.batch / best}

    mm, pt = summary(reports["minimner"]), summary(reports["torch"])
    result = {
        "benchmark": f"resnet{a.depth} forward to the final feature map",
        "setting": {"depth": a.depth, "size": a.size, "batch": a.batch, "repeats": a.repeats, "rounds": a.rounds,
                    "warmup": a.warmup,
                    "device": a.device, "threads": a.threads or "library defaults",
                    "output_shape": list(ours.shape)},
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(), **_versions()},
        "minimner": mm, "torch": pt,
        "ratio_time_minimner_over_torch": mm["best_s"] / pt["best_s"],
        "ratio_time_median": mm["median_s"] / pt["median_s"],
        "max_abs_diff_over_scale": rel_diff,
    }
    stem = (f"resnet{a.depth}_{a.size}_b{a.batch}_{a.device}" + (f"_t{a.threads}" if a.threads else "")
            + ("_quick" if a.quick else ""))
    publish(result, markdown(result), stem, a.out)
    return 0 if rel_diff <= 1e-4 else 1


def markdown(result: dict) -> str:
    """The report of one run (``benchmarks/results/resnet<depth>_<size>_b<batch>_<device>.md``).

    Its machine sentence is its own: the sides ran in child processes, so it gives
    the load average before and after them and the BLAS NumPy was built with.
    """
    st, m, mm, pt = result["setting"], result["machine"], result["minimner"], result["torch"]
    md = [f"# ResNet-{st['depth']} forward, {st['size']}×{st['size']}, batch {st['batch']}, {st['device']}, "
          f"threads: {st['threads']}", "",
          f"Machine: {m['platform']}; {m['cpu']}; {m['cores']} cores; Python {m['python']}, NumPy {m['numpy']} "
          f"({m['numpy_blas']}), torch {m['torch']}; load average before/after "
          f"{m['loadavg_before'][0]:.2f} / {m['loadavg_after'][0]:.2f}.", "",
          "| | best s/batch | median s/batch | images/s | peak RSS MiB | RSS after load MiB |",
          "|---|---|---|---|---|---|"]
    for name, r in (("minimner (BN folded)", mm), ("PyTorch (eval, no_grad)", pt)):
        md.append(f"| {name} | {r['best_s']:.3f} | {r['median_s']:.3f} | {r['images_per_s']:.2f} | "
                  f"{r['peak_rss_mib']:.0f} | {r['rss_after_load_mib']:.0f} |")
    md += ["", f"Time ratio minimner / PyTorch: **{result['ratio_time_minimner_over_torch']:.2f}×** (best), "
               f"{result['ratio_time_median']:.2f}× (median); target ≤ 1.5×.",
           f"Max |minimner − PyTorch| / max |PyTorch| = {result['max_abs_diff_over_scale']:.1e}.", ""]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
