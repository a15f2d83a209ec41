"""conv2d_forward / conv2d_backward: gradient checks, a loop reference, dtype, validation, torch parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minimner import backend
from minimner.gradcheck import check_grads
from minimner.ops.conv2d import conv2d_backward, conv2d_forward, conv2d_output_size

# (kernel, stride, padding, input H×W): the ResNet cases plus rectangular / uneven ones
CONFIGS = [
    ((3, 3), 1, 1, (5, 6)),
    ((3, 3), 2, 1, (7, 6)),        # stride 2 with an odd size: the last row is never a window start
    ((1, 1), 1, 0, (4, 5)),        # 1×1: cols is x itself
    ((1, 1), 2, 0, (5, 5)),        # strided 1×1 (ResNet downsample): skipped pixels get zero gradient
    ((7, 7), 2, 3, (9, 8)),        # ResNet stem
    ((2, 3), (2, 1), (1, 0), (6, 5)),
]


def _on(xp_name, a):
    return backend.asarray(a, backend=xp_name)


def conv_loops(x, w, b, stride, padding):
    """Independent reference: the defining sum, one output value at a time (float64)."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    B, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((B, O, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp_[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]            # (B, C, kh, kw)
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))  # (B, O)
    return y + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize("kernel,stride,padding,hw", CONFIGS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_gradcheck(xp_name, rng, kernel, stride, padding, hw, with_bias):
    x = _on(xp_name, rng.standard_normal((2, 3) + hw))                       # (B, C, Hi, Wi) float64
    w = _on(xp_name, rng.standard_normal((4, 3) + kernel))                   # (O, C, kh, kw)
    b = _on(xp_name, rng.standard_normal(4)) if with_bias else None
    y, cache = conv2d_forward(x, w, b, stride, padding)
    dy = _on(xp_name, rng.standard_normal(y.shape))                          # random upstream gradient
    dx, dw, db = conv2d_backward(dy, cache)
    assert (db is None) == (not with_bias)
    arrays, analytic = {"x": x, "weight": w}, {"x": dx, "weight": dw}
    if with_bias:
        arrays["bias"], analytic["bias"] = b, db
    errs = check_grads(lambda: float((conv2d_forward(x, w, b, stride, padding)[0] * dy).sum()), arrays, analytic)
    assert max(errs.values()) <= 1e-6


@pytest.mark.parametrize("kernel,stride,padding,hw", CONFIGS)
def test_conv2d_matches_loop_reference(rng, kernel, stride, padding, hw):
    x = rng.standard_normal((2, 3) + hw)
    w = rng.standard_normal((4, 3) + kernel)
    b = rng.standard_normal(4)
    y, _ = conv2d_forward(x, w, b, stride, padding)
    ref = conv_loops(x, w, b, stride, padding)
    assert y.shape == ref.shape == (2, 4) + conv2d_output_size(*hw, *kernel, stride, padding)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 4), O=st.integers(1, 5), k=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 1), H=st.integers(3, 7), W=st.integers(3, 7), seed=st.integers(0, 2**16))
def test_conv2d_float32_shapes_and_reference(B, C, O, k, s, p, H, W, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((B, C, H, W)).astype(np.float32)
    w = r.standard_normal((O, C, k, k)).astype(np.float32)
    y, cache = conv2d_forward(x, w, None, s, p)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, conv_loops(x.astype(np.float64), w.astype(np.float64), None, s, p),
                               rtol=1e-4, atol=1e-4)
    dx, dw, db = conv2d_backward(r.standard_normal(y.shape).astype(np.float32), cache)
    assert dx.dtype == dw.dtype == np.float32 and db is None
    assert dx.shape == x.shape and dw.shape == w.shape


@pytest.mark.parametrize("kernel,stride,padding,hw", CONFIGS)
def test_conv2d_cnhw_layout_is_nchw_with_the_first_axes_swapped(rng, kernel, stride, padding, hw):
    x = rng.standard_normal((2, 3) + hw)
    w = rng.standard_normal((4, 3) + kernel)
    b = rng.standard_normal(4)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    yc, cache_c = conv2d_forward(np.ascontiguousarray(x.transpose(1, 0, 2, 3)), w, b, stride, padding, layout="CNHW")
    np.testing.assert_allclose(yc, y.transpose(1, 0, 2, 3), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    dxc, dwc, dbc = conv2d_backward(np.ascontiguousarray(dy.transpose(1, 0, 2, 3)), cache_c)
    np.testing.assert_allclose(dxc, dx.transpose(1, 0, 2, 3), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dwc, dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbc, db, rtol=1e-12, atol=1e-12)
    # and the CNHW pair is gradient-checked on its own
    x_c, dy_c = np.ascontiguousarray(x.transpose(1, 0, 2, 3)), np.ascontiguousarray(dy.transpose(1, 0, 2, 3))
    errs = check_grads(lambda: float((conv2d_forward(x_c, w, b, stride, padding, layout="CNHW")[0] * dy_c).sum()),
                       {"x": x_c, "weight": w, "bias": b}, {"x": dxc, "weight": dwc, "bias": dbc})
    assert max(errs.values()) <= 1e-6


def test_conv2d_batched_equals_per_example(rng):
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((5, 2, 3, 3)).astype(np.float32)
    y, _ = conv2d_forward(x, w, None, 2, 1)
    for i in range(3):
        np.testing.assert_allclose(y[i:i + 1], conv2d_forward(x[i:i + 1], w, None, 2, 1)[0], rtol=1e-6, atol=1e-6)


def test_conv2d_validation():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"same C.*\(1, 3, 5, 5\).*\(4, 2, 3, 3\)"):
        conv2d_forward(x, np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="float32 but weight is float64"):
        conv2d_forward(x, np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"bias has shape \(3,\), expected \(4,\)"):
        conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        conv2d_forward(x, np.zeros((4, 3, 7, 7), np.float32))
    with pytest.raises(ValueError, match="stride must be"):
        conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), stride=(1, 2, 3))
    with pytest.raises(ValueError, match="layout must be"):
        conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), layout="NHWC")
    with pytest.raises(ValueError, match=r"expected x \(C, B, Hi, Wi\)"):
        conv2d_forward(x, np.zeros((4, 3, 3, 3), np.float32), layout="CNHW")


@pytest.mark.parity
@pytest.mark.parametrize("kernel,stride,padding,hw", CONFIGS)
def test_conv2d_torch_parity(rng, kernel, stride, padding, hw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    w = rng.standard_normal((4, 3) + kernel).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(dy, cache)
    xt, wt, bt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    yt.backward(torch.from_numpy(dy))
    for name, ours, ref in (("y", y, yt.detach()), ("dx", dx, xt.grad), ("dw", dw, wt.grad), ("db", db, bt.grad)):
        ref = ref.numpy()
        diff = np.abs(ours - ref)
        idx = np.unravel_index(np.argmax(diff), diff.shape)
        assert ours.dtype == np.float32
        assert diff.max() <= 1e-5 * max(1.0, np.abs(ref).max()), f"{name}: max diff {diff.max():.2e} at {idx}"


@pytest.mark.gpu
def test_conv2d_cupy_matches_numpy(rng):
    if not backend.cupy_available():
        pytest.skip("CuPy or a CUDA GPU is not available")
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y, cache = conv2d_forward(x, w, b, 2, 1)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    grads = conv2d_backward(dy, cache)
    g = [backend.asarray(a, backend="cupy") for a in (x, w, b, dy)]
    yc, cache_c = conv2d_forward(g[0], g[1], g[2], 2, 1)
    for ours, ref in zip((yc,) + conv2d_backward(g[3], cache_c), (y,) + grads):
        assert backend.device_of(ours) == "cupy"
        np.testing.assert_allclose(backend.asnumpy(ours), ref, rtol=1e-4, atol=1e-4)
