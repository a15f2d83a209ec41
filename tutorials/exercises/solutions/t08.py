"""Reference solutions of tutorial 08 (semantic augmentation)."""
import numpy as np


def cosine_neighbours(vectors, query, k):
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)             # zero rows stay zero
    sims = unit @ unit[query]                                    # (V,)
    sims[query] = -np.inf                                        # not its own neighbour
    order = np.lexsort((np.arange(len(sims)), -sims))[:k]        # similarity descending, then index ascending
    return order, sims[order]


def augmentation_vector(vectors, ids, sims):
    w = np.exp(sims - sims.max())
    w /= w.sum()                                                 # softmax over the k similarities
    return w @ vectors[ids]                                      # (k,) @ (k, E) -> (E,)


def position_input(first_piece, word_vectors, T):
    a = np.zeros((T, word_vectors.shape[1]), word_vectors.dtype)
    a[first_piece] = word_vectors
    return a
