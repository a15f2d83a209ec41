"""The text-only BERT-CRF tagger: the paper's main baseline and the yardstick for
every multimodal gain.

    H = BERT(input_ids, mask)                (B, T, C)
    E = drop_0.1(H) W_clsᵀ + b_cls           (B, T, K)   emissions
    loss = mean_b −log p_CRF(y_b | E_b)      (SPEC §6.4)

Labels follow the paper's convention (SPEC §1.2–1.3): the first word piece of a
word carries its tag, later pieces ``X``, plus ``[CLS]``/``[SEP]``. Decoding is a
constrained Viterbi by default (SPEC §8.3): word positions may only take O/B-*/I-*,
so no word is ever predicted as ``X``/``[CLS]``/``[SEP]``/pad.

Dimension legend: B batch, T word-piece tokens, C hidden, K tags (13), W words.
"""
from __future__ import annotations

from minimner import backend
from minimner.crf import paper_constraints
from minimner.data.labels import MAIN_TAGS, NUM_TAGS
from minimner.models.bert import BertModel
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
    """BERT → dropout → linear → CRF, with a hand-written backward.

    Parameters
    ----------
    bert : BertModel (e.g. ``BertModel.from_pretrained(...)``)
    num_tags : K (13 for the paper's main tag set)
    dropout : p of the dropout on BERT's last hidden state (0.1)
    rng : generator shared by the classifier/CRF init and every dropout mask
    """

    def __init__(self, bert: BertModel, num_tags: int = NUM_TAGS, dropout: float = 0.1, rng=None):
        super().__init__()
        rng = backend.rng() if rng is None else rng
        self.bert = bert
        self.dropout = Dropout(dropout, rng=rng)
        self.classifier = Linear(bert.config.hidden_size, num_tags, rng=rng)
        self.crf = CRF(num_tags, rng=rng)

    def emissions(self, batch):
        """Emission scores (B, T, K) float32 for a :class:`~minimner.data.batching.Batch`."""
        h = self.bert.forward(batch.input_ids, batch.attention_mask)   # (B, T, C)
        h = self.dropout.forward(h)                                     # (B, T, C)
        return self.classifier.forward(h)                               # (B, T, C) @ (C, K) -> (B, T, K)

    def forward(self, batch):
        """Mean negative log-likelihood of the gold piece labels (a 0-d float32 array)."""
        if batch.labels is None:
            raise ValueError("TextCRFTagger.forward needs a labelled batch (use decode for unlabelled text)")
        em = self.emissions(batch)                                      # (B, T, K)
        return self.crf.forward(em, batch.labels, batch.attention_mask)

    def backward(self):
        """Back-propagate the loss of the last forward into every parameter's ``.grad``."""
        dem = self.crf.backward()                                       # (B, T, K)
        dh = self.classifier.backward(dem)                              # (B, T, C)
        dh = self.dropout.backward(dh)                                  # (B, T, C)
        self.bert.backward(dh)

    def decode(self, batch, constrained: bool = True) -> list[list[str]]:
        """Predicted word-level tags (one list per sentence, one tag per word).

        With ``constrained`` (default) the Viterbi search is restricted by
        :func:`minimner.crf.paper_constraints`, so word positions only take
        O/B-*/I-*. Without it, an ``X``/``[CLS]``/``[SEP]``/pad predicted on a word
        is returned as is (the scorer counts and reports those).
        """
        em = self.emissions(batch)                                      # (B, T, K)
        allowed = paper_constraints(piece_word_mask(batch)) if constrained else None
        paths = self.crf.decode(em, batch.attention_mask, allowed=allowed)
        first = backend.asnumpy(batch.first_piece)                      # (B, W) host: API edge
        words = backend.asnumpy(batch.word_mask)                        # (B, W)
        return [[MAIN_TAGS[path[j]] for j in first[b][words[b]]] for b, path in enumerate(paths)]
