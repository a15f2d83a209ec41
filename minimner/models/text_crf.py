"""The text-only BERT-CRF tagger: the paper's main baseline and the yardstick for
every multimodal gain, optionally with the semantic augmentation of docs/augmentation.md.

    S⁰ = BERT(input_ids, mask [, a])          (B, T, C)   (a enters the embeddings in mode embed)
    S  = fusion(S⁰, a)                        (B, T, C)   add: S⁰ + a W_maᵀ + b_ma; gate, embed: see below
    E  = drop_0.1(S) W_clsᵀ + b_cls           (B, T, K)   emissions
    loss = mean_b −log p_CRF(y_b | E_b)       (docs/training.md §4)

Augmentation (``aug_mode``, docs/augmentation.md §3; see :mod:`minimner.nn.augment`):

* ``none`` (default): the plain BERT-CRF; no augmentation parameters at all, so
  its state dict is exactly the baseline's;
* ``add`` / ``gate``: a post-BERT fusion held as ``augment`` (keys
  ``augment.maug_linear.*``, plus ``augment.aug_w1/aug_w2/aug_bias`` for gate);
* ``embed``: the hook ``bert.embeddings.aug_linear`` adds ``a W_eaᵀ + b_ea`` to the
  embedding sum before LayerNorm; no post-BERT fusion.

``a`` (B, T, E) is the per-position augmentation input (docs/augmentation.md §2): the table row
of each word at its first piece, zeros elsewhere. It arrives in the batch (``batch.aug``), built
by :class:`minimner.data.inputs.Collator` from the run's augmentation table; the tagger holds no
table. The input is a constant: the model computes ``dL/da`` (backward returns it) but nothing
updates it.

**The tagger interface** (shared with :class:`minimner.models.mgcmt.MGCMT`): ``batch_emissions(batch)``
(B, T, K), ``batch_loss(batch)`` (the scalar loss; keeps what backward needs), ``backward()``,
``predict_words(batch)`` (word tags) and ``explain(batch)`` (tags, emissions, and — for the
cross-modal model — attention and gates). Training, evaluation, prediction and explanation call
nothing else.

Labels follow the paper's convention (docs/data.md §2–3): the first word piece of a
word carries its tag, later pieces ``X``, plus ``[CLS]``/``[SEP]``. Decoding is a
constrained Viterbi by default (docs/differences.md §3): word positions may only take O/B-*/I-*,
so no word is ever predicted as ``X``/``[CLS]``/``[SEP]``/pad.

Dimension legend: B batch, T word-piece tokens, C hidden, K tags (13), W words,
E augmentation vector size.
"""
from __future__ import annotations

from minimner import backend
from minimner.constraints import paper_constraints
from minimner.data.labels import MAIN_TAGS, NUM_TAGS
from minimner.models.bert import BertModel
from minimner.nn.augment import AUG_MODES, make_augment_fusion
from minimner.nn.crf import CRF
from minimner.nn.layers import Dropout, Linear
from minimner.nn.module import Module, no_grad


def piece_word_mask(batch):
    """(B, T) bool: True at the first word piece of every real word of the batch."""
    xp = backend.get_xp(batch.input_ids)
    B, T = batch.input_ids.shape
    out = xp.zeros((B, T + 1), dtype=bool)                         # (B, T+1); column T absorbs the −1 padding
    rows = xp.arange(B)[:, None]                                    # (B, 1)
    cols = xp.where(batch.word_mask, batch.first_piece, T)          # (B, W) piece position or the spare column
    out[rows, cols] = True                                          # scatter (B, W) -> (B, T+1)
    return out[:, :T]                                               # (B, T)


def word_tags(batch, paths) -> list[list[str]]:
    """The tag names at each word's first piece of Viterbi piece paths (one list per sentence)."""
    first = backend.asnumpy(batch.first_piece)                      # (B, W) host: API edge
    words = backend.asnumpy(batch.word_mask)                        # (B, W)
    return [[MAIN_TAGS[path[j]] for j in first[b][words[b]]] for b, path in enumerate(paths)]


class TextCRFTagger(Module):
    """BERT → [augmentation fusion] → dropout → linear → CRF, with a hand-written backward.

    Parameters
    ----------
    bert : BertModel (e.g. ``BertModel.from_pretrained(...)``), without ``aug_linear``
        (mode ``embed`` attaches it)
    num_tags : K (13 for the paper's main tag set)
    dropout : p of the dropout on the (fused) last hidden state (0.1)
    rng : generator shared by the classifier/CRF/fusion init and every dropout mask.
        The fusion is initialised after the CRF, so a seed gives the same classifier
        and CRF in every mode.
    aug_mode : one of :data:`minimner.nn.augment.AUG_MODES`; ``none`` (default) adds nothing
    aug_dim : E, the augmentation vector size; required unless ``aug_mode`` is ``none``

    Raises
    ------
    ValueError
        for an unknown mode or a missing/invalid ``aug_dim``.
    """

    def __init__(self, bert: BertModel, num_tags: int = NUM_TAGS, dropout: float = 0.1, rng=None,
                 aug_mode: str = "none", aug_dim: int | None = None):
        super().__init__()
        if aug_mode not in AUG_MODES:
            raise ValueError(f"unknown augmentation mode {aug_mode!r}; expected one of {', '.join(AUG_MODES)}")
        if aug_mode != "none" and (aug_dim is None or int(aug_dim) < 1):
            raise ValueError(f"augmentation mode {aug_mode!r} needs aug_dim (the table's vector size E), "
                             f"got {aug_dim!r}")
        rng = backend.rng() if rng is None else rng
        self.bert = bert
        self.dropout = Dropout(dropout, rng=rng)
        self.classifier = Linear(bert.config.hidden_size, num_tags, rng=rng)
        self.crf = CRF(num_tags, rng=rng)
        self.aug_mode = aug_mode
        self.aug_dim = None if aug_mode == "none" else int(aug_dim)
        self.augment = None                                              # post-BERT fusion (add/gate only)
        if aug_mode in ("add", "gate"):
            self.augment = make_augment_fusion(aug_mode, self.aug_dim, bert.config.hidden_size, rng)
        elif aug_mode == "embed":
            bert.embeddings.attach_augment(self.aug_dim, rng)

    def _aug(self, batch):
        """``batch.aug`` (B, T, E) in the parameters' dtype, checked (None in mode ``none``).

        Raises
        ------
        ValueError
            when the model uses augmentation but the batch has none, or its E differs.
        """
        if self.aug_mode == "none":
            return None
        a = batch.aug
        if a is None:
            raise ValueError(f"this tagger fuses augmentation vectors (mode {self.aug_mode!r}) but its batch has no "
                             "aug (the Collator has no aug_table)")
        if a.shape[-1] != self.aug_dim:
            raise ValueError(f"the batch's augmentation vectors have size {a.shape[-1]}, the model expects "
                             f"{self.aug_dim}")
        dtype = self.classifier.weight.data.dtype
        return a if a.dtype == dtype else a.astype(dtype)               # (B, T, E)

    def batch_emissions(self, batch):
        """Emission scores (B, T, K) of a batch (with ``batch.aug`` unless the mode is ``none``)."""
        a = self._aug(batch)                                                # (B, T, E) or None
        embed_aug = a if self.aug_mode == "embed" else None
        h = self.bert.forward(batch.input_ids, batch.attention_mask, aug=embed_aug)  # (B, T, C)
        if self.augment is not None:
            h = self.augment.forward(h, a)                                  # (B, T, C) + (B, T, E) -> (B, T, C)
        h = self.dropout.forward(h)                                         # (B, T, C)
        return self.classifier.forward(h)                                   # (B, T, C) @ (C, K) -> (B, T, K)

    def batch_loss(self, batch):
        """Mean negative log-likelihood of the gold piece labels (a 0-d array in the parameters' dtype)."""
        if batch.labels is None:
            raise ValueError("TextCRFTagger.batch_loss needs a labelled batch (use predict_words for unlabelled "
                             "text)")
        em = self.batch_emissions(batch)                                    # (B, T, K)
        return self.crf.forward(em, batch.labels, batch.attention_mask)

    def backward(self):
        """Back-propagate the loss of the last :meth:`batch_loss` into every parameter's ``.grad``.

        Returns
        -------
        daug : (B, T, E) gradient of the augmentation input, or None in mode ``none``
            (the table is not trained; the value serves gradient checks).
        """
        dem = self.crf.backward()                                           # (B, T, K)
        dh = self.classifier.backward(dem)                                  # (B, T, C)
        dh = self.dropout.backward(dh)                                      # (B, T, C)
        daug = None
        if self.augment is not None:
            dh, daug = self.augment.backward(dh)                            # (B, T, C), (B, T, E)
        daug_embed = self.bert.backward(dh)                                 # (B, T, E) in mode embed, else None
        return daug_embed if self.aug_mode == "embed" else daug

    def predict_words(self, batch, constrained: bool = True) -> list[list[str]]:
        """Predicted word-level tags (one list per sentence, one tag per word).

        With ``constrained`` (default) the Viterbi search is restricted by
        :func:`minimner.constraints.paper_constraints`, so word positions only take
        O/B-*/I-*. Without it, an ``X``/``[CLS]``/``[SEP]``/pad predicted on a word
        is returned as is (the scorer counts and reports those).
        """
        return self.explain(batch, constrained)["tags"]

    def explain(self, batch, constrained: bool = True) -> dict:
        """``{"tags", "emissions" (B, T, K), "attention": {}, "gates": {}}`` of one cache-free forward.

        The text-only tagger has no cross-modal attention or gates; the keys are there so that
        both taggers answer alike.
        """
        with no_grad():                                                 # no backward after decoding: no caches
            em = self.batch_emissions(batch)                            # (B, T, K)
        allowed = paper_constraints(piece_word_mask(batch)) if constrained else None
        paths = self.crf.decode(em, batch.attention_mask, allowed=allowed)
        return {"tags": word_tags(batch, paths), "emissions": em, "attention": {}, "gates": {}}
