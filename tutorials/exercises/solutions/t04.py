"""Reference solutions of tutorial 04 (the fusion gate)."""
import numpy as np


def gate_backward(dout, a, b, w1, w2, bias):
    g = 1.0 / (1.0 + np.exp(-(a @ w1.T + b @ w2.T + bias)))     # (…, C)
    dz = dout * (a - b) * g * (1 - g)                            # (…, C)
    C = a.shape[-1]
    dz2, a2, b2 = dz.reshape(-1, C), a.reshape(-1, C), b.reshape(-1, C)
    return (g * dout + dz @ w1, (1 - g) * dout + dz @ w2, dz2.T @ a2, dz2.T @ b2, dz2.sum(0))


def mix_backward(dout, a, b, g):
    dg = (a - b) * dout
    if g.shape[-1] == 1 and a.shape[-1] != 1:
        dg = dg.sum(-1, keepdims=True)                           # the gate was broadcast over C
    return g * dout, (1 - g) * dout, dg


def augment_add_no_leak(s0, aug, weight, bias):
    has = np.abs(aug).sum(-1, keepdims=True) > 0                 # (B, T, 1) rows with a vector
    return s0 + np.where(has, aug @ weight.T + bias, 0).astype(s0.dtype)
