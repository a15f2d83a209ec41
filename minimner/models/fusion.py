"""The nine fusion variants of MSCMT (docs/model.md §6, the original's ``ffusion_method`` 0–8).

Each variant turns the four text-length outputs of the cross-modal encoders
(docs/model.md §2 steps 5–8), all (B, T, C),

    U_img     txt2img_attention       text attends to the image grid           (argument ``u_img``)
    U_imgtxt  txt2txt_attention       text attends to text-aware regions       (``u_imgtxt``)
    U_obj     txt2obj_attention       text attends to the objects              (``u_obj``)
    U_objtxt  txt2obj_attention_v2    text attends to text-aware objects       (``u_objtxt``)

into one fused visual vector Fv (B, T, C), which the model then merges with the
text (``[M; Fv] · fusion_w``). Notation: ``gateN(a, b) = g ⊙ a + (1 − g) ⊙ b`` with
``g = σ(a W_N1ᵀ + b W_N2ᵀ + b_N)`` (parameters ``fusN_w1, fusN_w2, fusN_bias``; ``a``
takes the gate, :mod:`minimner.ops.gate`); ``F1 = gate1(U_img, U_imgtxt)`` and
``F2 = gate2(U_objtxt, U_obj)`` (U_objtxt takes the gate); ``drop.p`` is inverted
dropout, active in ``train()`` mode only. The operand orders are the original's.

== ================= ======================================================== ==================================
id name              Fv                                                       parameters (original leaf names)
== ================= ======================================================== ==================================
0  concat            ReLU(fus_cat_linear(drop.5([U_objtxt; U_img; U_imgtxt;   fus_cat_linear (4H→C)
                     U_obj])))
1  gate_of_gates     drop.5(gate3(F1, F2))                                    fus1_*, fus2_*, fus3_w1/w2/bias
2  gate_concat       ReLU(fus3_linear(drop.5([F1; F2])))         (default)    fus1_*, fus2_*, fus3_linear (2H→C)
3  path_attention    X = stack(U_objtxt, U_img, U_imgtxt, U_obj), (B,T,4,C)   mlp_linear1 (C→C), mlp_linear2 (C→1)
                     s = ReLU(mlp_linear2(drop.1(ReLU(mlp_linear1(X)))))
                     β = softmax over the 4 paths;  Fv = Σ_k β_k X_k
4  linear_sum        ReLU(add_linear(drop.5(U_objtxt W_seq + U_img W_ali +    seq_w, ali_w, ati_w, obj_w (x W,
                     U_imgtxt W_ati + U_obj W_obj + add_bias)))               untransposed), add_bias, add_linear
5  gmf_filtration    Gm = GMF(text = U_imgtxt, img = U_objtxt)                gmf.*, filtration_gate.*, gfg (2H→C)
                     [U_img; R] = FiltrationGate(text = U_img, mm = Gm)
                     Fv = gfg([U_img; R])  (no activation)
6  grid_vs_objects   gate1(U_img, U_obj)                                      fus1_*
7  objects_only      gate1(U_objtxt, U_obj)                                   fus1_*
8  grid_only         gate1(U_img, U_imgtxt)   (= F1)                          fus1_*
== ================= ======================================================== ==================================

GMF and FiltrationGate (method 5, the original ``utils.py``; maths in
:mod:`minimner.ops.gmf`) hard-code 768; here every 768 is the hidden size C, so at
C = 768 the shapes are the original's.

Interface of every variant (built by :func:`make_fusion`):

* ``forward(u_img, u_imgtxt, u_obj, u_objtxt) -> fv`` (B, T, C); a path the variant
  does not read may be None. ``self.gates`` then holds the gate or attention values
  of that forward, for plots: 1 ``image`` g1, ``object`` g2, ``final`` g3; 2 ``image``,
  ``object`` (B, T, C); 3 ``paths`` β (B, T, 4) in stack order; 5 ``gmf`` γ, ``filtration``
  φ (B, T, 1); 6/7/8 ``gate`` (B, T, C); 0 and 4 none.
* ``backward(dfv) -> (du_img, du_imgtxt, du_obj, du_objtxt)``, None for every path not in
  ``uses`` (the model skips that branch's backward, like torch's None gradient).
* Parameters carry the original names (docs/parameters.md §3), so ``named_parameters()`` lists
  exactly the original keys the variant uses. Init (docs/training.md §1): free-standing tensors
  U(±1/√C) (``reset_parameters``); ``Linear`` modules PyTorch's default U(±1/√fan_in).
  One generator draws the init and every dropout mask.

Dimension legend: B batch, T word-piece tokens, C hidden.
"""
from __future__ import annotations

import math

from minimner import backend
from minimner.nn import init
from minimner.nn.layers import Dropout, Linear, ReLU
from minimner.nn.module import Module, Parameter
from minimner.ops.gate import gate_backward, gate_forward
from minimner.ops.gmf import filtration_gate_backward, filtration_gate_forward, gmf_backward, gmf_forward
from minimner.ops.linear import linear_backward, linear_forward
from minimner.ops.mix import weighted_sum_backward, weighted_sum_forward
from minimner.ops.softmax import softmax_backward, softmax_forward

__all__ = ["FUSION_METHODS", "PATHS", "fusion_name", "fusion_method", "make_fusion",
           "ConcatFusion", "GateOfGatesFusion", "GateConcatFusion", "PathAttentionFusion", "LinearSumFusion",
           "GMFFiltrationFusion", "GridVsObjectsFusion", "ObjectsOnlyFusion", "GridOnlyFusion"]

#: Variant names; the index is the original ``ffusion_method``.
FUSION_METHODS = ("concat", "gate_of_gates", "gate_concat", "path_attention", "linear_sum",
                  "gmf_filtration", "grid_vs_objects", "objects_only", "grid_only")
#: The four paths, in ``forward`` / ``backward`` argument order.
PATHS = ("img", "imgtxt", "obj", "objtxt")
#: The original's concatenation (method 0) and stacking (method 3) order.
_STACK = ("objtxt", "img", "imgtxt", "obj")


def _valid() -> str:
    return ", ".join(f"{i} {n!r}" for i, n in enumerate(FUSION_METHODS))


def fusion_name(method: int) -> str:
    """The variant name of an original ``ffusion_method`` id (0–8); ValueError otherwise."""
    if isinstance(method, bool) or not isinstance(method, int) or not 0 <= method < len(FUSION_METHODS):
        raise ValueError(f"unknown ffusion_method {method!r}; expected one of {_valid()}")
    return FUSION_METHODS[method]


def fusion_method(name: str) -> int:
    """The original ``ffusion_method`` id of a variant name; ValueError for an unknown name."""
    if name not in FUSION_METHODS:
        raise ValueError(f"unknown fusion variant {name!r}; expected one of {_valid()}")
    return FUSION_METHODS.index(name)


def _generator(rng):
    return backend.rng() if rng is None else rng


def _uniform(rng, bound, shape):
    """A float32 Parameter ~ U(±bound) (the original ``reset_parameters``)."""
    return Parameter(init.uniform(rng, shape, bound))


def _xw_forward(x, w, bias=None):
    """``x W (+ bias)`` for a free-standing (C, C) matrix used untransposed (seq_w, ali_w, ati_w, obj_w).

    :func:`linear_forward` computes ``x Vᵀ``; handing it the view ``V = Wᵀ`` gives ``x W``
    without a copy. Returns ``(y (…, C), cache)``.
    """
    return linear_forward(x, w.T, bias)                    # (…, C) @ (C, C) (+ (C,)) -> (…, C)


def _xw_backward(dy, cache):
    """Gradients of :func:`_xw_forward`: ``(dx, dW, dbias)``; linear gives ∂L/∂(Wᵀ), transposed back."""
    dx, dwt, dbias = linear_backward(dy, cache)            # (…, C), (C, C) = dWᵀ, (C,) or None
    return dx, dwt.T, dbias


class _Fusion(Module):
    """Shared plumbing: input checks, the pending cache, the 4-tuple of path gradients, split gates.

    Subclasses set ``method`` and ``uses`` and implement ``_forward(**paths) -> (fv, cache)``
    (keyword arguments named as in :data:`PATHS`, only those in ``uses``) and
    ``_backward(dfv, cache) -> {path: gradient}``.
    """

    method = -1
    uses = PATHS

    def __init__(self, hidden):
        super().__init__()
        if int(hidden) < 1:
            raise ValueError(f"fusion hidden size must be positive; got {hidden!r}")
        self.hidden = int(hidden)
        self.gates = {}

    @property
    def name(self) -> str:
        return FUSION_METHODS[self.method]

    # -- the free-standing split gates fusN_w1, fusN_w2, fusN_bias (ops.gate) --
    def _add_gate(self, prefix, rng):
        """Register ``<prefix>_w1``, ``<prefix>_w2`` (C, C) and ``<prefix>_bias`` (C,), all U(±1/√C)."""
        C = self.hidden
        for leaf, shape in (("w1", (C, C)), ("w2", (C, C)), ("bias", (C,))):
            setattr(self, f"{prefix}_{leaf}", _uniform(rng, 1.0 / math.sqrt(C), shape))

    def _gate_forward(self, prefix, a, b):
        """``gate(a, b)`` with this prefix's parameters -> ``(out (B, T, C), GateCache)``."""
        return gate_forward(a, b, *(getattr(self, f"{prefix}_{leaf}").data for leaf in ("w1", "w2", "bias")))

    def _gate_backward(self, prefix, dout, cache):
        """-> ``(da, db)``; adds into the prefix's parameter gradients."""
        da, db, *dparams = gate_backward(dout, cache)     # (B, T, C) ×2, then dw1, dw2, dbias
        for leaf, d in zip(("w1", "w2", "bias"), dparams):
            getattr(self, f"{prefix}_{leaf}").grad += d
        return da, db

    # -- public interface --
    def forward(self, u_img, u_imgtxt, u_obj, u_objtxt):
        """Fuse the four paths (each (B, T, C) float, of the parameters' dtype) into fv (B, T, C).

        Raises
        ------
        ValueError
            when a path the variant reads is None, or shapes / dtypes disagree.
        """
        u = self._validate(dict(zip(PATHS, (u_img, u_imgtxt, u_obj, u_objtxt))))
        fv, cache = self._forward(**{p: u[p] for p in self.uses})
        self._save_cache((fv.shape, cache))
        return fv

    def backward(self, dfv):
        """dfv (B, T, C) -> ``(du_img, du_imgtxt, du_obj, du_objtxt)``, None for unread paths."""
        shape, cache = self._pop_cache()
        if tuple(dfv.shape) != tuple(shape):
            raise ValueError(f"{type(self).__name__}.backward: dfv must have shape {tuple(shape)}; "
                             f"got {tuple(dfv.shape)}")
        grads = self._backward(dfv, cache)
        return tuple(grads.get(p) for p in PATHS)

    def _validate(self, u):
        C, dtype, ref = self.hidden, self.parameters()[0].dtype, None
        for p, x in u.items():
            if x is None:
                if p in self.uses:
                    raise ValueError(f"{type(self).__name__} reads u_{p}; got None")
                continue
            want = f"(B, T, {C})" if ref is None else str(ref)
            if x.ndim != 3 or x.shape[-1] != C or (ref is not None and tuple(x.shape) != ref):
                raise ValueError(f"{type(self).__name__}: u_{p} must have shape {want}; got {tuple(x.shape)}")
            if x.dtype != dtype:
                raise ValueError(f"{type(self).__name__}: u_{p} must have the parameters' dtype {dtype}; "
                                 f"got {x.dtype}")
            ref = tuple(x.shape)
        return u

    def extra_repr(self) -> str:
        return f"{self.method} {self.name!r}, hidden={self.hidden}, uses={self.uses}"


class ConcatFusion(_Fusion):
    """Method 0: ``Fv = ReLU(fus_cat_linear(drop.5([U_objtxt; U_img; U_imgtxt; U_obj])))``.

    Parameters held: ``fus_cat_linear.weight`` (C, 4H), ``.bias`` (C,). Dropout ``fus_dropout`` (0.5).
    """

    method = 0

    def __init__(self, hidden, rng=None):
        super().__init__(hidden)
        rng = _generator(rng)
        self.fus_cat_linear = Linear(4 * self.hidden, self.hidden, rng=rng)
        self.fus_dropout = Dropout(0.5, rng)
        self.relu = ReLU()

    def _forward(self, img, imgtxt, obj, objtxt):
        xp = backend.get_xp(img)
        x = xp.concatenate([objtxt, img, imgtxt, obj], axis=-1)  # (B, T, 4H) in the original's order
        z = self.fus_cat_linear.forward(self.fus_dropout.forward(x))  # (B, T, 4H) @ (C, 4H)ᵀ -> (B, T, C)
        self.gates = {}
        return self.relu.forward(z), None                  # (B, T, C)

    def _backward(self, dfv, cache):
        dz = self.relu.backward(dfv)                       # (B, T, C)
        dx = self.fus_dropout.backward(self.fus_cat_linear.backward(dz))   # (B, T, 4H)
        C = self.hidden
        return {p: dx[..., k * C:(k + 1) * C] for k, p in enumerate(_STACK)}   # four (B, T, C) blocks


class _TwoGranularities(_Fusion):
    """Methods 1 and 2: the image-granularity gate F1 and the object-granularity gate F2."""

    def _f1_f2(self, img, imgtxt, obj, objtxt):
        f1, c1 = self._gate_forward("fus1", img, imgtxt)   # (B, T, C) U_img takes g1
        f2, c2 = self._gate_forward("fus2", objtxt, obj)   # (B, T, C) U_objtxt takes g2, U_obj 1 − g2
        self.gates = {"image": c1.g, "object": c2.g}
        return f1, f2, (c1, c2)

    def _f1_f2_backward(self, df1, df2, caches):
        c1, c2 = caches
        dobjtxt, dobj = self._gate_backward("fus2", df2, c2)
        dimg, dimgtxt = self._gate_backward("fus1", df1, c1)
        return {"img": dimg, "imgtxt": dimgtxt, "obj": dobj, "objtxt": dobjtxt}


class GateOfGatesFusion(_TwoGranularities):
    """Method 1: ``Fv = drop.5(gate3(F1, F2))`` (F1 takes g3).

    Parameters held: ``fus1_w1, fus1_w2`` (C, C), ``fus1_bias`` (C,), the same for ``fus2_*``
    and ``fus3_*``. Dropout ``fus_dropout`` (0.5). Gates: ``image``, ``object``, ``final``.
    """

    method = 1

    def __init__(self, hidden, rng=None):
        super().__init__(hidden)
        rng = _generator(rng)
        for prefix in ("fus1", "fus2", "fus3"):
            self._add_gate(prefix, rng)
        self.fus_dropout = Dropout(0.5, rng)

    def _forward(self, img, imgtxt, obj, objtxt):
        f1, f2, caches = self._f1_f2(img, imgtxt, obj, objtxt)   # (B, T, C) each
        f3, c3 = self._gate_forward("fus3", f1, f2)        # (B, T, C)
        self.gates["final"] = c3.g
        return self.fus_dropout.forward(f3), (caches, c3)  # (B, T, C)

    def _backward(self, dfv, cache):
        caches, c3 = cache
        df1, df2 = self._gate_backward("fus3", self.fus_dropout.backward(dfv), c3)   # (B, T, C) each
        return self._f1_f2_backward(df1, df2, caches)


class GateConcatFusion(_TwoGranularities):
    """Method 2 (the default): ``Fv = ReLU(fus3_linear(drop.5([F1; F2])))`` (docs/model.md §2 step 10).

    Parameters held: ``fus1_w1, fus1_w2, fus1_bias, fus2_w1, fus2_w2, fus2_bias``,
    ``fus3_linear.weight`` (C, 2H), ``fus3_linear.bias`` (C,). Dropout ``fus_dropout`` (0.5).
    Gates: ``image`` g1, ``object`` g2.
    """

    method = 2

    def __init__(self, hidden, rng=None):
        super().__init__(hidden)
        rng = _generator(rng)
        self._add_gate("fus1", rng)
        self._add_gate("fus2", rng)
        self.fus3_linear = Linear(2 * self.hidden, self.hidden, rng=rng)
        self.fus_dropout = Dropout(0.5, rng)
        self.relu = ReLU()

    def _forward(self, img, imgtxt, obj, objtxt):
        f1, f2, caches = self._f1_f2(img, imgtxt, obj, objtxt)   # (B, T, C) each
        x = backend.get_xp(f1).concatenate([f1, f2], axis=-1)   # (B, T, 2H)
        z = self.fus3_linear.forward(self.fus_dropout.forward(x))   # (B, T, 2H) @ (C, 2H)ᵀ -> (B, T, C)
        return self.relu.forward(z), caches                # (B, T, C)

    def _backward(self, dfv, caches):
        dz = self.relu.backward(dfv)                       # (B, T, C)
        dx = self.fus_dropout.backward(self.fus3_linear.backward(dz))   # (B, T, 2H)
        C = self.hidden
        return self._f1_f2_backward(dx[..., :C], dx[..., C:], caches)


class PathAttentionFusion(_Fusion):
    """Method 3: attention over the four paths, ``Fv = Σ_k β_k X_k``.

    ``X`` stacks (U_objtxt, U_img, U_imgtxt, U_obj) as (B, T, 4, C) (the original's
    ``view(B·T, 4, C)`` of the concatenation); ``s = ReLU(mlp_linear2(drop(ReLU(mlp_linear1(X)))))``
    (B, T, 4, 1); ``β = softmax(s)`` over the 4 paths.

    Parameters held: ``mlp_linear1.weight`` (C, C) / ``.bias`` (C,), ``mlp_linear2.weight``
    (1, C) / ``.bias`` (1,). Dropout ``dropout`` with p = ``dropout_prob`` (the original's
    shared ``dropout``, hidden_dropout_prob = 0.1; its ``mlp_dropout`` is never applied).
    Gates: ``paths`` β (B, T, 4), in stack order.
    """

    method = 3

    def __init__(self, hidden, rng=None, dropout_prob=0.1):
        super().__init__(hidden)
        rng = _generator(rng)
        self.mlp_linear1 = Linear(self.hidden, self.hidden, rng=rng)
        self.mlp_linear2 = Linear(self.hidden, 1, rng=rng)
        self.dropout = Dropout(dropout_prob, rng)
        self.relu1, self.relu2 = ReLU(), ReLU()

    def _forward(self, img, imgtxt, obj, objtxt):
        x = backend.get_xp(img).stack([objtxt, img, imgtxt, obj], axis=-2)   # (B, T, 4, C)
        h = self.dropout.forward(self.relu1.forward(self.mlp_linear1.forward(x)))   # (B,T,4,C) @ (C,C)ᵀ -> (B,T,4,C)
        s = self.relu2.forward(self.mlp_linear2.forward(h))   # (B, T, 4, C) @ (1, C)ᵀ -> (B, T, 4, 1)
        beta, c_sm = softmax_forward(s[..., 0], axis=-1)   # (B, T, 4); beta[b, t, k] weighs path k
        fv, c_ws = weighted_sum_forward(x, beta)           # (B, T, 4) · (B, T, 4, C) -> (B, T, C)
        self.gates = {"paths": beta}
        return fv, (c_sm, c_ws)

    def _backward(self, dfv, cache):
        c_sm, c_ws = cache
        dx, dbeta = weighted_sum_backward(dfv, c_ws)       # (B, T, 4, C), (B, T, 4)
        ds = softmax_backward(dbeta, c_sm)[..., None]      # (B, T, 4) -> (B, T, 4, 1)
        dh = self.mlp_linear2.backward(self.relu2.backward(ds))   # (B, T, 4, C)
        dx = dx + self.mlp_linear1.backward(self.relu1.backward(self.dropout.backward(dh)))   # (B, T, 4, C)
        return {p: dx[..., k, :] for k, p in enumerate(_STACK)}   # four (B, T, C) slices


class LinearSumFusion(_Fusion):
    """Method 4: ``Fv = ReLU(add_linear(drop.5(U_objtxt W_seq + U_img W_ali + U_imgtxt W_ati + U_obj W_obj + b)))``.

    The four (C, C) matrices act as ``x W`` (untransposed, docs/parameters.md §1), unlike every other matrix here.

    Parameters held: ``seq_w, ali_w, ati_w, obj_w`` (C, C), ``add_bias`` (C,),
    ``add_linear.weight`` (C, C) / ``.bias`` (C,). Dropout ``fus_dropout`` (0.5).
    """

    method = 4
    _TERMS = (("objtxt", "seq_w"), ("img", "ali_w"), ("imgtxt", "ati_w"), ("obj", "obj_w"))

    def __init__(self, hidden, rng=None):
        super().__init__(hidden)
        rng = _generator(rng)
        C, bound = self.hidden, 1.0 / math.sqrt(self.hidden)
        for _, w in self._TERMS:
            setattr(self, w, _uniform(rng, bound, (C, C)))
        self.add_bias = _uniform(rng, bound, (C,))
        self.add_linear = Linear(C, C, rng=rng)
        self.fus_dropout = Dropout(0.5, rng)
        self.relu = ReLU()

    def _forward(self, img, imgtxt, obj, objtxt):
        z, c_seq = _xw_forward(objtxt, self.seq_w.data, self.add_bias.data)   # (B,T,C) @ (C,C) + (C,) -> (B,T,C)
        z_ali, c_ali = _xw_forward(img, self.ali_w.data)   # (B, T, C) @ (C, C) -> (B, T, C)
        z_ati, c_ati = _xw_forward(imgtxt, self.ati_w.data)   # (B, T, C) @ (C, C) -> (B, T, C)
        z_obj, c_obj = _xw_forward(obj, self.obj_w.data)   # (B, T, C) @ (C, C) -> (B, T, C)
        z = z + z_ali + z_ati + z_obj                      # (B, T, C)
        out = self.add_linear.forward(self.fus_dropout.forward(z))   # (B, T, C) @ (C, C)ᵀ -> (B, T, C)
        self.gates = {}
        return self.relu.forward(out), (c_seq, c_ali, c_ati, c_obj)   # (B, T, C)

    def _backward(self, dfv, caches):
        dz = self.fus_dropout.backward(self.add_linear.backward(self.relu.backward(dfv)))   # (B, T, C)
        grads = {}
        for (p, w), c in zip(self._TERMS, caches):         # the sum hands the same dz to every product
            grads[p], dw, dbias = _xw_backward(dz, c)      # (B, T, C), (C, C), (C,) or None
            getattr(self, w).grad += dw
            if dbias is not None:                          # add_bias rode on the U_objtxt product
                self.add_bias.grad += dbias
        return grads


class _Linears(Module):
    """A holder of named :class:`Linear` children (``name=(in, out, bias)``), in the given order.

    It gives method 5 the original's nested names (``gmf.text_linear.weight``, …); its maths is
    the op pair in :mod:`minimner.ops.gmf`, whose weight arguments follow ``parameters()`` order.
    """

    def __init__(self, rng, **layers):
        super().__init__()
        for name, (n_in, n_out, bias) in layers.items():
            setattr(self, name, Linear(n_in, n_out, bias=bias, rng=rng))

    def arrays(self):
        return [p.data for p in self.parameters()]

    def add_grads(self, grads):
        for p, d in zip(self.parameters(), grads):
            p.grad += d


class GMFFiltrationFusion(_Fusion):
    """Method 5: ``Fv = gfg(FiltrationGate(text = U_img, mm = GMF(text = U_imgtxt, img = U_objtxt)))``.

    U_obj is not read. GMF and FiltrationGate are the op pairs of :mod:`minimner.ops.gmf`
    (the original's 768 generalised to C); no activation after ``gfg`` and no dropout.

    Parameters held: ``gmf.{text_linear, img_linear}`` (C→C), ``gmf.gate_linear`` (2H→1),
    ``filtration_gate.text_linear.weight`` (C, C; **no bias**), ``filtration_gate.multimodal_linear``,
    ``.resv_linear`` (C→C), ``filtration_gate.gate_linear`` (2H→1), ``gfg`` (2H→C), each Linear
    with ``weight`` and ``bias``. Gates: ``gmf`` γ, ``filtration`` φ, (B, T, 1) each.
    """

    method = 5
    uses = ("img", "imgtxt", "objtxt")

    def __init__(self, hidden, rng=None):
        super().__init__(hidden)
        rng, C = _generator(rng), self.hidden
        self.gmf = _Linears(rng, text_linear=(C, C, True), img_linear=(C, C, True), gate_linear=(2 * C, 1, True))
        self.filtration_gate = _Linears(rng, text_linear=(C, C, False), multimodal_linear=(C, C, True),
                                        gate_linear=(2 * C, 1, True), resv_linear=(C, C, True))
        self.gfg = Linear(2 * C, C, rng=rng)

    def _forward(self, img, imgtxt, objtxt):
        gm, gamma, c_gmf = gmf_forward(imgtxt, objtxt, *self.gmf.arrays())   # (B, T, C), (B, T, 1)
        out, phi, c_fg = filtration_gate_forward(img, gm, *self.filtration_gate.arrays())   # (B, T, 2H), (B, T, 1)
        self.gates = {"gmf": gamma, "filtration": phi}
        return self.gfg.forward(out), (c_gmf, c_fg)        # (B, T, 2H) @ (C, 2H)ᵀ -> (B, T, C)

    def _backward(self, dfv, cache):
        c_gmf, c_fg = cache
        dimg, dgm, *d_fg = filtration_gate_backward(self.gfg.backward(dfv), c_fg)   # (B, T, C) ×2, weights
        self.filtration_gate.add_grads(d_fg)
        dimgtxt, dobjtxt, *d_gmf = gmf_backward(dgm, c_gmf)   # (B, T, C) ×2, weights
        self.gmf.add_grads(d_gmf)
        return {"img": dimg, "imgtxt": dimgtxt, "objtxt": dobjtxt}


class _SingleGate(_Fusion):
    """Methods 6–8: ``Fv = gate1(a, b)`` with the ``fus1_*`` parameters; no dropout."""

    a_path = b_path = None

    def __init__(self, hidden, rng=None):
        super().__init__(hidden)
        self._add_gate("fus1", _generator(rng))

    def _forward(self, **u):
        fv, cache = self._gate_forward("fus1", u[self.a_path], u[self.b_path])   # (B, T, C)
        self.gates = {"gate": cache.g}
        return fv, cache

    def _backward(self, dfv, cache):
        da, db = self._gate_backward("fus1", dfv, cache)
        return {self.a_path: da, self.b_path: db}


class GridVsObjectsFusion(_SingleGate):
    """Method 6: ``Fv = g ⊙ U_img + (1 − g) ⊙ U_obj``, ``g = σ(U_img W11ᵀ + U_obj W12ᵀ + b1)``."""
    method, uses, a_path, b_path = 6, ("img", "obj"), "img", "obj"


class ObjectsOnlyFusion(_SingleGate):
    """Method 7 (−textimg): ``Fv = g ⊙ U_objtxt + (1 − g) ⊙ U_obj``, g = σ(U_objtxt W11ᵀ + U_obj W12ᵀ + b1)."""
    method, uses, a_path, b_path = 7, ("obj", "objtxt"), "objtxt", "obj"


class GridOnlyFusion(_SingleGate):
    """Method 8 (−textobj): ``Fv = F1 = g ⊙ U_img + (1 − g) ⊙ U_imgtxt``, g = σ(U_img W11ᵀ + U_imgtxt W12ᵀ + b1)."""
    method, uses, a_path, b_path = 8, ("img", "imgtxt"), "img", "imgtxt"


_VARIANTS = (ConcatFusion, GateOfGatesFusion, GateConcatFusion, PathAttentionFusion, LinearSumFusion,
             GMFFiltrationFusion, GridVsObjectsFusion, ObjectsOnlyFusion, GridOnlyFusion)


def make_fusion(name, hidden: int, rng=None, hidden_dropout_prob: float = 0.1) -> Module:
    """Build one fusion variant.

    Parameters
    ----------
    name : str in :data:`FUSION_METHODS` (or the original ``ffusion_method`` id, an int 0–8).
    hidden : int, C.
    rng : generator for the init and every dropout mask (default: a fresh one on the current backend).
    hidden_dropout_prob : p of method 3's dropout (the original's shared ``dropout``); unused otherwise.

    Returns
    -------
    The variant module (float32 parameters), in training mode.

    Raises
    ------
    ValueError
        for an unknown name or method id, listing the valid ones.
    """
    method = fusion_method(fusion_name(name) if isinstance(name, int) else name)
    if method == 3:
        return PathAttentionFusion(hidden, rng, hidden_dropout_prob)
    return _VARIANTS[method](hidden, rng)
