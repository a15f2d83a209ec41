"""Sigmoid fusion gate module around :mod:`minimner.ops.gate`.

Used by the fusion (docs/model.md §2 step 10 and §6) and by the gated augmentation
(docs/augmentation.md §3).

    g = σ(a W1ᵀ + b W2ᵀ + bias),   out = g ⊙ a + (1 − g) ⊙ b

MSCMT stores its gates in two layouts; the constructor picks one so a model can
mirror the original parameter names (converters stay renames):

* ``layout="split"`` (default): two (C, C) matrices and a (C,) bias, as the
  free-standing ``fus1_w1, fus1_w2, fus1_bias`` (also ``fus2_*``, ``fus3_*``,
  ``aug_*``). ``names`` gives the three parameter names, e.g.
  ``Gate(C, names=("fus1_w1", "fus1_w2", "fus1_bias"))``.
* ``layout="concat"``: one (C, 2C) weight acting on ``[a; b]`` plus a (C,) bias,
  as an ``nn.Linear(2C, C)`` (the original's unused ``gate.weight / gate.bias``);
  ``names`` gives the two names, default ``("weight", "bias")``. W1 and W2 are
  the views ``weight[:, :C]`` and ``weight[:, C:]``.

Those original tensors are free-standing parameters of the top-level MSCMT
module (no sub-module prefix); a model that must reproduce those exact keys can
also hold the Parameters itself and call :func:`~minimner.ops.gate.gate_forward`
/ :func:`~minimner.ops.gate.gate_backward` directly.

Init: ``initializer_range=None`` (default) draws every tensor from U(±1/√C), the
original's ``reset_parameters`` (docs/training.md §1 step 5); a float σ gives N(0, σ)
weights and a zero bias (BERT's init).

Dimension legend: B batch, T word-piece tokens, C hidden; ``…`` any leading shape.
"""
from __future__ import annotations

from minimner.nn import init
from minimner.nn.module import Module, Parameter
from minimner.ops.gate import gate_backward, gate_forward

__all__ = ["Gate"]


class Gate(Module):
    """``out = g ⊙ a + (1 − g) ⊙ b`` with ``g = σ(a W1ᵀ + b W2ᵀ + bias)``.

    Parameters
    ----------
    hidden_size : C.
    names : parameter names: (w1, w2, bias) for ``layout="split"``, (weight, bias)
        for ``layout="concat"``. Default ("w1", "w2", "bias") / ("weight", "bias").
    layout : "split" (two (C, C) matrices) or "concat" (one (C, 2C) matrix).
    initializer_range : None for U(±1/√C) everywhere, or σ for N(0, σ) weights and zero bias.
    rng : generator for the init (default: a fresh one on the current backend).
    """

    def __init__(self, hidden_size, names=None, layout="split", initializer_range=None, rng=None):
        super().__init__()
        C = int(hidden_size)
        if layout not in ("split", "concat"):
            raise ValueError(f"Gate layout must be 'split' or 'concat'; got {layout!r}")
        n_names = 3 if layout == "split" else 2
        names = (("w1", "w2", "bias") if layout == "split" else ("weight", "bias")) if names is None else tuple(names)
        if len(names) != n_names or len(set(names)) != n_names or not all(n.isidentifier() for n in names):
            raise ValueError(f"Gate layout {layout!r} needs {n_names} distinct identifier names; got {names!r}")
        self.hidden_size, self.layout, self.names = C, layout, names
        rng = init.generator(rng)
        w_shapes = [(C, C), (C, C)] if layout == "split" else [(C, 2 * C)]
        if initializer_range is None:                       # U(±1/√C) everywhere: reset_parameters
            arrays = [init.uniform(rng, s, init.fan_in_bound(C)) for s in w_shapes + [(C,)]]
        else:                                               # N(0, σ) weights, zero bias
            arrays = [init.normal(rng, s, initializer_range) for s in w_shapes]
            arrays.append(init.zeros(arrays[0], (C,)))      # on the generator's device
        for name, arr in zip(names, arrays):
            setattr(self, name, Parameter(arr))

    def _weights(self):
        """(w1, w2, bias) arrays: views of the concatenated weight for ``layout="concat"``."""
        if self.layout == "split":
            return tuple(getattr(self, n).data for n in self.names)
        w, bias = getattr(self, self.names[0]).data, getattr(self, self.names[1]).data
        C = self.hidden_size
        return w[:, :C], w[:, C:], bias                    # (C, 2C) -> (C, C), (C, C) views

    def forward(self, a, b):
        """a, b (…, C) -> out (…, C); ``a`` takes the gate g, ``b`` takes 1 − g."""
        w1, w2, bias = self._weights()
        out, cache = gate_forward(a, b, w1, w2, bias)
        self._save_cache(cache)
        return out

    def backward(self, dout):
        """dout (…, C) -> ``(da, db)``; adds the parameter gradients."""
        da, db, dw1, dw2, dbias = gate_backward(dout, self._pop_cache())
        if self.layout == "split":
            for name, d in zip(self.names, (dw1, dw2, dbias)):
                getattr(self, name).grad += d
        else:
            C = self.hidden_size
            wgrad = getattr(self, self.names[0]).grad
            wgrad[:, :C] += dw1                            # (C, C) block of the (C, 2C) gradient
            wgrad[:, C:] += dw2
            getattr(self, self.names[1]).grad += dbias
        return da, db

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, layout={self.layout!r}, names={self.names!r}"
