"""What every benchmark here shares: timing pairs, the peak-memory child, the machine line,
the common command-line options and the result files.

A benchmark measures minimner against a reference (transformers, pytorch-crf, PyTorch …)
on the same work in the same run:

* :func:`time_pair` times the two sides *interleaved* (ours, ref, ours, ref, …) so a
  change in machine load hits both alike, and returns a :class:`Pair` with the median,
  best and spread (interquartile range) of each side and the ratio ours / ref
  (> 1: minimner is slower). :meth:`Pair.row` gives the result-file row of one phase.
* Peak memory: :func:`traced_peak_mib` (tracemalloc, which sees NumPy's allocations
  but not torch's) in this process, and :func:`memory_pair`, which re-runs the
  benchmark script once per side in a fresh process (``--memory-child SIDE``) where
  :func:`memory_child` samples the RSS during one step
  (:func:`minimner.machine.peak_rss_rise`).
* :func:`machine` (:func:`minimner.machine.describe` plus the reference's versions
  and threads) and :func:`machine_line`, the sentence that ends every report.
* :func:`add_common` adds the options every harness has (``--repeats``,
  ``--warmup``, ``--quick``, a threads option, ``--out``, ``--no-write``); and
  :func:`publish` prints the report and writes ``<stem>.json`` + ``<stem>.md``
  (atomically) under ``benchmarks/results/``.

The scripts run as ``python benchmarks/<name>.py`` and import this module by name
(their folder is on ``sys.path``). Importing it puts the repository root on
``sys.path`` too, so the scripts can then import ``minimner``. It does not import
NumPy or minimner at import time: :func:`blas_threads_from_argv` must be able to set
the BLAS thread variables before NumPy loads.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The environment variables that set the thread count of NumPy's BLAS (read once, when it loads).
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

__all__ = ["ROOT", "RESULTS", "BLAS_THREAD_VARS", "blas_threads_from_argv", "blas_env",
           "Timing", "Pair", "timed", "time_pair", "traced_peak_mib", "child_json", "memory_child",
           "memory_pair", "machine", "machine_line", "add_common", "apply_threads", "child_options",
           "publish"]


# ----------------------------------------------------------------------------- threads
def blas_threads_from_argv(argv: Sequence[str] | None = None, flag: str = "--threads") -> None:
    """``--threads N`` on the command line -> the BLAS thread variables, before NumPy loads its BLAS.

    Call it at the top of a script, before ``import numpy``; afterwards it has no effect.
    """
    argv = sys.argv if argv is None else list(argv)
    if flag in argv[:-1]:
        n = argv[argv.index(flag) + 1]
        for var in BLAS_THREAD_VARS:
            os.environ[var] = n


def blas_env(threads: int | None, env: dict | None = None) -> dict:
    """A copy of ``env`` (default ``os.environ``) that starts a child process with ``threads`` BLAS threads."""
    out = dict(os.environ if env is None else env)
    if threads:
        for var in BLAS_THREAD_VARS:
            out[var] = str(threads)
    return out


# ------------------------------------------------------------------------------ timing
@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed run of one callable."""
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def spread(self) -> float:
        """Interquartile range (s) of the runs: ``q3 − q1`` (0 for a single run)."""
        if len(self.seconds) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.seconds, n=4, method="inclusive")
        return q3 - q1


@dataclass(frozen=True)
class Pair:
    """minimner (``ours``) and the reference (``ref``) timed on the same work, interleaved."""
    ours: Timing
    ref: Timing

    @property
    def ratio(self) -> float:
        """Median time ours / ref (> 1: minimner is slower)."""
        return self.ours.median / self.ref.median

    @property
    def ratio_of_best(self) -> float:
        return self.ours.best / self.ref.best

    def row(self, ref: str, *, best: bool = False, spread: bool = False) -> dict:
        """One phase of a result file, in milliseconds.

        ``{"minimner_ms", "<ref>_ms", "ratio"}`` (medians), plus with ``best``
        ``{"minimner_min_ms", "<ref>_min_ms", "ratio_of_mins"}`` and with ``spread``
        the interquartile ranges ``{"minimner_iqr_ms", "<ref>_iqr_ms"}``.
        """
        row = {"minimner_ms": self.ours.median * 1e3, f"{ref}_ms": self.ref.median * 1e3, "ratio": self.ratio}
        if best:
            row.update({"minimner_min_ms": self.ours.best * 1e3, f"{ref}_min_ms": self.ref.best * 1e3,
                        "ratio_of_mins": self.ratio_of_best})
        if spread:
            row.update({"minimner_iqr_ms": self.ours.spread * 1e3, f"{ref}_iqr_ms": self.ref.spread * 1e3})
        return row


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> Timing:
    """``warmup`` untimed calls of ``fn``, then the seconds of each of ``repeats`` timed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return Timing(tuple(out))


def time_pair(ours: Callable[[], object], ref: Callable[[], object], repeats: int, warmup: int) -> Pair:
    """Time two callables interleaved (ours, ref, ours, ref, …) so that load changes hit both alike."""
    for _ in range(warmup):
        ours()
        ref()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (ref, b)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return Pair(Timing(tuple(a)), Timing(tuple(b)))


# ------------------------------------------------------------------------------ memory
def traced_peak_mib(fn: Callable[[], object]) -> float:
    """Peak memory traced by tracemalloc during ``fn()``, in MiB (NumPy's allocations; not torch's)."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def child_json(script, argv: Iterable[str], env: dict | None = None) -> dict:
    """Run ``python SCRIPT ARGV`` in a fresh process and return the JSON object on its last stdout line.

    The child's stderr goes to ours, so its errors are seen; a non-zero exit raises
    :class:`subprocess.CalledProcessError`.
    """
    res = subprocess.run([sys.executable, str(script), *map(str, argv)], stdout=subprocess.PIPE, text=True,
                         check=True, env=env)
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{script} {' '.join(map(str, argv))}: the child printed no result")
    return json.loads(lines[-1])


def memory_child(fn: Callable[[], object]) -> int:
    """In the child process: print the peak RSS rise of one ``fn()`` as the JSON line the parent reads.

    A sampler thread reads the RSS every 0.5 ms while the step runs (NumPy and torch
    release the GIL in their kernels); the figure is the peak minus the RSS just
    before the step. ``ru_maxrss`` is no use here: importing torch/transformers
    already set a higher high-water mark than one step may reach.
    """
    from minimner.machine import peak_rss_rise

    print(json.dumps({"peak_rss_rise_MiB": peak_rss_rise(fn)}))
    return 0


def memory_pair(script, sides: Sequence[str], argv: Iterable[str] = (), env: dict | None = None) -> dict:
    """Peak RSS rise (MiB) of one step of each side, each in a fresh process.

    Runs ``python SCRIPT --memory-child SIDE ARGV`` per side (the script answers with
    :func:`memory_child`) and returns ``{side: MiB}``.
    """
    argv = list(argv)
    return {side: child_json(script, ["--memory-child", side, *argv], env=env)["peak_rss_rise_MiB"]
            for side in sides}


# ----------------------------------------------------------------------------- machine
def machine(*, torch: bool = False, transformers: bool = False, blas_env: bool = False, **extra) -> dict:
    """Where the numbers come from: :func:`minimner.machine.describe` plus the reference's versions.

    ``torch``: torch's version and thread count (``torch: None`` when it is not
    installed); ``transformers``: its version; ``blas_env``: the BLAS thread
    variables as this process saw them. ``extra`` entries are added as given.
    """
    from minimner.machine import describe

    info = {}
    if torch:
        try:
            import torch as _torch
        except ImportError:
            info["torch"] = None
        else:
            info.update(torch=_torch.__version__, torch_threads=_torch.get_num_threads())
    if transformers:
        import transformers as _transformers
        info["transformers"] = _transformers.__version__
    if blas_env:
        info["blas_threads_env"] = {v: os.environ.get(v) for v in BLAS_THREAD_VARS}
    return describe(**info, **extra)


def machine_line(m: dict, *, torch_threads: bool = True, load: bool = True, backend: bool = False) -> str:
    """The machine of a result (:func:`machine` or :func:`minimner.machine.describe`) as one sentence.

    ``Machine: CPU, N cores, platform, Python x, NumPy y[ (BLAS thread env …)][, torch v (n threads)]
    [, transformers v][, backend b][, 1-min load average l].`` — each bracketed part only
    where the record has it (``backend`` and ``load`` as asked).
    """
    s = f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, NumPy {m['numpy']}"
    if "blas_threads_env" in m:
        s += f" (BLAS thread env {m['blas_threads_env']['OPENBLAS_NUM_THREADS'] or 'unset'})"
    if "torch" in m:
        s += f", torch {m['torch']}"
        if torch_threads and "torch_threads" in m:
            s += f" ({m['torch_threads']} threads)"
    if "transformers" in m:
        s += f", transformers {m['transformers']}"
    if backend:
        s += f", backend {m.get('backend', 'numpy')}"
    if load:
        s += f", 1-min load average {m['loadavg_1min']}"
    return s + "."


# ------------------------------------------------------------------ options and results
_THREAD_OPTIONS = {
    "torch": ("--torch-threads", "torch.set_num_threads (default: torch's)"),
    "all": ("--threads", "limit both sides to N threads (torch.set_num_threads and the BLAS env vars); "
                         "default: each library's own choice"),
}


def add_common(ap: argparse.ArgumentParser, *, quick: str, repeats: int | None = None, warmup: int | None = None,
               threads: str | None = None, threads_help: str | None = None, out: Sequence[str] = ("--out",),
               no_write: bool = True, memory_sides: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Add the options the harnesses share to ``ap`` and return it.

    Parameters
    ----------
    quick : help of ``--quick`` (what the smoke-test sizes are).
    repeats, warmup : defaults of ``--repeats`` / ``--warmup`` (None: no such option).
    threads : ``"torch"`` for ``--torch-threads N`` (torch only), ``"all"`` for
        ``--threads N`` (torch and the BLAS variables; see :func:`blas_threads_from_argv`),
        None for neither. ``threads_help`` overrides its help.
    out : the option strings of the results folder (dest ``out``, default ``benchmarks/results``).
    no_write : add ``--no-write`` (print only).
    memory_sides : the sides ``--memory-child`` accepts (hidden; see :func:`memory_pair`).
    """
    if repeats is not None:
        ap.add_argument("--repeats", type=int, default=repeats)
    if warmup is not None:
        ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--quick", action="store_true", help=quick)
    if threads is not None:
        flag, default_help = _THREAD_OPTIONS[threads]
        ap.add_argument(flag, type=int, default=None, help=threads_help or default_help)
    ap.add_argument(*out, dest="out", type=Path, default=RESULTS,
                    help="folder for the .json and .md results (default benchmarks/results)")
    if no_write:
        ap.add_argument("--no-write", action="store_true", help="print only")
    if memory_sides is not None:
        ap.add_argument("--memory-child", choices=list(memory_sides), help=argparse.SUPPRESS)
    return ap


def apply_threads(args: argparse.Namespace) -> None:
    """``--torch-threads`` / ``--threads``: set torch's thread count in this process (if given)."""
    n = getattr(args, "torch_threads", None) or getattr(args, "threads", None)
    if n:
        import torch
        torch.set_num_threads(n)


def child_options(args: argparse.Namespace, *names: str) -> list[str]:
    """``--name value`` for each option ``name`` of ``args`` that is set (not None), to hand on to a child."""
    out = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def publish(result: dict, text: str, stem: str, out: Path, write: bool = True) -> None:
    """Print the report ``text``; with ``write``, put ``<stem>.json`` and ``<stem>.md`` into ``out`` atomically."""
    from minimner.atomic import write_json_atomic, write_text_atomic

    print(text)
    if write:
        out = Path(out)
        write_json_atomic(out / f"{stem}.json", result)
        write_text_atomic(out / f"{stem}.md", text)
        print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
