"""Reference solutions of tutorial 11 (training and evaluating the cross-modal model)."""
import numpy as np


def _entities(tags):
    """{(start, end): type} of one sentence's valid IOB2 tags, end exclusive."""
    out, start = {}, None
    for i, tag in enumerate(list(tags) + ["O"]):              # the sentinel O closes a final entity
        if start is not None and tag != f"I-{tags[start][2:]}":
            out[(start, i)] = tags[start][2:]
            start = None
        if tag.startswith("B-"):
            start = i
    return out


def group_recall(gold_tags, pred_tags, spans):
    if not spans:
        return None
    hit = 0
    for i, a, b in spans:
        gold_type = gold_tags[i][a][2:]                          # the span is a gold entity: B-<type> at a
        hit += _entities(pred_tags[i]).get((a, b)) == gold_type  # exact start, end and type
    return hit / len(spans)


def cyclic_remap(image_ids, rng):
    ids = sorted(set(image_ids))
    if len(ids) < 2:
        raise ValueError(f"a shuffle needs at least two distinct pictures; got {len(ids)}")
    order = [ids[k] for k in rng.permutation(len(ids))]         # a random order of the pictures ...
    return {order[k]: order[(k + 1) % len(order)] for k in range(len(order))}   # ... each gets the next one's


def peak_on_key_object(attention, first_piece, words, cells):
    if not words:
        return None
    b = np.array([b for b, _ in words])                           # (N,)
    w = np.array([w for _, w in words])                           # (N,)
    rows = attention.mean(axis=1)[b, first_piece[b, w]]          # (B, h, T, R) -> (B, T, R) -> (N, R)
    peaks = rows.argmax(axis=-1)                                  # (N,)
    return float(np.mean([int(r) in set(cells[i]) for r, i in zip(peaks, b)]))
