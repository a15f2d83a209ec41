"""Reference solutions of tutorial 03 (convolution, batch norm, max-pool)."""
import numpy as np


def conv2d_im2col(x, w, bias, stride, pad):
    B, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    cols = np.empty((C, kh, kw, B, Ho, Wo), x.dtype)             # one strided copy per kernel tap
    for u in range(kh):
        for v in range(kw):
            cols[:, u, v] = xp[:, :, u:u + stride * Ho:stride, v:v + stride * Wo:stride].transpose(1, 0, 2, 3)
    y2 = w.reshape(O, -1) @ cols.reshape(C * kh * kw, -1)        # (O, K) @ (K, B·Ho·Wo)
    return y2.reshape(O, B, Ho, Wo).transpose(1, 0, 2, 3) + bias[None, :, None, None]


def fold_bn(w, b, gamma, beta, mean, var, eps):
    a = gamma / np.sqrt(var + eps)                               # (O,) the per-channel scale
    return w * a[:, None, None, None], (b - mean) * a + beta


def maxpool_backward(dy, x, k, stride):
    dx = np.zeros_like(x)
    B, C, Ho, Wo = dy.shape
    for b in range(B):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    win = x[b, c, i * stride:i * stride + k, j * stride:j * stride + k]
                    u, v = np.unravel_index(np.argmax(win), win.shape)   # argmax: the first maximum
                    dx[b, c, i * stride + u, j * stride + v] += dy[b, c, i, j]
    return dx
