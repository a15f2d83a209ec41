"""Reference solutions of tutorial 02 (attention)."""
import numpy as np


def softmax_backward(dp, p):
    return p * (dp - (dp * p).sum(-1, keepdims=True))


def masked_attention_probs(q, k, mask):
    s = q @ k.T / np.sqrt(q.shape[1]) + (1.0 - mask) * -10000.0   # (Lq, Lk)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def head_backward(dctx, q, k, v):
    D = q.shape[1]
    s = q @ k.T / np.sqrt(D)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)                                  # (Lq, Lk)
    dv = p.T @ dctx
    dp = dctx @ v.T
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return ds @ k / np.sqrt(D), ds.T @ q / np.sqrt(D), dv
