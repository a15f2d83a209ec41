"""The gradient checkers can fail: each one must reject a deliberately wrong gradient."""
import numpy as np
import pytest

from minimner.gradcheck import GradcheckError, check_grads, check_module, directional_check, numerical_grad, rel_error
from minimner.nn.layers import Linear
from minimner.ops.layernorm import layernorm_backward, layernorm_forward


def _layernorm_case(rng):
    x = rng.standard_normal((3, 5))
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    dy = rng.standard_normal((3, 5))

    def loss():
        return float((layernorm_forward(x, w, b, 1e-5)[0] * dy).sum())

    return x, w, b, dy, loss


def _wrong_layernorm_dx(dy, cache):
    """A classic mistake: forget that the variance depends on x (drop the xhat·mean(g·xhat) term)."""
    xhat, rstd, w = cache
    g = dy * w
    return rstd * (g - g.mean(-1, keepdims=True))


def test_numerical_grad_of_a_known_function(rng):
    x = rng.standard_normal((2, 3))
    # error = round-off eps·|f|/h (~1e-9 here) + truncation h²·f'''/6 = h² (1e-12)
    np.testing.assert_allclose(numerical_grad(lambda: float((x ** 3).sum()), x), 3 * x ** 2, rtol=0, atol=1e-8)


def test_check_grads_accepts_the_right_gradient_and_rejects_a_wrong_one(rng):
    x, w, b, dy, loss = _layernorm_case(rng)
    y, cache = layernorm_forward(x, w, b, 1e-5)
    dx, dw, db = layernorm_backward(dy, cache)
    errs = check_grads(loss, {"x": x, "weight": w, "bias": b}, {"x": dx, "weight": dw, "bias": db})
    assert max(errs.values()) <= 1e-6
    with pytest.raises(GradcheckError, match=r"gradient check failed for 'x'.*worst index"):
        check_grads(loss, {"x": x}, {"x": _wrong_layernorm_dx(dy, cache)})
    # off by a tiny relative amount (1e-4) is still caught at tol 1e-6
    with pytest.raises(GradcheckError):
        check_grads(loss, {"weight": w}, {"weight": dw * (1 + 1e-4)})
    # wrong shape is reported, not broadcast
    with pytest.raises(GradcheckError, match="shape"):
        check_grads(loss, {"bias": b}, {"bias": db[None]})


def test_directional_check_rejects_a_wrong_gradient(rng):
    x, w, b, dy, loss = _layernorm_case(rng)
    y, cache = layernorm_forward(x, w, b, 1e-5)
    dx, dw, db = layernorm_backward(dy, cache)
    assert directional_check(loss, {"x": x, "weight": w}, {"x": dx, "weight": dw}, np.random.default_rng(0)) <= 1e-6
    with pytest.raises(GradcheckError, match="directional check failed"):
        directional_check(loss, {"x": x, "weight": w}, {"x": _wrong_layernorm_dx(dy, cache), "weight": dw},
                          np.random.default_rng(0))


class _BrokenLinear(Linear):
    """Forgets the bias gradient."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.bias.grad[...] = 0
        return dx


def test_check_module_rejects_a_broken_module(rng):
    good = Linear(4, 3, rng=rng).double()
    x = rng.standard_normal((2, 4))
    assert max(check_module(good, good.forward, good.backward, [x], rng).values()) <= 1e-6
    bad = _BrokenLinear(4, 3, rng=rng).double()
    with pytest.raises(GradcheckError, match="'bias'"):
        check_module(bad, bad.forward, bad.backward, [x], rng)
    with pytest.raises(GradcheckError, match="directional"):
        check_module(bad, bad.forward, bad.backward, [x], rng, directional=True)


def test_float32_is_refused(rng):
    x = rng.standard_normal(3).astype(np.float32)
    with pytest.raises(TypeError, match="float64"):
        check_grads(lambda: float(x.sum()), {"x": x}, {"x": np.ones(3)})


def test_rel_error_floor_and_shapes():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0, 0.0]), np.array([1.0, 1e-12])) < 1e-6    # a true zero vs round-off passes
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)
    with pytest.raises(ValueError, match="shape mismatch"):
        rel_error(np.zeros(2), np.zeros(3))
