"""Image loading: bad files are marked missing (never replaced), modes, EXIF, transforms, normalisation."""
import io
import logging

import numpy as np
import pytest
from PIL import Image

from minimner.vision import images as I


def _photo(w=320, h=240, seed=0):
    """A smooth RGB test picture (gradients plus noise), so resizing has something to do."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1) + r.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _save(im, path, **kw):
    im.save(path, **kw)
    return path


# ----------------------------------------------------------------------------- bad images
def test_missing_file_is_marked_and_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="minimner.vision"):
        r = I.load_image(tmp_path / "nope.jpg")
    assert r.missing and r.array is None and r.reason == "file not found"
    assert "nope.jpg" in caplog.text and "marked missing" in caplog.text


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    r = I.load_image(tmp_path / "empty.jpg")
    assert r.missing and "empty file" in r.reason


def test_truncated_jpeg(tmp_path):
    data = io.BytesIO()
    _photo().save(data, "JPEG", quality=90)
    raw = data.getvalue()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    r = I.load_image(tmp_path / "cut.jpg")
    assert r.missing and "truncated" in r.reason
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False      # we never flip Pillow's global switch


def test_undecodable_bytes(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all" * 10)
    r = I.load_image(tmp_path / "junk.jpg")
    assert r.missing and "not a recognised image format" in r.reason


def test_png_with_alpha_is_composited_on_white(tmp_path):
    a = np.zeros((40, 60, 4), np.uint8)
    a[..., :3] = (10, 200, 30)                           # colour hidden under full transparency
    a[:, 30:, 3] = 255                                   # right half opaque green
    p = _save(Image.fromarray(a, "RGBA"), tmp_path / "alpha.png")
    rgb, mode = I.open_rgb(p)
    assert mode == "RGBA" and rgb.mode == "RGB"
    px = np.asarray(rgb)
    assert (px[:, :30] == 255).all()                     # transparent -> white, not the hidden green
    assert (px[:, 30:] == (10, 200, 30)).all()
    r = I.load_image(p)
    assert not r.missing and r.array.shape == (3, 224, 224) and r.original_mode == "RGBA"


def test_grayscale(tmp_path):
    p = _save(Image.fromarray(np.full((50, 70), 128, np.uint8), "L"), tmp_path / "gray.png")
    r = I.load_image(p)
    assert not r.missing and r.original_mode == "L"
    ch = r.array.reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(ch, (128 / 255 - np.array(I.IMAGENET_MEAN)) / np.array(I.IMAGENET_STD), atol=1e-5)


def test_sixteen_bit_grayscale(tmp_path):
    p = _save(Image.fromarray(np.full((40, 40), 65535, np.uint16)), tmp_path / "g16.png")
    rgb, _ = I.open_rgb(p)
    assert rgb.mode == "RGB" and (np.asarray(rgb) == 255).all()


def test_cmyk_jpeg(tmp_path):
    p = _save(_photo().convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    r = I.load_image(p)
    assert not r.missing and r.original_mode == "CMYK" and r.array.dtype == np.float32


def test_palette_with_and_without_transparency(tmp_path):
    pal = _photo(64, 48).convert("P", palette=Image.ADAPTIVE, colors=16)
    assert not I.load_image(_save(pal, tmp_path / "pal.png")).missing
    pal.info["transparency"] = 0
    p = _save(pal, tmp_path / "pal_t.png", transparency=0)
    rgb, mode = I.open_rgb(p)
    assert mode == "P" and rgb.mode == "RGB"


def test_tiny_image_is_upscaled_not_rejected(tmp_path, caplog):
    p = _save(Image.fromarray(np.full((10, 10, 3), 200, np.uint8)), tmp_path / "tiny.png")
    with caplog.at_level(logging.INFO, logger="minimner.vision"):
        r = I.load_image(p)
    assert not r.missing and r.upscaled and r.original_size == (10, 10)
    assert r.array.shape == (3, 224, 224) and "upscaled" in caplog.text


def test_extreme_panorama_is_bounded(tmp_path):
    p = _save(Image.fromarray(np.full((2, 5000, 3), 90, np.uint8)), tmp_path / "strip.png")
    r = I.load_image(p, train=True)
    assert not r.missing and r.array.shape == (3, 224, 224)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 40), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 30, 40))                # left half blue, right half red (landscape)
    exif = Image.Exif()
    exif[0x0112] = 6                                     # "rotate 90° clockwise to display"
    p = _save(im, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    rgb, _ = I.open_rgb(p)
    assert rgb.size == (40, 60)                          # displayed as portrait
    px = np.asarray(rgb).astype(int)
    assert px[5, 20, 2] > 200 and px[55, 20, 0] > 200    # blue on top, red at the bottom after rotating


# ----------------------------------------------------------------------------- transforms
def test_eval_transform_is_resize_256_then_centre_crop(tmp_path):
    im = _photo(320, 240)
    out = I.eval_transform(im)
    assert out.size == (224, 224)
    ref = im.resize((341, 256), Image.BILINEAR)          # int(256 · 320/240) = 341
    left, top = int(round((341 - 224) / 2.0)), 16
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref.crop((left, top, left + 224, top + 224))))


def test_normalise_values_and_layout():
    a = np.zeros((2, 2, 3), np.uint8)
    a[0, 1] = (255, 0, 51)
    x = I.normalise(Image.fromarray(a, "RGB"))
    assert x.shape == (3, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 1], (np.array([1.0, 0.0, 0.2]) - I.IMAGENET_MEAN) / I.IMAGENET_STD, rtol=1e-6)


@pytest.mark.parity
def test_normalise_matches_torchvision_formula():
    torch = pytest.importorskip("torch")
    im = _photo(8, 6)
    ref = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(255)  # ToTensor
    ref = (ref - torch.tensor(I.IMAGENET_MEAN)[:, None, None]) / torch.tensor(I.IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(I.normalise(im), ref.numpy(), rtol=1e-6, atol=1e-6)


def test_train_transform_is_seeded_per_image(tmp_path):
    p = _save(_photo(400, 300), tmp_path / "a.png")
    a1 = I.load_image(p, train=True, seed=7, image_id="17_06_1").array
    a2 = I.load_image(p, train=True, seed=7, image_id="17_06_1").array
    np.testing.assert_array_equal(a1, a2)                # same seed and id: same crop and flip
    others = [I.load_image(p, train=True, seed=s, image_id="17_06_1").array for s in range(8, 14)]
    assert any(not np.array_equal(a1, o) for o in others)
    flips = [I.image_rng(s, "x").random() < 0.5 for s in range(200)]  # crop draws then flip: check the rate
    assert 60 < sum(flips) < 140
    np.testing.assert_array_equal(I.load_image(p).array, I.load_image(p).array)  # eval is deterministic


def test_load_batch_masks_missing_and_never_substitutes(tmp_path):
    good = _save(_photo(), tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"")
    images, present, results = I.load_batch([good, tmp_path / "bad.jpg", tmp_path / "gone.jpg"])
    assert images.shape == (3, 3, 224, 224) and images.dtype == np.float32
    np.testing.assert_array_equal(present, [True, False, False])
    assert (images[1:] == 0).all() and np.abs(images[0]).sum() > 0
    assert [r.reason for r in results[1:]] == ["empty file (0 bytes)", "file not found"]
    with pytest.raises(ValueError, match="3 paths but 1 image ids"):
        I.load_batch([good] * 3, image_ids=["a"])


def test_other_crop_size(tmp_path):
    r = I.load_image(_save(_photo(), tmp_path / "p.png"), size=64)
    assert r.array.shape == (3, 64, 64)
