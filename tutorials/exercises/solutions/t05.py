"""Reference solutions of tutorial 05 (the linear-chain CRF)."""
import numpy as np


def _lse(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)), axis=axis)


def _alphas(e, start, trans):
    alpha = np.zeros_like(e)
    alpha[0] = start + e[0]
    for t in range(1, len(e)):
        alpha[t] = _lse(alpha[t - 1][:, None] + trans, 0) + e[t]
    return alpha


def log_partition(e, start, end, trans):
    return float(_lse(_alphas(e, start, trans)[-1] + end, 0))


def viterbi(e, start, end, trans):
    delta, psi = start + e[0], []
    for t in range(1, len(e)):
        cand = delta[:, None] + trans + e[t][None, :]
        psi.append(cand.argmax(0))
        delta = cand.max(0)
    best = [int((delta + end).argmax())]
    for back in reversed(psi):
        best.append(int(back[best[-1]]))
    return best[::-1], float((delta + end).max())


def marginals(e, start, end, trans):
    alpha = _alphas(e, start, trans)
    beta = np.zeros_like(e)
    beta[-1] = end
    for t in range(len(e) - 2, -1, -1):
        beta[t] = _lse(trans + (e[t + 1] + beta[t + 1])[None, :], 1)
    return np.exp(alpha + beta - _lse(alpha[-1] + end, 0))
