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
of each word at its first piece, zeros elsewhere. The tagger builds it from its
``aug_table`` (:func:`minimner.data.batching.augment_input`) unless the caller
passes it explicitly (gradient checks do). The table is a constant: the model
computes ``dL/da`` (backward returns it) but nothing updates it.

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
from minimner.data.batching import augment_input
from minimner.models.bert import BertModel
from minimner.nn.augment import AUG_MODES, make_augment_fusion
from minimner.nn.crf import CRF
from minimner.nn.layers import Dropout, Linear
from minimner.nn.module import Module


def piece_word_mask(batch):
    """(B, T) bool: True at the first word piece of every real word of the batch."""
    xp = backend.get_xp(batch.input_ids)
    B, T = batch.input_ids.shape
    out = xp.zeros((B, T + 1), dtype=bool)                         # (B, T+1); column T absorbs the −1 padding
    rows = xp.arange(B)[:, None]                                    # (B, 1)
    cols = xp.where(batch.word_mask, batch.first_piece, T)          # (B, W) piece position or the spare column
    out[rows, cols] = True                                          # scatter (B, W) -> (B, T+1)
    return out[:, :T]                                               # (B, T)


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
    aug_table : AugmentationTable or None, where :meth:`emissions` gets ``a`` when it is
        not passed (may be set later through the attribute of the same name)

    Raises
    ------
    ValueError
        for an unknown mode or a missing/invalid ``aug_dim``.
    """

    def __init__(self, bert: BertModel, num_tags: int = NUM_TAGS, dropout: float = 0.1, rng=None,
                 aug_mode: str = "none", aug_dim: int | None = None, aug_table=None):
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
        self.aug_table = aug_table                                       # host table, not a parameter

    def augment_input(self, batch):
        """``a`` (B, T, E) float32 for a batch from ``aug_table`` (None in mode ``none``).

        Raises
        ------
        ValueError
            when the model uses augmentation but has no table, or the table's E differs.
        """
        if self.aug_mode == "none":
            return None
        if self.aug_table is None:
            raise ValueError(f"this tagger fuses augmentation vectors (mode {self.aug_mode!r}) but has no aug_table; "
                             "set model.aug_table or pass aug= explicitly")
        if self.aug_table.dim != self.aug_dim:
            raise ValueError(f"the augmentation table has vectors of size {self.aug_table.dim}, the model expects "
                             f"{self.aug_dim}")
        return augment_input(batch, self.aug_table)                     # (B, T, E)

    def emissions(self, batch, aug=None):
        """Emission scores (B, T, K) for a :class:`~minimner.data.batching.Batch`.

        ``aug`` (B, T, E), in the parameters' dtype, overrides the table lookup
        (ignored in mode ``none``).
        """
        if self.aug_mode == "none":
            h = self.bert.forward(batch.input_ids, batch.attention_mask)   # (B, T, C)
        else:
            a = self.augment_input(batch) if aug is None else aug          # (B, T, E)
            embed_aug = a if self.aug_mode == "embed" else None
            h = self.bert.forward(batch.input_ids, batch.attention_mask, aug=embed_aug)  # (B, T, C)
            if self.augment is not None:
                h = self.augment.forward(h, a)                              # (B, T, C) + (B, T, E) -> (B, T, C)
        h = self.dropout.forward(h)                                         # (B, T, C)
        return self.classifier.forward(h)                                   # (B, T, C) @ (C, K) -> (B, T, K)

    def forward(self, batch, aug=None, source=None):
        """Mean negative log-likelihood of the gold piece labels (a 0-d array in the parameters' dtype).

        ``source`` (image/object inputs) is accepted so training code treats every tagger alike;
        the text-only tagger reads no image, so it must be None.
        """
        if source is not None:
            raise ValueError("the text-only tagger takes no image/object source (train --model mgcmt for that)")
        if batch.labels is None:
            raise ValueError("TextCRFTagger.forward needs a labelled batch (use decode for unlabelled text)")
        em = self.emissions(batch, aug)                                     # (B, T, K)
        return self.crf.forward(em, batch.labels, batch.attention_mask)

    def backward(self):
        """Back-propagate the loss of the last forward into every parameter's ``.grad``.

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

    def predict_words(self, batch, constrained: bool = True, source=None) -> list[list[str]]:
        """:meth:`decode` under the interface shared with :class:`minimner.models.mgcmt.MGCMT`."""
        if source is not None:
            raise ValueError("the text-only tagger takes no image/object source (train --model mgcmt for that)")
        return self.decode(batch, constrained=constrained)

    def decode(self, batch, constrained: bool = True, aug=None) -> list[list[str]]:
        """Predicted word-level tags (one list per sentence, one tag per word).

        With ``constrained`` (default) the Viterbi search is restricted by
        :func:`minimner.constraints.paper_constraints`, so word positions only take
        O/B-*/I-*. Without it, an ``X``/``[CLS]``/``[SEP]``/pad predicted on a word
        is returned as is (the scorer counts and reports those). ``aug`` as in
        :meth:`emissions`.
        """
        from minimner.nn.module import no_grad

        with no_grad():                                                 # no backward after decoding: no caches
            em = self.emissions(batch, aug)                             # (B, T, K)
        allowed = paper_constraints(piece_word_mask(batch)) if constrained else None
        paths = self.crf.decode(em, batch.attention_mask, allowed=allowed)
        first = backend.asnumpy(batch.first_piece)                      # (B, W) host: API edge
        words = backend.asnumpy(batch.word_mask)                        # (B, W)
        return [[MAIN_TAGS[path[j]] for j in first[b][words[b]]] for b, path in enumerate(paths)]
