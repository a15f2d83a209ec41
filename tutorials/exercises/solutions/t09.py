"""Reference solutions of tutorial 09 (image features)."""
import numpy as np

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def eval_crop_box(w, h):
    nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    return nw, nh, int(round((nw - 224) / 2)), int(round((nh - 224) / 2))


def normalise_image(pixels):
    x = pixels.astype(np.float32) / np.float32(255)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def grid_regions(fmap):
    B, C, h, w = fmap.shape
    return fmap.reshape(B, C, h * w).transpose(0, 2, 1)
