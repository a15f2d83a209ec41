"""MGCMT (the paper's MSCMT): multi-granularity cross-modal NER, forward and hand-written backward.

Liu et al., "Multi-Granularity Cross-Modality Representation Learning for Named
Entity Recognition on Social Media" (arXiv 2210.14163). The forward pass is docs/model.md
§2 step by step, equal to the authors' ``MSCMT`` module::

     1  S⁰ = BERT(ids, mask [, a in the embeddings] [, char-CNN])            (B, T, C)
     2  S  = drop_0.1(augment(S⁰, a))                    add: S⁰ + a W_maᵀ + b_ma (default)
     3  A  = SelfL_aux(S; m_txt);   e_aux = A W_auxᵀ + b_aux                  (B, T, Ka)
     4  M  = SelfL_main(S; m_txt)                                             (B, T, C)
     5  G  = image as (B, R, C_img) regions;  G1 = SelfL(G W_v1ᵀ + b; m_img)
        U_img    = CrossL(M ← G1; m_img)                text attends to the grid
     6  G2 = SelfL(G W_v2ᵀ + b; m_img);  P = CrossL(G2 ← M; m_txt)
        U_imgtxt = CrossL(M ← P; m_img)                 text attends to text-aware regions
     7  Eo = object_embeddings[obj];  E1 = SelfL(Eo; m_obj)
        U_obj    = CrossL(M ← E1; m_obj)                text attends to the objects
     8  E2 = SelfL(Eo; m_obj);  Q = CrossL(E2 ← M; m_txt)
        U_objtxt = CrossL(M ← Q; m_obj)                 text attends to text-aware objects
    10  Fv = fusion(U_img, U_imgtxt, U_obj, U_objtxt)   gate + concat by default (models/fusion.py)
    11  Z  = [M; Fv] fusion_w + fusion_bias             (``merge='bert'``: [S; Fv]); fusion_w used as x W
    12  e  = Z W_clsᵀ + b_cls                           (B, T, K); aux_mix: e ← ½ e + ½ e_aux trans
    13  loss = −mean_b log p_crf(y | e) − ½ mean_b log p_aux_crf(y_aux | e_aux)
    14  decode: Viterbi of the main CRF (constrained by default, docs/differences.md §3)

Masks are the finite additive ``(1 − mask)·(−10000)`` of docs/modules.md §5 on the key
side only. ``m_obj`` is ``objects != 0``; an image without objects attends over
copies of the learned row-0 "no object" vector (docs/model.md §2 step 9).

**Missing images** (docs/differences.md §4; the original substituted another tweet's
picture): a tweet without an image, or with an unreadable one, has every
region masked (``region_mask`` 0) *and* its region features zeroed, so it sees
a learned "no image" vector (``vismap2text``'s bias through the encoders), the
image analogue of the null object. ``image=None`` is exactly an image whose
every region is masked, whatever its pixels. The original's image mask is
always all ones (docs/original-quirks.md §5), so with images present the two agree.

**Flags.** minimner's plain names (:class:`MGCMTConfig`) and the original's
``config.py`` globals, whose meanings are often inverted (docs/original-quirks.md §1):

================  ==============================  ====================  ==================
minimner field    values (default first)          original flag         original value
================  ==============================  ====================  ==================
``aug``           ``add`` / ``gate`` /            aug_before, aug_gate  (1, 1) / (1, 0) /
                  ``embed`` / ``none``                                  (0, ·) / (2, ·)
``fusion``        ``gate_concat`` / ``concat`` /  ffusion_method        2 / 0 / 1 / 3 /
                  ``gate_of_gates`` /                                   4 / 5 / 6 / 7 / 8
                  ``path_attention`` /
                  ``linear_sum`` /
                  ``gmf_filtration`` /
                  ``grid_vs_objects`` /
                  ``objects_only`` / ``grid_only``
``merge``         ``main`` / ``bert``             main_cat              0 / 1
``aux_mix``       False / True                    alpha_seg             1 / 0
``aux_loss``      True / False                    seg_task              0 / 1
``char_cnn``      False / True                    use_char_cnn          1 / 0
================  ==============================  ====================  ==================

**Names.** The state-dict keys are the original's (docs/parameters.md §1) except the post-BERT
augmentation under ``augment.`` and the fusion variant under ``fusion.``; see
:mod:`minimner.models.mgcmt_state`. :meth:`MGCMT.from_original` /
:meth:`MGCMT.to_original` convert, keeping the tensors no configuration uses
aside (``original_unused``) so the round trip writes them back unchanged.

**Two doors, one pass.** The model has a *batch level*, the tagger interface it shares with
:class:`minimner.models.text_crf.TextCRFTagger` (``batch_emissions(batch)``,
``batch_loss(batch)``, ``backward()``, ``predict_words(batch)``, ``explain(batch)``), which
reads a batch collated by :class:`minimner.data.inputs.Collator`, and an *array level*, the
authors' module's calls (``emissions``, ``loss``, ``decode`` on arrays, ``image`` in their
(B, C_img, h, w) layout), used by the parity checks and by users of the authors' checkpoint.
Both only turn their inputs into one :class:`~minimner.models.mgcmt_inputs.MGCMTInputs`
(:mod:`minimner.models.mgcmt_inputs`: checks, the image as regions) and run the same forward,
backward and CRFs. The batch-level names carry the ``batch_`` prefix (or say what they return,
``predict_words``) because the array-level ``loss`` / ``decode`` / ``emissions`` keep the
authors' meaning.

**Attention and gates** of the last forward are kept for plotting (docs/differences.md §5):
``model.attention[name]`` is the last layer's (B, H, Lq, Lk) probabilities of
``self_aux``, ``self_main``, ``img2img``, ``txt2img``, ``img2img_v2``, ``img2txt``,
``txt2txt``, ``obj2obj``, ``txt2obj``, ``obj2obj_v2``, ``obj2txt``, ``txt2obj_v2``
(every layer in ``model.attention_layers``; ``self_aux`` is absent after decoding,
which skips the unread auxiliary branch), and ``model.gates`` the fusion's gate values.

Dimension legend: B batch, T word-piece tokens, C hidden, H heads, R image regions
(49 = 7×7), C_img image feature size (2048 for ResNet-50/101/152, 512 for
ResNet-18/34), O object slots (5), Vo object vocabulary (85), E augmentation size,
K main tags (13), Ka auxiliary tags (7), Lw characters per word (12), Vc char vocabulary.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import numpy as np

from minimner import backend
from minimner.constraints import paper_constraints
from minimner.data.labels import MAIN_TAGS  # noqa: F401  (read here by tests and tutorials)
from minimner.models import mgcmt_inputs, mgcmt_state
from minimner.models.bert import BertModel, bert_init_
from minimner.models.mgcmt_config import MERGE_MODES, MGCMTConfig, trans_matrix
from minimner.models.fusion import make_fusion
from minimner.models.text_crf import piece_word_mask, word_tags
from minimner.nn.attention import BertCrossEncoder, BertSelfEncoder
from minimner.nn.augment import make_augment_fusion
from minimner.nn import init
from minimner.nn.crf import CRF
from minimner.nn.layers import Dropout, Embedding, Linear
from minimner.nn.module import Module, Parameter, no_grad
from minimner.ops.linear import linear_backward, linear_forward

__all__ = ["MGCMTConfig", "MGCMT", "trans_matrix", "MERGE_MODES"]


# ------------------------------------------------------------------------------ the model
class MGCMT(Module):
    """The multi-granularity cross-modal tagger (see the module docstring for the whole pass).

    Parameters
    ----------
    Both levels (module docstring, *Two doors, one pass*): the batch level ``batch_emissions``,
    ``batch_loss``, ``backward``, ``predict_words``, ``explain`` (identical to
    :class:`~minimner.models.text_crf.TextCRFTagger`'s); the array level ``emissions``, ``loss``,
    ``backward``, ``decode`` (the authors' module's calls). ``backward`` follows either loss.

    bert : BertModel (e.g. ``BertModel.from_pretrained(...)``) without the augmentation or
        char hooks; the model attaches the ones its config needs. Every extra encoder copies
        BERT's heads, feed-forward size, dropouts and LayerNorm eps, as the original does.
    config : MGCMTConfig (default: the paper's flags).
    rng : generator shared by the initialisation and every dropout mask.

    Init follows docs/training.md §1 (only the distributions, not the original's random stream):
    N(0, 0.02) for the modules the original builds before ``apply(init_bert_weights)``
    (object_embeddings, self_attention(_v2), vismap2text(_v2), txt2img / img2txt / txt2txt,
    classifier, aux_classifier), PyTorch defaults for those built after, U(±1/√C) for the
    free-standing matrices, U(±0.1) for the CRFs.
    """

    def __init__(self, bert: BertModel, config: MGCMTConfig | None = None, rng=None):
        super().__init__()
        config = MGCMTConfig() if config is None else config
        rng = backend.rng() if rng is None else rng
        bc = bert.config
        C = bc.hidden_size
        enc = dict(hidden_size=C, num_attention_heads=bc.num_attention_heads, intermediate_size=bc.intermediate_size,
                   hidden_dropout_prob=bc.hidden_dropout_prob,
                   attention_probs_dropout_prob=bc.attention_probs_dropout_prob, layer_norm_eps=bc.layer_norm_eps,
                   rng=rng)
        self.config = config
        if bert.pooler is not None:
            bert.pooler = None       # the original computes BERT's pooled output and discards it; minimner skips it
        # Built in the original's order; the first group gets BERT's N(0, 0.02) init.
        self.object_embeddings = Embedding(config.object_vocab, C, rng=rng)          # (Vo, C), no padding_idx
        self.bert = bert
        self.self_attention = BertSelfEncoder(initializer_range=0.02, **enc)         # auxiliary text branch
        self.self_attention_v2 = BertSelfEncoder(initializer_range=0.02, **enc)      # main text branch
        self.dropout = Dropout(config.dropout, rng=rng)
        self.vismap2text = Linear(config.image_dim, C, rng=rng)                      # (C, C_img)
        self.vismap2text_v2 = Linear(config.image_dim, C, rng=rng)
        n1, n2, n3 = config.layer_nums
        self.txt2img_attention = BertCrossEncoder(num_hidden_layers=n1, initializer_range=0.02, **enc)
        self.img2txt_attention = BertCrossEncoder(num_hidden_layers=n2, initializer_range=0.02, **enc)
        self.txt2txt_attention = BertCrossEncoder(num_hidden_layers=n3, initializer_range=0.02, **enc)
        self.classifier = Linear(C, config.num_tags, rng=rng)
        self.aux_classifier = Linear(C, config.num_aux_tags, rng=rng)
        bert_init_([self.object_embeddings, self.vismap2text, self.vismap2text_v2, self.classifier,
                    self.aux_classifier], rng, 0.02)
        self.crf = CRF(config.num_tags, rng=rng)
        self.aux_crf = CRF(config.num_aux_tags, rng=rng) if config.aux_loss else None  # read by the aux loss only
        # Built after the original's init_bert_weights: PyTorch default init.
        self.augment = (make_augment_fusion(config.aug, config.aug_dim, C, rng)
                        if config.aug in ("add", "gate") else None)
        if config.aug == "embed":
            bert.embeddings.attach_augment(config.aug_dim, rng)
        if config.char_cnn:
            bert.embeddings.attach_char_cnn(config.char_vocab, char_dim=config.char_dim,
                                            max_wordlen=config.max_wordlen, rng=rng)
        self.img2img_attention = BertSelfEncoder(initializer_range=None, **enc)
        self.img2img_attention_v2 = BertSelfEncoder(initializer_range=None, **enc)
        self.obj2obj_attention = BertSelfEncoder(initializer_range=None, **enc)
        self.obj2obj_attention_v2 = BertSelfEncoder(initializer_range=None, **enc)
        self.obj2txt_attention = BertCrossEncoder(num_hidden_layers=1, initializer_range=None, **enc)
        self.txt2obj_attention = BertCrossEncoder(num_hidden_layers=1, initializer_range=None, **enc)
        self.txt2obj_attention_v2 = BertCrossEncoder(num_hidden_layers=1, initializer_range=None, **enc)
        self.fusion = make_fusion(config.fusion, C, rng, hidden_dropout_prob=bc.hidden_dropout_prob)
        bound = init.fan_in_bound(C)                                                 # reset_parameters(1/√C)
        self.fusion_w = Parameter(init.uniform(rng, (2 * C, C), bound))              # (2C, C), used as x W
        self.fusion_bias = Parameter(init.uniform(rng, (C,), bound))                 # (C,)
        self.original_unused = OrderedDict()  # original tensors no configuration reads (from_original)
        self.attention, self.attention_layers, self.gates = {}, {}, {}
        self._default_trans = (None, None)   # ((device, dtype), (Ka, K) trans_matrix there): built on first use

    # ------------------------------------------------------------------ the batch level (tagger interface)
    def batch_emissions(self, batch):
        """Main emissions (B, T, K) of a batch collated by :class:`minimner.data.inputs.Collator`.

        The batch's arrays are used where they are (the collator moved them to the device);
        the attention and gates of this forward are kept (see the module docstring).
        """
        e, _ = self._forward(self._batch_inputs(batch))
        return e

    def batch_loss(self, batch):
        """The training loss of a labelled collated batch (as :meth:`loss`); call :meth:`backward` next."""
        if batch.labels is None:
            raise ValueError("MGCMT.batch_loss needs a labelled batch (use predict_words for unlabelled text)")
        x = self._batch_inputs(batch)
        return self._loss(x, batch.labels, batch.aux_labels)

    def predict_words(self, batch, constrained: bool = True) -> list[list[str]]:
        """Word-level predicted tags of a collated batch (one list per sentence, one tag per word).

        Constrained decoding (default) keeps word positions on O/B-*/I-* (docs/differences.md §3). Runs
        without caches (:func:`minimner.nn.module.no_grad`).
        """
        return self.explain(batch, constrained)["tags"]

    def explain(self, batch, constrained: bool = True) -> dict:
        """One cache-free forward of a collated batch and what it shows.

        Returns
        -------
        ``{"tags": word tags per sentence, "emissions": (B, T, K), "attention": {name: (B, H, Lq, Lk)},
        "gates": {name: gate values}}``: the attention and gates of the whole pass, the
        emissions the tags were decoded from.
        """
        x = self._batch_inputs(batch)
        with no_grad():                                   # no backward after decoding: keep no caches
            e, _ = self._forward(x, need_aux=False)
        wm = piece_word_mask(batch) if constrained else None
        paths = self._viterbi(e, x.mask, constrained, wm)
        return {"tags": word_tags(batch, paths), "emissions": e, "attention": dict(self.attention),
                "gates": dict(self.gates)}

    def _batch_inputs(self, batch) -> mgcmt_inputs.MGCMTInputs:
        return mgcmt_inputs.from_batch(self.config, batch, self.fusion_w.data.dtype)

    # ------------------------------------------------------------------ the array level (the authors' calls)
    def _array_inputs(self, input_ids, input_mask, aug, image, objects, trans, char_ids, region_mask):
        return mgcmt_inputs.from_arrays(self.config, self.fusion_w.data, input_ids, input_mask, aug, image, objects,
                                        trans, char_ids, region_mask)

    def emissions(self, input_ids, input_mask, aug, image, objects, trans_matrix=None, char_ids=None,
                  region_mask=None):
        """Main and auxiliary emission scores.

        Parameters
        ----------
        input_ids : (B, T) int word-piece ids ([CLS] … [SEP], padding).
        input_mask : (B, T) 0/1 or bool prefix mask (1 on [CLS], pieces, [SEP]).
        aug : (B, T, E) float augmentation input (docs/augmentation.md §2), or None with ``aug='none'``.
        image : (B, C_img, h, w) float region features (7×7 at 224), or None when no tweet of
            the batch has an image.
        objects : (B, O) int object ids (0 = empty slot), or None for no objects.
        trans_matrix : (Ka, K) aux → main map for ``aux_mix`` (default :func:`trans_matrix`).
        char_ids : (B, T, Lw) int character ids (char-CNN only).
        region_mask : (B, R) 0/1 or bool, 0 for the regions of a missing image (default: all 1
            when ``image`` is given).

        Returns
        -------
        main : (B, T, K) and aux : (B, T, Ka) arrays in the parameters' dtype.

        Raises
        ------
        ValueError
            naming the input, the expected and the received shape or dtype.
        """
        return self._forward(self._array_inputs(input_ids, input_mask, aug, image, objects, trans_matrix, char_ids,
                                                region_mask))

    def loss(self, input_ids, input_mask, aug, image, objects, trans_matrix=None, char_ids=None, region_mask=None,
             *, labels, aux_labels=None):
        """The original's training loss ``−mean_b log p(y|e) − ½ mean_b log p(y_aux|e_aux)`` (docs/model.md §2 step 13).

        Parameters as :meth:`emissions`, plus ``labels`` (B, T) main-tag ids and ``aux_labels``
        (B, T) span-tag ids (required when ``aux_loss``). Both CRFs use ``input_mask``, so they
        include [CLS], [SEP] and X positions. Call :meth:`backward` next.

        Returns
        -------
        0-d array in the parameters' dtype.
        """
        x = self._array_inputs(input_ids, input_mask, aug, image, objects, trans_matrix, char_ids, region_mask)
        return self._loss(x, labels, aux_labels)

    def decode(self, input_ids, input_mask, aug, image, objects, trans_matrix=None, char_ids=None,
               region_mask=None, *, constrained: bool = True, word_mask=None) -> list[list[int]]:
        """Viterbi decoding of the main CRF: one list of piece tag ids (length Σ mask) per sentence.

        ``constrained=False`` is plain Viterbi, as the original. ``constrained=True`` applies
        :func:`minimner.constraints.paper_constraints`: valid BIO (X transparent), [CLS]
        first and [SEP] last, never PAD, and — with ``word_mask`` (B, T) bool, True at each
        word's first piece — no X/[CLS]/[SEP] on a word position (docs/differences.md §3).
        """
        x = self._array_inputs(input_ids, input_mask, aug, image, objects, trans_matrix, char_ids, region_mask)
        with no_grad():                                   # no backward after decoding: keep no caches
            e, _ = self._forward(x, need_aux=False)
        wm = None if word_mask is None else backend.asarray(word_mask, backend=backend.device_of(e)).astype(bool)
        return self._viterbi(e, x.mask, constrained, wm)

    # ------------------------------------------------------------------ loss, backward, Viterbi (both levels)
    def _loss(self, x, labels, aux_labels):
        """``L_main + β L_aux`` of the inputs ``x``; leaves what :meth:`backward` needs."""
        cfg = self.config
        if cfg.aux_loss and aux_labels is None:
            raise ValueError("this model trains the auxiliary span CRF (aux_loss=True): pass aux_labels")
        e, e_aux = self._forward(x)
        where = backend.device_of(e)
        labels = backend.asarray(labels, backend=where)
        loss = self.crf.forward(e, labels, x.mask)                                     # mean NLL over the batch
        if cfg.aux_loss:
            aux_labels = backend.asarray(aux_labels, backend=where)
            loss = loss + loss.dtype.type(cfg.aux_weight) * self.aux_crf.forward(e_aux, aux_labels, x.mask)
        self._loss_pending = True
        return loss

    def backward(self, input_grads: bool = False):
        """Back-propagate the last loss (:meth:`loss` or :meth:`batch_loss`) into every ``.grad`` (adds).

        Returns
        -------
        dict of input gradients (``aug``, ``image``, ``regions``); None values unless ``input_grads``
        (see :meth:`_backward_emissions`).
        """
        if not getattr(self, "_loss_pending", False):
            raise RuntimeError("MGCMT.backward needs a pending loss (loss or batch_loss first; one backward each)")
        self._loss_pending = False
        de = self.crf.backward()                                                        # (B, T, K)
        de_aux = self.aux_crf.backward(self.config.aux_weight) if self.config.aux_loss else None  # (B, T, Ka)
        return self._backward_emissions(de, de_aux, input_grads)

    def _viterbi(self, e, mask, constrained: bool, word_mask):
        """Main-CRF Viterbi paths of emissions ``e`` (B, T, K), constrained by default (docs/differences.md §3)."""
        allowed = paper_constraints(word_mask, xp=backend.get_xp(e)) if constrained else None
        return self.crf.decode(e, mask, allowed=allowed)

    def _trans(self, x):
        """The (Ka, K) aux → main map: the caller's, else the default built once per (device, dtype)."""
        if x.trans is not None:
            return x.trans
        like = self.fusion_w.data
        key = (backend.device_of(like), np.dtype(like.dtype).str)
        if self._default_trans[0] != key:
            self._default_trans = (key, trans_matrix(like.dtype, backend.get_xp(like)))   # (Ka, K)
        return self._default_trans[1]

    # ------------------------------------------------------------------ forward
    def _forward(self, x, need_aux: bool = True):
        """Main (B, T, K) and auxiliary (B, T, Ka) emissions of the inputs ``x`` (docs/model.md §2 steps 1-12).

        ``need_aux=False`` (decoding) skips the auxiliary text branch when nothing reads it (no
        ``aux_mix``): the original computes it and throws it away at inference (docs/model.md §2 step 14);
        ``e_aux`` is then None.
        """
        cfg = self.config
        ids, mask, aug, grid, rmask, objects = x.input_ids, x.mask, x.aug, x.regions, x.region_mask, x.objects
        obj_mask = objects != 0                                              # (B, O) m_obj
        att = OrderedDict()
        # 1-2: BERT, semantic augmentation, dropout.
        hooks = {"char_ids": x.char_ids} if cfg.char_cnn else {}
        s0 = self.bert.forward(ids, mask, aug=aug if cfg.aug == "embed" else None, **hooks)  # (B, T, C)
        s = self.augment.forward(s0, aug) if self.augment is not None else s0          # (B, T, C)
        s = self.dropout.forward(s)                                                     # (B, T, C) S
        # 3: auxiliary text branch and its span emissions.
        e_aux = None
        if need_aux or cfg.aux_mix:
            a, att["self_aux"] = self.self_attention.forward(s, mask)                   # (B, T, C)
            e_aux = self.aux_classifier.forward(a)                                      # (B, T, C) -> (B, T, Ka)
        # 4: main text branch, the query of every cross-modal path.
        m, att["self_main"] = self.self_attention_v2.forward(s, mask)                   # (B, T, C) M
        # 5: text attends to the image grid, its regions G (B, R, C_img).
        g1 = self.vismap2text.forward(grid)                                             # (B, R, C_img) -> (B, R, C)
        g1, att["img2img"] = self.img2img_attention.forward(g1, rmask)                  # (B, R, C)
        u_img, att["txt2img"] = self.txt2img_attention.forward(m, g1, rmask)            # (B, T, C) U_img
        # 6: regions attend to the text, then the text attends to those text-aware regions.
        g2 = self.vismap2text_v2.forward(grid)                                          # (B, R, C)
        g2, att["img2img_v2"] = self.img2img_attention_v2.forward(g2, rmask)            # (B, R, C)
        p, att["img2txt"] = self.img2txt_attention.forward(g2, m, mask)                 # (B, R, C) P
        u_imgtxt, att["txt2txt"] = self.txt2txt_attention.forward(m, p, rmask)          # (B, T, C) U_imgtxt
        # 7: text attends to the objects.
        eo = self.object_embeddings.forward(objects)                                    # (B, O) -> (B, O, C)
        e1, att["obj2obj"] = self.obj2obj_attention.forward(eo, obj_mask)               # (B, O, C)
        u_obj, att["txt2obj"] = self.txt2obj_attention.forward(m, e1, obj_mask)         # (B, T, C) U_obj
        # 8: objects attend to the text, then the text attends to those text-aware objects.
        e2, att["obj2obj_v2"] = self.obj2obj_attention_v2.forward(eo, obj_mask)         # (B, O, C)
        q, att["obj2txt"] = self.obj2txt_attention.forward(e2, m, mask)                 # (B, O, C) Q
        u_objtxt, att["txt2obj_v2"] = self.txt2obj_attention_v2.forward(m, q, obj_mask)  # (B, T, C) U_objtxt
        # 10: fusion of the four paths.
        fv = self.fusion.forward(u_img, u_imgtxt, u_obj, u_objtxt)                      # (B, T, C) Fv
        # 11: Z = [X; Fv] fusion_w + fusion_bias with X = M (merge 'main') or S ('bert'); fusion_w is
        # (2C, C) used untransposed, i.e. the Linear of the transposed view.
        merged = m if cfg.merge == "main" else s
        C = merged.shape[-1]
        w = self.fusion_w.data
        z, lin_x = linear_forward(merged, w[:C].T)                                     # (B,T,C) @ (C,C) -> (B,T,C)
        zf, lin_f = linear_forward(fv, w[C:].T, self.fusion_bias.data)                 # (B,T,C) @ (C,C) + (C,)
        z += zf                                                                         # (B, T, C) Z
        # 12: emissions (and the optional aux → main mixing).
        e = self.classifier.forward(z)                                                  # (B, T, C) -> (B, T, K)
        mix = None
        if cfg.aux_mix:
            alpha = e.dtype.type(cfg.mix_alpha)
            e_trans, mix = linear_forward(e_aux, self._trans(x).T)                        # (B,T,Ka) @ (Ka,K) -> (B,T,K)
            e = alpha * e + (e.dtype.type(1) - alpha) * e_trans                         # (B, T, K)
        self.attention = OrderedDict((k, v[-1]) for k, v in att.items())
        self.attention_layers = att
        self.gates = dict(self.fusion.gates)
        self._save_cache(dict(lin_x=lin_x, lin_f=lin_f, mix=mix, rmask=rmask, grid_hw=x.grid_hw,
                              image_given=x.image_given))
        return e, e_aux

    # ------------------------------------------------------------------ backward
    def _backward_emissions(self, de, de_aux, input_grads: bool = False):
        """Back-propagate d main (B, T, K) and d aux (B, T, Ka) (either may be None) into every ``.grad``.

        With ``input_grads`` the gradients of the float inputs are returned too: ``aug``
        (B, T, E) (None without augmentation), ``regions`` (B, R, C_img) and ``image`` — the same
        in the authors' (B, C_img, h, w) layout when the image came through the array level —
        (None when no image was given or no path reads it), for gradient checks and saliency.
        Training does not need them: the image features are constants, so the two (N, C) @ (C, C_img)
        products of ``vismap2text(_v2)`` are skipped by default (about 3.7 GFLOP of a
        MiniLM-size step), and the dict holds None.
        """
        cache = self._pop_cache()
        cfg = self.config
        mix = cache["mix"]
        # 12: e = α e_cls + (1 − α) e_aux trans.
        if mix is not None:
            alpha = de.dtype.type(cfg.mix_alpha)
            de_trans = (de.dtype.type(1) - alpha) * de                                  # (B, T, K)
            de_aux_mix, _, _ = linear_backward(de_trans, mix)                           # (B, T, Ka): trans is constant
            de_aux = de_aux_mix if de_aux is None else de_aux + de_aux_mix
            de = alpha * de                                                             # (B, T, K)
        dz = self.classifier.backward(de)                                               # (B, T, C)
        # 11: Z = X W[:C] + Fv W[C:] + b.
        dx, dw_x, _ = linear_backward(dz, cache["lin_x"])                               # (B, T, C), (C, C) of W[:C]ᵀ
        dfv, dw_f, db = linear_backward(dz, cache["lin_f"])                             # (B, T, C), (C, C), (C,)
        C = dz.shape[-1]
        self.fusion_w.grad[:C] += dw_x.T                                                # back to the (2C, C) layout
        self.fusion_w.grad[C:] += dw_f.T
        self.fusion_bias.grad += db
        dm = dx if cfg.merge == "main" else None                                        # gradient into M
        ds_merge = dx if cfg.merge == "bert" else None                                  # … or into S
        # 10: fusion; a path the variant does not read comes back as None and its branch is skipped.
        du_img, du_imgtxt, du_obj, du_objtxt = self.fusion.backward(dfv)
        dm = _add(dm, self._backward_objects(du_obj, du_objtxt))                        # steps 8, 7
        dm_grid, dgrid = self._backward_grid(du_img, du_imgtxt, input_grads)            # steps 6, 5
        dm = _add(dm, dm_grid)
        # 4: M = SelfL_main(S).
        ds = self.self_attention_v2.backward(dm) if dm is not None else None            # (B, T, C)
        # 3: e_aux = SelfL_aux(S) W_auxᵀ + b (no gradient when neither the aux loss nor the mix reads it).
        if de_aux is not None:
            da = self.aux_classifier.backward(de_aux)                                   # (B, T, C)
            ds = _add(ds, self.self_attention.backward(da))
        ds = _add(ds, ds_merge)
        # 1-2: dropout, augmentation, BERT.
        ds = self.dropout.backward(ds)                                                  # (B, T, C)
        daug = None
        if self.augment is not None:
            ds, daug = self.augment.backward(ds)                                        # (B, T, C), (B, T, E)
        daug_embed = self.bert.backward(ds)                                             # (B, T, E) in mode embed
        daug = daug_embed if cfg.aug == "embed" else daug
        dregions = dimage = None
        if cache["image_given"] and dgrid is not None:
            dregions = dgrid * cache["rmask"][:, :, None].astype(dgrid.dtype)          # masked regions: zeroed input
            if cache["grid_hw"] is not None:
                B, R, Ci = dregions.shape
                dimage = dregions.transpose(0, 2, 1).reshape(B, Ci, *cache["grid_hw"])  # (B,R,C_img) -> (B,C_img,h,w)
        return {"aug": daug if input_grads else None, "image": dimage, "regions": dregions}

    def _backward_objects(self, du_obj, du_objtxt):
        """Steps 8 and 7 backwards (the object paths): their gradient into M (or None)."""
        dm = deo = None
        # 8: U_objtxt = CrossL(M ← Q), Q = CrossL(E2 ← M), E2 = SelfL(Eo).
        if du_objtxt is not None:
            dm_a, dq = self.txt2obj_attention_v2.backward(du_objtxt)                    # (B, T, C), (B, O, C)
            de2, dm_b = self.obj2txt_attention.backward(dq)                             # (B, O, C), (B, T, C)
            deo = _add(deo, self.obj2obj_attention_v2.backward(de2))                    # (B, O, C)
            dm = _add(_add(dm, dm_a), dm_b)
        # 7: U_obj = CrossL(M ← E1), E1 = SelfL(Eo).
        if du_obj is not None:
            dm_c, de1 = self.txt2obj_attention.backward(du_obj)                         # (B, T, C), (B, O, C)
            deo = _add(deo, self.obj2obj_attention.backward(de1))                       # (B, O, C)
            dm = _add(dm, dm_c)
        if deo is not None:
            self.object_embeddings.backward(deo)                                        # scatter into Vo rows
        return dm

    def _backward_grid(self, du_img, du_imgtxt, input_grads: bool):
        """Steps 6 and 5 backwards (the grid paths): ``(gradient into M, gradient of the regions)``, either None."""
        dm = dgrid = None
        # 6: U_imgtxt = CrossL(M ← P), P = CrossL(G2 ← M), G2 = SelfL(G W_v2ᵀ + b).
        if du_imgtxt is not None:
            dm_d, dp = self.txt2txt_attention.backward(du_imgtxt)                       # (B, T, C), (B, R, C)
            dg2, dm_e = self.img2txt_attention.backward(dp)                             # (B, R, C), (B, T, C)
            dg2 = self.img2img_attention_v2.backward(dg2)                               # (B, R, C)
            dgrid = _add(dgrid, self.vismap2text_v2.backward(dg2, need_dx=input_grads))  # (B, R, C_img)
            dm = _add(_add(dm, dm_d), dm_e)
        # 5: U_img = CrossL(M ← G1), G1 = SelfL(G W_v1ᵀ + b).
        if du_img is not None:
            dm_f, dg1 = self.txt2img_attention.backward(du_img)                         # (B, T, C), (B, R, C)
            dg1 = self.img2img_attention.backward(dg1)                                  # (B, R, C)
            dgrid = _add(dgrid, self.vismap2text.backward(dg1, need_dx=input_grads))    # (B, R, C_img)
            dm = _add(dm, dm_f)
        return dm, dgrid

    # ------------------------------------------------------------------ the original's layout
    def original_layout(self) -> "OrderedDict[str, tuple]":
        """Every key of the authors' state dict for this model's sizes, with its shape (file order)."""
        return mgcmt_state.model_layout(self)

    def used_original_keys(self) -> list[str]:
        """The original keys this configuration reads (docs/parameters.md §4), in file order."""
        return mgcmt_state.model_used_keys(self)

    @classmethod
    def from_original(cls, state_dict: Mapping, bert_config=None, rng=None, **original_flags) -> "MGCMT":
        """Build an MGCMT from the authors' state dict (names → NumPy arrays) and their ``config.py`` flags.

        Parameters
        ----------
        state_dict : mapping original key → array (float; docs/parameters.md §1), e.g. ``torch.load(...,
            weights_only=True)`` converted to NumPy. Every key must belong to the original
            layout; every key the flags use must be present with the right shape and finite
            values. Keys the flags do not use are kept aside (``original_unused``), even
            when they hold NaN/inf (the never-initialised ``*_aux_w``), and reported.
        bert_config : BertConfig or dict (a ``config.json``); the sizes are read from the
            tensors, so only ``num_attention_heads`` (default C/64, bert-base's 64-wide heads),
            ``layer_norm_eps`` (1e-12) and the dropouts come from it.
        rng : generator for the dropout masks.
        **original_flags : ``use_char_cnn, aug_before, aug_gate, ffusion_method, main_cat,
            alpha_seg, seg_task`` with the original's values; defaults are the original's (docs/model.md §1).

        Returns
        -------
        MGCMT in ``eval()`` mode. ``model.load_report`` has ``used``, ``unused`` (keys),
        ``nonfinite_unused`` (keys) and ``flags``.

        Raises
        ------
        KeyError
            naming a missing used key or a key outside the original layout.
        ValueError
            naming a key whose shape or dtype is wrong or whose used values are not finite,
            or a bad flag.
        """
        return mgcmt_state.from_original(cls, state_dict, bert_config, rng, **original_flags)

    def to_original(self, grads: bool = False) -> "OrderedDict[str, np.ndarray]":
        """The authors' layout as NumPy arrays, in file order.

        ``grads=False``: every key of the layout — this model's weights for the keys its flags
        use, and for the others the tensors kept from :meth:`from_original` (zeros when the
        model was not built from an original state dict). ``grads=True``: the gradients of the
        used keys after :meth:`backward` (the original has no gradient for the others).
        """
        return mgcmt_state.to_original(self, grads)

    def extra_repr(self) -> str:
        c = self.config
        return (f"aug={c.aug}, fusion={c.fusion}, merge={c.merge}, aux_mix={c.aux_mix}, aux_loss={c.aux_loss}, "
                f"char_cnn={c.char_cnn}, image_dim={c.image_dim}")


def _add(acc, d):
    """``acc + d`` where either may be None (a path that does not contribute)."""
    return d if acc is None else (acc if d is None else acc + d)
