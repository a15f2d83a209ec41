"""backend: selection errors, get_xp, asnumpy, rng determinism, scatter_add, erf accuracy and speed."""
import math
import time

import numpy as np
import pytest

from minimner import backend
from minimner._erf import erf_numpy


def test_set_backend_unknown_name():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        backend.set_backend("tensorflow")
    assert backend.get_backend() == "numpy"


@pytest.mark.skipif(backend.cupy_available(), reason="a GPU is present")
def test_cupy_without_gpu_is_a_clear_runtime_error():
    with pytest.raises(RuntimeError, match="backend 'cupy' requested but CuPy is"):
        backend.set_backend("cupy")
    with pytest.raises(RuntimeError, match="cupy"):
        backend.asarray(np.zeros(2), backend="cupy")
    assert backend.get_backend() == "numpy"


def test_set_backend_numpy_and_xp():
    backend.set_backend(" NumPy ")
    assert backend.get_backend() == "numpy" and backend.xp() is np


def test_get_xp_and_asnumpy(xp_name):
    a = backend.asarray([1.0, 2.0], dtype=np.float32)     # created on the current backend
    assert backend.device_of(a) == xp_name
    assert backend.get_xp(a) is backend.xp()
    assert backend.get_xp(np.zeros(1), a) is backend.xp()  # a CuPy array anywhere wins
    assert backend.get_xp(1.0, [1, 2]) is np
    h = backend.asnumpy(a)
    assert isinstance(h, np.ndarray) and h.dtype == np.float32
    np.testing.assert_array_equal(h, [1.0, 2.0])


def test_rng_determinism(xp_name):
    a = backend.asnumpy(backend.rng(42).standard_normal(5))
    b = backend.asnumpy(backend.rng(42).standard_normal(5))
    c = backend.asnumpy(backend.rng(43).standard_normal(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scatter_add_repeated_indices(xp_name):
    xp = backend.xp()
    target = xp.zeros((4, 2), dtype=np.float32)
    idx = xp.asarray([1, 3, 1, 1, 0])
    vals = xp.asarray(np.arange(10, dtype=np.float32).reshape(5, 2))
    backend.scatter_add(target, idx, vals)
    # row 1 receives rows 0, 2, 3 of vals: (0+4+6, 1+5+7); plain fancy-index += would keep only one
    np.testing.assert_array_equal(backend.asnumpy(target), [[8, 9], [10, 13], [0, 0], [2, 3]])


def _erf_grid():
    return np.concatenate([
        np.linspace(-7.0, 7.0, 140001),                    # dense over every branch
        np.array([0.84375, 1.25, 1 / 0.35, 6.0, 27.0, 1e3, -0.84375, -1.25, -1 / 0.35, -6.0]),
        np.nextafter(np.array([0.84375, 1.25, 1 / 0.35, 6.0]), 0.0),   # just below each breakpoint
        np.geomspace(1e-300, 1e-2, 300), -np.geomspace(1e-300, 1e-2, 300),   # tiny arguments
    ])


def test_erf_float64_accuracy_vs_math_erf():
    x = _erf_grid()
    ref = np.array([math.erf(v) for v in x])
    y = erf_numpy(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert np.abs(y - ref).max() <= 1e-15
    small = (np.abs(x) < 1e-2) & (x != 0)                   # relative accuracy where erf(x) ~ 2x/sqrt(pi)
    assert (np.abs(y[small] - ref[small]) / np.abs(ref[small])).max() <= 1e-15


def test_erf_float32_accuracy_and_dtype():
    x = _erf_grid().astype(np.float32)
    ref = np.array([math.erf(float(v)) for v in x])
    y = erf_numpy(x)
    assert y.dtype == np.float32
    assert np.abs(y.astype(np.float64) - ref).max() <= 1e-7


def test_erf_special_values_and_shapes():
    y = erf_numpy(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]))
    assert y[0] == 0.0 and np.signbit(y[1]) and y[2] == 1.0 and y[3] == -1.0 and np.isnan(y[4])
    assert erf_numpy(np.array(0.5)).shape == ()
    assert erf_numpy(np.zeros((2, 0))).shape == (2, 0)
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    np.testing.assert_array_equal(erf_numpy(x[:, ::2]), erf_numpy(np.ascontiguousarray(x[:, ::2])))
    np.testing.assert_array_equal(erf_numpy(-x), -erf_numpy(x))             # odd
    with pytest.raises(TypeError, match="floating-point"):
        erf_numpy(np.array([1, 2]))


def test_backend_erf_dispatch(xp_name):
    x = backend.asarray(np.linspace(-4, 4, 101))
    y = backend.asnumpy(backend.erf(x))
    np.testing.assert_allclose(y, [math.erf(v) for v in np.linspace(-4, 4, 101)], rtol=0, atol=1e-15)


def test_erf_speed_reported():
    """Vectorised, not a Python loop: 1M float64 values well under a second on any laptop."""
    x = np.random.default_rng(0).standard_normal(1_000_000) * 3
    erf_numpy(x[:1000])
    t0 = time.perf_counter()
    erf_numpy(x)
    dt = time.perf_counter() - t0
    print(f"erf_numpy: {dt * 1e6:.0f} us per 1M float64 elements")
    assert dt < 1.0
