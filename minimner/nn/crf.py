"""The CRF module: three parameters around the pure functions of :mod:`minimner.crf`.

Parameter names, shapes and initialisation follow pytorch-crf 0.7.2, so a
state dict converts by copying (``crf.start_transitions`` …):

* ``start_transitions (K,)``, ``end_transitions (K,)``, ``transitions (K, K)``
  with ``transitions[i, j]`` scoring the move i -> j; all U(−0.1, 0.1).

Inputs are batch-first backend arrays: emissions (B, T, K) float, tags (B, T)
int, mask (B, T) bool prefix mask with ``mask[:, 0]`` true (docs/training.md §4). This is
the API edge: the value checks (first step on, prefix mask, tag range) happen here, not in
the pure functions, and only for host arrays: on a device each would be a sync per call.

Dimension legend: B batch, T word-piece tokens, K tags.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from minimner import backend
from minimner import crf as F
from minimner.constraints import Constraints
from minimner.nn.module import Module, Parameter

# Constraints is part of this module's public surface: it is the type decode() takes.
__all__ = ["CRF", "Constraints"]


class CRF(Module):
    """Linear-chain conditional random field (pytorch-crf semantics, batch first).

    Parameters
    ----------
    num_tags : K, the number of tags.
    rng : NumPy/CuPy generator or int seed for the U(−0.1, 0.1) initialisation
        (default: fresh entropy).
    dtype : parameter dtype (float32; ``.double()`` for gradient checks).

    Methods
    -------
    log_partition(emissions, mask) -> (B,)
    log_likelihood(emissions, tags, mask) -> (B,)      (pytorch-crf ``reduction='none'``)
    marginals(emissions, mask) -> (B, T, K)
    forward(emissions, tags, mask) -> mean NLL over the batch (scalar)
    backward(dout=1.0) -> d emissions (B, T, K); adds into the parameter grads
    decode(emissions, mask, allowed=None) -> list of B lists of tag ids
    """

    def __init__(self, num_tags: int, rng=None, dtype=backend.DEFAULT_FLOAT):
        super().__init__()
        if int(num_tags) <= 0:
            raise ValueError(f"invalid number of tags: {num_tags}")
        self.num_tags = int(num_tags)
        K = self.num_tags
        xp = backend.xp()
        self.start_transitions = Parameter(xp.zeros(K, dtype=dtype))      # (K,)
        self.end_transitions = Parameter(xp.zeros(K, dtype=dtype))        # (K,)
        self.transitions = Parameter(xp.zeros((K, K), dtype=dtype))       # (K, K) [from, to]
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None) -> None:
        """Fill all three parameters with U(−0.1, 0.1) (as pytorch-crf), in registration order."""
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = np.random.default_rng(rng)
        for p in self.parameters():
            u = rng.random(p.data.shape) * 0.2 - 0.1                      # U(-0.1, 0.1), p's shape
            p.data = backend.asarray(u, dtype=p.data.dtype, backend=backend.device_of(p.data))
            p.grad = backend.get_xp(p.data).zeros_like(p.data)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    # ---------------------------------------------------------------- validation
    def _params(self):
        return self.start_transitions.data, self.end_transitions.data, self.transitions.data

    def _validate(self, emissions, mask, tags=None):
        """Check shapes, dtypes, backend and mask/tag values; return the boolean mask.

        The value checks (mask starts on and is a prefix, tags in range) read the data on the
        host. On a device (CuPy) each would be a synchronisation per call, so, as in
        :func:`minimner.ops.embedding`, they run for host arrays only; device batches come from
        :func:`minimner.data.batching.make_batch`, which builds prefix masks by construction.
        """
        if getattr(emissions, "ndim", None) != 3:
            raise ValueError(f"emissions must be (B, T, K), got shape {getattr(emissions, 'shape', None)}")
        B, T, K = emissions.shape
        if K != self.num_tags:
            raise ValueError(f"expected last dimension of emissions to be num_tags = {self.num_tags}, got {K}")
        if emissions.dtype != self.transitions.data.dtype:
            raise ValueError(f"emissions dtype {emissions.dtype} differs from the CRF parameters' "
                             f"{self.transitions.data.dtype} (cast one of them; .double() for gradchecks)")
        where = backend.device_of(self.transitions.data)
        if backend.device_of(emissions) != where:
            raise ValueError(f"emissions live on {backend.device_of(emissions)} but the CRF on {where} "
                             f"(move one with backend.asarray / CRF.to)")
        xp = backend.get_xp(emissions)
        if mask is None:
            mask = xp.ones((B, T), dtype=bool)                    # (B, T)
        if tuple(mask.shape) != (B, T):
            raise ValueError(f"mask must be (B, T) = {(B, T)} like emissions, got {tuple(mask.shape)}")
        if backend.device_of(mask) != where:
            raise ValueError(f"mask lives on {backend.device_of(mask)} but emissions on {where}")
        mask = mask.astype(bool, copy=False)                      # (B, T) accept 0/1 integer masks
        on_host = not backend.is_device_array(emissions)
        if on_host and not bool(mask[:, 0].all()):
            raise ValueError("mask of the first timestep must all be on (mask[:, 0] is False for batch "
                             f"rows {backend.asnumpy(xp.nonzero(~mask[:, 0])[0]).tolist()})")
        if on_host and T > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("mask must be a prefix mask (ones then zeros) in every row")
        if tags is not None:
            if tuple(tags.shape) != (B, T):
                raise ValueError(f"tags must be (B, T) = {(B, T)} like emissions, got {tuple(tags.shape)}")
            if tags.dtype.kind not in "iu":
                raise ValueError(f"tags must be integer, got dtype {tags.dtype}")
            if backend.device_of(tags) != where:
                raise ValueError(f"tags live on {backend.device_of(tags)} but emissions on {where}")
            bad = mask & ((tags < 0) | (tags >= K)) if on_host else None   # (B, T)
            if on_host and bool(bad.any()):
                raise ValueError(f"tags must lie in [0, {K}) at unmasked positions; got "
                                 f"{backend.asnumpy(tags[bad]).tolist()[:5]}")
        return mask

    # ------------------------------------------------------------------ analysis
    def log_partition(self, emissions, mask=None):
        """log Z per sequence by the forward algorithm. (B, T, K), (B, T) -> (B,)."""
        mask = self._validate(emissions, mask)
        return F.crf_log_partition(emissions, mask, *self._params())

    def log_likelihood(self, emissions, tags, mask=None):
        """score(tags) − log Z per sequence (pytorch-crf's ``reduction='none'``). -> (B,)."""
        mask = self._validate(emissions, mask, tags)
        start, end, trans = self._params()
        score = F.crf_path_score(emissions, tags, mask, start, end, trans)   # (B,)
        return score - F.crf_log_partition(emissions, mask, start, end, trans)   # (B,)

    def marginals(self, emissions, mask=None):
        """P(y_t = k | e) by forward-backward; zeros at padded positions. -> (B, T, K)."""
        mask = self._validate(emissions, mask)
        return F.crf_marginals(emissions, mask, *self._params())

    # ------------------------------------------------------------ training pair
    def forward(self, emissions, tags, mask=None):
        """Mean negative log-likelihood over the batch (``−`` pytorch-crf's ``reduction='mean'``).

        Saves one cache for :meth:`backward`.

        Returns
        -------
        loss : scalar in the emissions' dtype.
        """
        mask = self._validate(emissions, mask, tags)
        nll, cache = F.crf_nll_forward(emissions, tags, mask, *self._params())   # (B,)
        self._save_cache(cache)
        return nll.mean()

    def backward(self, dout=1.0):
        """Backward of :meth:`forward`: returns d emissions (B, T, K) and adds the parameter grads.

        Parameters
        ----------
        dout : scalar upstream gradient of the mean NLL (1.0 when it is the loss).
        """
        cache = self._pop_cache()
        xp = backend.get_xp(cache.emissions)
        B = cache.emissions.shape[0]
        dtype = cache.emissions.dtype
        # A Python number stays a host scalar (no transfer); an array dout is used where it lives.
        scale = dtype.type(dout) if isinstance(dout, (int, float)) else xp.asarray(dout, dtype=dtype)
        dnll = xp.full((B,), 1.0 / B, dtype=dtype) * scale                # (B,) d mean / d nll_b
        demissions, dstart, dend, dtrans = F.crf_nll_backward(dnll, cache)
        self.start_transitions.grad += dstart
        self.end_transitions.grad += dend
        self.transitions.grad += dtrans
        return demissions

    # ----------------------------------------------------------------- decoding
    def _constraints(self, allowed, emissions):
        """Normalise ``allowed`` to a Constraints on the emissions' backend (or None)."""
        if allowed is None:
            return None
        if isinstance(allowed, Constraints):
            fields = allowed._asdict()
        elif isinstance(allowed, Mapping):
            unknown = set(allowed) - set(Constraints._fields)
            if unknown:
                raise ValueError(f"unknown constraint keys {sorted(unknown)}; expected some of "
                                 f"{list(Constraints._fields)}")
            fields = dict(allowed)
        elif hasattr(allowed, "shape"):  # a bare (K, K) boolean array: transitions only
            fields = {"transitions": allowed}
        else:
            raise ValueError(f"allowed must be None, a Constraints, a mapping or a (K, K) bool array, "
                             f"got {type(allowed).__name__}")
        where = backend.device_of(emissions)
        moved = {k: (None if v is None else backend.asarray(v, backend=where)) for k, v in fields.items()}
        return Constraints(**moved)

    def decode(self, emissions, mask=None, allowed=None) -> list[list[int]]:
        """Viterbi decoding: the best tag sequence of each sequence, of length Σ mask.

        Parameters
        ----------
        emissions : (B, T, K) float     mask : (B, T) bool prefix mask (default all on)
        allowed : None (plain Viterbi, identical to pytorch-crf), a
            :class:`~minimner.constraints.Constraints`, a mapping with some of its keys
            (``transitions``, ``start``, ``end``, ``tags``) or a bare (K, K) boolean
            transition mask. See :func:`minimner.constraints.paper_constraints`.

        Raises
        ------
        ValueError
            when a sequence has no path allowed by the constraints.
        """
        mask = self._validate(emissions, mask)
        cons = self._constraints(allowed, emissions)
        paths, best = F.crf_viterbi(emissions, mask, *self._params(), allowed=cons)   # (B, T), (B,)
        if cons is not None:
            xp = backend.get_xp(best)
            dead = backend.asnumpy(xp.isneginf(best))
            if dead.any():
                raise ValueError(f"no tag path satisfies the constraints for batch rows "
                                 f"{np.nonzero(dead)[0].tolist()}")
        return F.paths_to_lists(paths, mask)
