"""Gated multimodal fusion (GMF) and the filtration gate: forward/backward pairs (docs/model.md §6, method 5).

Fusion method 5 chains two blocks from the original ``utils.py`` (which hard-codes
768 for every C below; these pairs take any C)::

    GMF(text, img):
        ĩ  = tanh(img W_iᵀ + b_i),   t̃ = tanh(text W_tᵀ + b_t)       (…, C)
        γ  = σ([ĩ; t̃] w_gᵀ + b_g)                                    (…, 1), one gate per row
        Gm = γ ⊙ ĩ + (1 − γ) ⊙ t̃                                     (…, C)

    FiltrationGate(text, mm):
        φ   = σ([text W_xᵀ; mm W_mᵀ + b_m] w_fᵀ + b_f)               (…, 1); W_x has no bias
        R   = φ ⊙ tanh(mm W_rᵀ + b_r)                                 (…, C)
        out = [text; R]                                               (…, 2C)

All weights are in PyTorch layout (Out, In) and act as ``x Wᵀ``; ``w_g, w_f`` are
(1, 2C). The γ and φ gates are broadcast over C (:mod:`minimner.ops.mix`).

Backward, block by block in reverse (``dX`` is ∂L/∂X)::

    GMF:  dĩ, dt̃, dγ = mix_backward(dGm)          d[ĩ; t̃] += sigmoid/linear backward of dγ
          dimg = linear_backward(dĩ ⊙ (1 − ĩ²))    dtext = linear_backward(dt̃ ⊙ (1 − t̃²))
    FG:   dR, dtext₁ = split(dout);  dr, dφ = scale_backward(dR)
          dmm  = back through resv (dr) + back through W_m (dφ's share of d[...; ...])
          dtext = dtext₁ + back through W_x (dφ's other share)

Dimension legend: B batch, T word-piece tokens, C hidden; ``…`` any leading shape (B, T).
"""
from __future__ import annotations

from typing import NamedTuple

from minimner.backend import get_xp
from minimner.ops.activations import sigmoid_backward, sigmoid_forward, tanh_backward, tanh_forward
from minimner.ops.linear import linear_backward, linear_forward
from minimner.ops.mix import mix_backward, mix_forward, scale_backward, scale_forward

__all__ = ["GMFCache", "gmf_forward", "gmf_backward", "FiltrationCache", "filtration_gate_forward",
           "filtration_gate_backward"]


class GMFCache(NamedTuple):
    """What :func:`gmf_backward` needs (all stored; the linear caches hold inputs and weights by reference)."""

    lin_text: object   # text W_tᵀ + b_t
    lin_img: object    # img W_iᵀ + b_i
    t: object          # (…, C) t̃: the tanh's cache (its output)
    i: object          # (…, C) ĩ
    lin_gate: object   # [ĩ; t̃] w_gᵀ + b_g
    gamma: object      # (…, 1) γ: the sigmoid's cache
    mix: object        # MixCache(ĩ, t̃, γ)


def gmf_forward(text, img, w_t, b_t, w_i, b_i, w_g, b_g):
    """``Gm = γ ⊙ tanh(img W_iᵀ + b_i) + (1 − γ) ⊙ tanh(text W_tᵀ + b_t)`` with a per-row gate γ.

    Parameters
    ----------
    text, img : (…, C) float arrays of one shape and dtype (method 5: U_imgtxt and U_objtxt).
    w_t, w_i : (C, C); b_t, b_i : (C,) — ``text_linear`` and ``img_linear``.
    w_g : (1, 2C); b_g : (1,) — ``gate_linear``, acting on ``[ĩ; t̃]`` (image part first).

    Returns
    -------
    gm : (…, C); gamma : (…, 1); cache : :class:`GMFCache` — arrays in ``text.dtype``.

    Raises
    ------
    ValueError
        when text and img differ in shape, or a weight does not fit (from the linear op).
    """
    if text.shape != img.shape:
        raise ValueError(f"gmf_forward: text and img must share one shape; got {tuple(text.shape)} "
                         f"and {tuple(img.shape)}")
    xp = get_xp(text)
    zi, lin_img = linear_forward(img, w_i, b_i)            # (…, C) @ (C, C)ᵀ + (C,) -> (…, C)
    zt, lin_text = linear_forward(text, w_t, b_t)          # (…, C) @ (C, C)ᵀ + (C,) -> (…, C)
    i, _ = tanh_forward(zi)                                # (…, C) ĩ; the cache is ĩ itself
    t, _ = tanh_forward(zt)                                # (…, C) t̃
    zg, lin_gate = linear_forward(xp.concatenate([i, t], axis=-1), w_g, b_g)   # (…, 2C) @ (2C, 1) -> (…, 1)
    gamma, _ = sigmoid_forward(zg)                         # (…, 1) in (0, 1)
    gm, mix = mix_forward(i, t, gamma)                     # (…, C) γ ĩ + (1 − γ) t̃
    return gm, gamma, GMFCache(lin_text, lin_img, t, i, lin_gate, gamma, mix)


def gmf_backward(dgm, cache):
    """Gradients of :func:`gmf_forward` (γ is an output for plots only: it takes no upstream gradient).

    Parameters
    ----------
    dgm : (…, C), ∂L/∂Gm.
    cache : :class:`GMFCache`.

    Returns
    -------
    dtext, dimg : (…, C); dw_t, db_t, dw_i, db_i : (C, C), (C,), (C, C), (C,); dw_g : (1, 2C); db_g : (1,).
    """
    C = cache.i.shape[-1]
    # Gm = γ ĩ + (1 − γ) t̃
    di, dt, dgamma = mix_backward(dgm, cache.mix)          # (…, C), (…, C), (…, 1)
    # γ = σ([ĩ; t̃] w_gᵀ + b_g): the gate reads both tanh outputs too.
    dcat, dw_g, db_g = linear_backward(sigmoid_backward(dgamma, cache.gamma), cache.lin_gate)   # (…, 2C)
    di = di + dcat[..., :C]                                # (…, C) ĩ came first in [ĩ; t̃]
    dt = dt + dcat[..., C:]                                # (…, C)
    # t̃ = tanh(text W_tᵀ + b_t), ĩ = tanh(img W_iᵀ + b_i)
    dtext, dw_t, db_t = linear_backward(tanh_backward(dt, cache.t), cache.lin_text)   # (…, C), (C, C), (C,)
    dimg, dw_i, db_i = linear_backward(tanh_backward(di, cache.i), cache.lin_img)     # (…, C), (C, C), (C,)
    return dtext, dimg, dw_t, db_t, dw_i, db_i, dw_g, db_g


class FiltrationCache(NamedTuple):
    """What :func:`filtration_gate_backward` needs (all stored; linear caches by reference)."""

    lin_text: object   # text W_xᵀ (no bias)
    lin_mm: object     # mm W_mᵀ + b_m
    lin_gate: object   # [..; ..] w_fᵀ + b_f
    phi: object        # (…, 1) φ: the sigmoid's cache
    lin_resv: object   # mm W_rᵀ + b_r
    r: object          # (…, C) tanh(mm W_rᵀ + b_r): the tanh's cache
    scale: object      # ScaleCache(r, φ)


def filtration_gate_forward(text, mm, w_x, w_m, b_m, w_f, b_f, w_r, b_r):
    """``out = [text; φ ⊙ tanh(mm W_rᵀ + b_r)]`` with ``φ = σ([text W_xᵀ; mm W_mᵀ + b_m] w_fᵀ + b_f)``.

    Parameters
    ----------
    text, mm : (…, C) float arrays of one shape and dtype (method 5: U_img and GMF's Gm).
    w_x : (C, C) — ``text_linear`` (no bias); w_m : (C, C), b_m : (C,) — ``multimodal_linear``.
    w_f : (1, 2C), b_f : (1,) — ``gate_linear``; w_r : (C, C), b_r : (C,) — ``resv_linear``.

    Returns
    -------
    out : (…, 2C); phi : (…, 1); cache : :class:`FiltrationCache` — arrays in ``text.dtype``.

    Raises
    ------
    ValueError
        when text and mm differ in shape, or a weight does not fit (from the linear op).
    """
    if text.shape != mm.shape:
        raise ValueError(f"filtration_gate_forward: text and mm must share one shape; got {tuple(text.shape)} "
                         f"and {tuple(mm.shape)}")
    xp = get_xp(text)
    zx, lin_text = linear_forward(text, w_x)               # (…, C) @ (C, C)ᵀ -> (…, C)
    zm, lin_mm = linear_forward(mm, w_m, b_m)              # (…, C) @ (C, C)ᵀ + (C,) -> (…, C)
    zf, lin_gate = linear_forward(xp.concatenate([zx, zm], axis=-1), w_f, b_f)   # (…, 2C) @ (2C, 1) -> (…, 1)
    phi, _ = sigmoid_forward(zf)                           # (…, 1) in (0, 1)
    zr, lin_resv = linear_forward(mm, w_r, b_r)            # (…, C) @ (C, C)ᵀ + (C,) -> (…, C)
    r, _ = tanh_forward(zr)                                # (…, C)
    reserved, scale = scale_forward(r, phi)                # (…, C) φ ⊙ r
    out = xp.concatenate([text, reserved], axis=-1)        # (…, 2C)
    return out, phi, FiltrationCache(lin_text, lin_mm, lin_gate, phi, lin_resv, r, scale)


def filtration_gate_backward(dout, cache):
    """Gradients of :func:`filtration_gate_forward` (φ takes no upstream gradient).

    Parameters
    ----------
    dout : (…, 2C), ∂L/∂out.
    cache : :class:`FiltrationCache`.

    Returns
    -------
    dtext, dmm : (…, C); dw_x : (C, C); dw_m, db_m : (C, C), (C,); dw_f, db_f : (1, 2C), (1,);
    dw_r, db_r : (C, C), (C,).
    """
    C = cache.r.shape[-1]
    # out = [text; R], R = φ ⊙ r
    dr, dphi = scale_backward(dout[..., C:], cache.scale)  # (…, C), (…, 1)
    # r = tanh(mm W_rᵀ + b_r)
    dmm, dw_r, db_r = linear_backward(tanh_backward(dr, cache.r), cache.lin_resv)   # (…, C), (C, C), (C,)
    # φ = σ([text W_xᵀ; mm W_mᵀ + b_m] w_fᵀ + b_f)
    dcat, dw_f, db_f = linear_backward(sigmoid_backward(dphi, cache.phi), cache.lin_gate)   # (…, 2C)
    dmm2, dw_m, db_m = linear_backward(dcat[..., C:], cache.lin_mm)   # (…, C): mm also feeds the gate
    dtext, dw_x, _ = linear_backward(dcat[..., :C], cache.lin_text)   # (…, C)
    dtext = dtext + dout[..., :C]                          # text is also copied into out
    return dtext, dmm + dmm2, dw_x, dw_m, db_m, dw_f, db_f, dw_r, db_r
