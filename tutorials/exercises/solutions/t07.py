"""Reference solutions of tutorial 07 (training)."""
import numpy as np


def adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay):
    b1, b2 = betas
    p = p * (1 - lr * weight_decay)                              # decoupled decay, before the Adam step
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v


def warmup_decay(step, total, warmup):
    if step < warmup:
        return step / warmup
    if total == warmup:
        return 0.0
    return max(0.0, (total - step) / (total - warmup))


def clip_global_norm(grads, max_norm):
    norm = float(np.sqrt(sum((g * g).sum() for g in grads)))
    coef = min(1.0, max_norm / (norm + 1e-6))
    return [g * coef for g in grads], norm
