"""The inputs of one MGCMT forward: checked, on the model's device, the image grid as regions.

Two doors lead to the same :class:`MGCMTInputs`:

* :func:`from_batch` — the tagger interface. A :class:`~minimner.data.batching.Batch` built by
  :class:`minimner.data.inputs.Collator` already holds every array on the device with the
  grid as regions (B, R, C_img); nothing is moved or transposed, only checked for presence.
* :func:`from_arrays` — the array-level API of the authors' module (``emissions(input_ids,
  input_mask, aug, image, objects, …)``, checks and users of their checkpoint). Each array is
  moved to the model's device and checked for shape and dtype, and ``image`` in the authors'
  (B, C_img, h, w) layout becomes regions: region r = w·row + col, the original's
  ``view(-1, C_img, R).permute(0, 2, 1)``.

Either way a masked region is no region at all: its features are zeroed, so an image whose
every region is masked is exactly the missing-image input (every region masked, zero features).

Dimension legend: B batch, T word pieces, E augmentation size, R regions, C_img image feature
size, O object slots, Lw characters per word, K / Ka main / auxiliary tags.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minimner import backend

__all__ = ["MGCMTInputs", "from_batch", "from_arrays"]


@dataclass
class MGCMTInputs:
    """Everything one MGCMT forward reads, on the model's device."""

    input_ids: object            # (B, T) int word-piece ids
    mask: object                 # (B, T) bool m_txt
    aug: object                  # (B, T, E) float or None (aug = none)
    regions: object              # (B, R, C_img) float, masked regions zeroed
    region_mask: object          # (B, R) bool m_img
    objects: object              # (B, O) int object ids (0 = empty slot)
    char_ids: object             # (B, T, Lw) int or None (no char-CNN)
    trans: object = None         # (Ka, K) aux → main map given by the caller, or None (the default)
    grid_hw: tuple | None = None  # (h, w) of an image given in the authors' layout: the input gradient's shape
    image_given: bool = False    # whether any picture was given (else no input gradient for it)


def _missing_image(xp, B: int, config, dtype):
    """The "no image" input: zero features, every region masked."""
    return (xp.zeros((B, config.regions, config.image_dim), dtype=dtype),   # (B, R, C_img)
            xp.zeros((B, config.regions), dtype=bool))                       # (B, R)


def _masked(regions, region_mask, dtype):
    """Zero the features of the masked regions: (B, R, C_img) ⊙ (B, R, 1)."""
    return regions * region_mask[:, :, None].astype(dtype)


def from_batch(config, batch, dtype) -> MGCMTInputs:
    """The inputs of a collated batch (see the module docstring); nothing moves.

    Raises
    ------
    ValueError
        when the model needs an input the batch does not hold (no augmentation vectors,
        no char ids), or the augmentation vectors have another size than the model's.
    """
    xp = backend.get_xp(batch.input_ids)
    B, T = batch.input_ids.shape
    aug = None
    if config.aug != "none":
        if batch.aug is None:
            raise ValueError(f"this MGCMT fuses augmentation vectors (aug={config.aug!r}) but its batch has no aug "
                             "(the Collator has no aug_table)")
        if batch.aug.shape[-1] != config.aug_dim:
            raise ValueError(f"the batch's augmentation vectors have size {batch.aug.shape[-1]}, the model expects "
                             f"{config.aug_dim}")
        aug = batch.aug if batch.aug.dtype == dtype else batch.aug.astype(dtype)      # (B, T, E)
    if config.char_cnn and batch.char_ids is None:
        raise ValueError("this MGCMT uses the char-CNN but its batch has no char_ids (the Collator has no char_vocab)")
    if batch.regions is None:
        regions, rmask = _missing_image(xp, B, config, dtype)
    else:
        regions = batch.regions if batch.regions.dtype == dtype else batch.regions.astype(dtype)
        rmask = (xp.ones(regions.shape[:2], dtype=bool) if batch.region_mask is None
                 else batch.region_mask.astype(bool, copy=False))
        regions = _masked(regions, rmask, dtype)                                          # (B, R, C_img)
    objects = (xp.zeros((B, config.object_slots), dtype=np.int64) if batch.objects is None
               else batch.objects)                                                        # (B, O)
    return MGCMTInputs(batch.input_ids, batch.attention_mask.astype(bool, copy=False), aug, regions, rmask, objects,
                       batch.char_ids if config.char_cnn else None, image_given=batch.regions is not None)


def _text_arrays(config, put, dtype, input_ids, input_mask, aug):
    """``(ids (B, T), mask (B, T) bool, aug (B, T, E) or None)``, checked."""
    input_ids = put(input_ids)
    if input_ids.ndim != 2 or input_ids.dtype.kind not in "iu":
        raise ValueError(f"input_ids must be a (B, T) integer array, got {input_ids.dtype} "
                         f"shape {tuple(input_ids.shape)}")
    B, T = input_ids.shape
    mask = put(input_mask)
    if tuple(mask.shape) != (B, T) or mask.dtype.kind not in "biu":
        raise ValueError(f"input_mask must be a (B, T) = {(B, T)} 0/1 integer or bool array, got {mask.dtype} "
                         f"shape {tuple(mask.shape)}")
    if config.aug == "none":
        return input_ids, mask.astype(bool), None                         # no augmentation: the input is unused
    if aug is None:
        raise ValueError(f"this model fuses augmentation vectors (aug={config.aug!r}): pass aug of shape "
                         f"(B, T, E) = {(B, T, config.aug_dim)}")
    aug = put(aug)
    if tuple(aug.shape) != (B, T, config.aug_dim) or aug.dtype != dtype:
        raise ValueError(f"aug must be a (B, T, E) = {(B, T, config.aug_dim)} {dtype} array, got "
                         f"{aug.dtype} shape {tuple(aug.shape)}")
    return input_ids, mask.astype(bool), aug


def _image_arrays(config, put, xp, dtype, B: int, image, region_mask):
    """``(regions (B, R, C_img), region_mask (B, R) bool, (h, w) or None)`` from the authors' image layout."""
    if image is None:
        return (*_missing_image(xp, B, config, dtype), None)
    image = put(image)
    if image.ndim != 4 or image.shape[0] != B or image.shape[1] != config.image_dim or image.dtype != dtype:
        raise ValueError(f"image must be a (B, C_img, h, w) = ({B}, {config.image_dim}, h, w) {dtype} array "
                         f"or None, got {image.dtype} shape {tuple(image.shape)}")
    grid_hw = tuple(image.shape[2:])
    R = grid_hw[0] * grid_hw[1]
    regions = image.reshape(B, config.image_dim, R).transpose(0, 2, 1)  # (B, C_img, h, w) -> (B, R, C_img)
    if region_mask is None:
        rmask = xp.ones((B, R), dtype=bool)                                # (B, R): every region real
    else:
        rmask = put(region_mask)
        if tuple(rmask.shape) != (B, R) or rmask.dtype.kind not in "biu":
            raise ValueError(f"region_mask must be a (B, R) = {(B, R)} 0/1 array, got {rmask.dtype} "
                             f"shape {tuple(rmask.shape)}")
        rmask = rmask.astype(bool)
    return _masked(regions, rmask, dtype), rmask, grid_hw


def from_arrays(config, like, input_ids, input_mask, aug, image, objects, trans, char_ids,
                region_mask) -> MGCMTInputs:
    """Check the array-level inputs and move them to the device of ``like`` (a parameter array).

    Raises
    ------
    ValueError
        naming the input, the expected and the received shape or dtype.
    """
    where, xp, dtype = backend.device_of(like), backend.get_xp(like), like.dtype

    def put(a):
        return backend.asarray(a, backend=where)

    ids, mask, aug = _text_arrays(config, put, dtype, input_ids, input_mask, aug)
    B, T = ids.shape
    regions, rmask, grid_hw = _image_arrays(config, put, xp, dtype, B, image, region_mask)
    if objects is None:
        objects = xp.zeros((B, config.object_slots), dtype=np.int64)      # (B, O): no objects
    else:
        objects = put(objects)
        if objects.ndim != 2 or objects.shape[0] != B or objects.dtype.kind not in "iu":
            raise ValueError(f"objects must be a (B, O) integer array of object ids or None, got "
                             f"{objects.dtype} shape {tuple(objects.shape)}")
    if config.char_cnn:
        if char_ids is None:
            raise ValueError(f"this model uses the char-CNN: pass char_ids of shape (B, T, Lw) = "
                             f"{(B, T, config.max_wordlen)}")
        char_ids = put(char_ids)
    else:
        char_ids = None
    if trans is not None:                                                  # checked even when aux_mix is off
        trans = put(trans)
        if tuple(trans.shape) != (config.num_aux_tags, config.num_tags):
            raise ValueError(f"trans_matrix must have shape (Ka, K) = {(config.num_aux_tags, config.num_tags)}, "
                             f"got {tuple(trans.shape)}")
        trans = trans.astype(dtype)
    return MGCMTInputs(ids, mask, aug, regions, rmask, objects, char_ids, trans, grid_hw,
                       image_given=image is not None)
