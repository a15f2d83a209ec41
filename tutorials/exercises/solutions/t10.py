"""Reference solutions of tutorial 10 (the cross-modal model)."""
import numpy as np


def object_attention_probs(q, k, obj_ids, heads):
    B, T, C = q.shape
    D = C // heads
    qh = q.reshape(B, T, heads, D).transpose(0, 2, 1, 3)                 # (B, H, T, D)
    kh = k.reshape(B, k.shape[1], heads, D).transpose(0, 2, 1, 3)        # (B, H, O, D)
    s = qh @ kh.transpose(0, 1, 3, 2) / np.sqrt(D)                        # (B, H, T, O)
    s = s + ((obj_ids == 0) * -10000.0)[:, None, None, :]
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gate(a, b, w1, w2, bias):
    g = 1.0 / (1.0 + np.exp(-(a @ w1.T + b @ w2.T + bias)))
    return g * a + (1 - g) * b


def gate_of_gates(u_img, u_imgtxt, u_obj, u_objtxt, params):
    p = lambda n: [params[f"{n}_{leaf}"] for leaf in ("w1", "w2", "bias")]
    f1 = _gate(u_img, u_imgtxt, *p("fus1"))
    f2 = _gate(u_objtxt, u_obj, *p("fus2"))                              # the text-aware objects take the gate
    return _gate(f1, f2, *p("fus3"))


def merge_backward(dz, m, fv, w):
    H = m.shape[-1]
    x = np.concatenate([m, fv], -1).reshape(-1, 2 * H)                   # (N, 2H)
    dz2 = dz.reshape(-1, dz.shape[-1])                                   # (N, H)
    dx = dz @ w.T                                                        # (…, 2H)
    return dx[..., :H], dx[..., H:], x.T @ dz2, dz2.sum(0)
