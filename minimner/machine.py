"""Where a number was measured: the machine description recorded with every run and benchmark."""
from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy

from minimner import backend

__all__ = ["cpu_model", "describe", "rss_bytes", "peak_rss_rise"]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(**extra) -> dict:
    """Platform, CPU, cores, Python/NumPy versions, minimner's backend and the 1-min load average.

    ``extra`` entries (e.g. ``torch=torch.__version__``) are added as given.
    """
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu": cpu_model(),
            "cores": os.cpu_count(), "numpy": numpy.__version__, "backend": backend.get_backend(),
            "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    info.update(extra)
    return info


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_rise(fn, interval: float = 0.0005) -> float:
    """Run ``fn()`` and return the peak RSS rise above the starting RSS, in MiB (sampled)."""
    before = rss_bytes()
    peak, stop = [before], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(interval)

    t = threading.Thread(target=sample)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    peak[0] = max(peak[0], rss_bytes())
    return (peak[0] - before) / 2**20
