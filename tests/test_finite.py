"""Finiteness checks: the first NaN/inf tensor is named, integer arrays are skipped."""
import numpy as np
import pytest

from minimner.finite import NonFiniteError, check_finite, count_nonfinite, first_nonfinite


def test_count_and_first():
    a = np.array([1.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    assert count_nonfinite(a) == 3
    assert count_nonfinite(np.arange(4)) == 0                       # integers cannot hold NaN
    assert count_nonfinite(np.ones(3, dtype=np.float16)) == 0
    named = {"ok": np.ones(2, dtype=np.float32), "ids": np.arange(3), "bad": a, "worse": a}
    assert first_nonfinite(named) == ("bad", 3)
    assert first_nonfinite([("ok", np.zeros(2))]) is None


def test_check_finite_message():
    with pytest.raises(NonFiniteError) as e:
        check_finite({"w": np.array([np.nan], dtype=np.float32)}, "weights.npz")
    assert str(e.value) == "weights.npz: tensor 'w' holds 1 NaN/inf value"
    assert isinstance(e.value, ValueError)                           # the CLI prints it as one line
    check_finite({"w": np.zeros(3, dtype=np.float32)}, "fine")
