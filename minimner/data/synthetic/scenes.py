"""The scene painter of the synthetic set: key objects drawn over a cluttered background, their grid cells, and the
simulated detector's labels.

Dimension legend: R = 49 regions of the 7×7 grid (region r = 7·row + col), S = 224 crop, images are
(Hi, Wi) = (256, 320) pixels by default.
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from minimner.vision.images import CROP, RESIZE

__all__ = ["SCENES", "TYPES", "GRID", "CELL", "crop_frame", "covered_cells", "render", "noise_bank"]

#: Scene types a picture can show: the four entity types, or no key object.
SCENES = ("PER", "LOC", "ORG", "MISC", "none")
TYPES = SCENES[:4]

GRID = 7                       # the ResNet grid is GRID × GRID regions at a 224 crop
CELL = CROP // GRID            # 32 pixels of the crop per grid cell
CLUTTER = (20, 36)             # muted background shapes per picture: [low, high)
KEY_WIDTH = (2.8, 3.8)         # key object width in grid cells
KEY_MAX_HEIGHT = 4.6           # and its greatest height


# ---------------------------------------------------------------------------------------- geometry
def crop_frame(width: int, height: int, crop: int = CROP) -> tuple[float, float, int, int]:
    """Where the eval transform's centre crop lies in a saved image (no aspect limiting below 4:1).

    Mirrors :func:`minimner.vision.images.eval_transform`: the shorter side is resized
    to 256 (for a 224 crop), the longer to ``int(256·long/short)``, then the centre
    ``crop``×``crop`` window is taken.

    Returns
    -------
    (sx, sy, left, top) : scale factors saved -> resized pixels, and the crop's
        offset in resized pixels; a saved pixel x maps to ``x·sx − left`` in the crop.
    """
    resize = RESIZE if crop == CROP else int(round(crop * RESIZE / CROP))
    if width <= height:
        rw, rh = resize, int(resize * height / width)
    else:
        rw, rh = int(resize * width / height), resize
    return rw / width, rh / height, int(round((rw - crop) / 2.0)), int(round((rh - crop) / 2.0))


def covered_cells(box_crop, crop: int = CROP, grid: int = GRID) -> list[int]:
    """Grid regions r = grid·row + col covered by a box given in crop pixels ``[l, t, r, b]``.

    A cell counts when at least half of its area lies inside the box; when none does,
    the cell holding the box centre is returned alone.
    """
    cell = crop / grid
    l, t, r, b = box_crop
    out = []
    for row in range(grid):
        for col in range(grid):
            ix = max(0.0, min(r, (col + 1) * cell) - max(l, col * cell))
            iy = max(0.0, min(b, (row + 1) * cell) - max(t, row * cell))
            if ix * iy >= 0.5 * cell * cell:
                out.append(grid * row + col)
    if not out:
        col = min(grid - 1, max(0, int((l + r) / 2 // cell)))
        row = min(grid - 1, max(0, int((t + b) / 2 // cell)))
        out = [grid * row + col]
    return out


# ----------------------------------------------------------------------------------------- drawing
def _hsv(h, s, v) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


def _muted(rng) -> tuple[int, int, int]:
    """A type-neutral clutter colour: any hue, low saturation."""
    return _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.9))


def _background(rng, width, height) -> Image.Image:
    """A cluttered, type-neutral backdrop: muted vertical gradient and 20-35 muted shapes."""
    top = np.asarray(_muted(rng), np.float32)
    bottom = np.asarray(_muted(rng), np.float32)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]           # (Hi, 1, 1)
    arr = top * (1 - ramp) + bottom * ramp                                           # (Hi, 1, 3)
    arr = np.broadcast_to(arr, (height, width, 3)).astype(np.uint8)                  # (Hi, Wi, 3)
    im = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(*CLUTTER))):
        x, y = rng.uniform(-20, width), rng.uniform(-20, height)
        w, h = rng.uniform(8, 80), rng.uniform(8, 80)
        kind = rng.integers(4)
        c = _muted(rng)
        if kind == 0:
            d.rectangle([x, y, x + w, y + h], fill=c)
        elif kind == 1:
            d.ellipse([x, y, x + w, y + h], fill=c)
        elif kind == 2:
            d.line([x, y, x + w * rng.choice([-1, 1]), y + h], fill=c, width=int(rng.integers(1, 6)))
        else:
            pts = [(x + rng.uniform(0, w), y + rng.uniform(0, h)) for _ in range(3)]
            d.polygon(pts, fill=c)
    return im


# Stroke letters in a unit box, for logos (no font files needed).
_LETTERS = {
    "A": [((0, 1), (0.5, 0)), ((0.5, 0), (1, 1)), ((0.22, 0.6), (0.78, 0.6))],
    "E": [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 0.5), (0.8, 0.5)), ((0, 1), (1, 1))],
    "F": [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 0.5), (0.8, 0.5))],
    "H": [((0, 0), (0, 1)), ((1, 0), (1, 1)), ((0, 0.5), (1, 0.5))],
    "K": [((0, 0), (0, 1)), ((1, 0), (0, 0.55)), ((0.3, 0.4), (1, 1))],
    "L": [((0, 0), (0, 1)), ((0, 1), (1, 1))],
    "M": [((0, 1), (0, 0)), ((0, 0), (0.5, 0.6)), ((0.5, 0.6), (1, 0)), ((1, 0), (1, 1))],
    "N": [((0, 1), (0, 0)), ((0, 0), (1, 1)), ((1, 1), (1, 0))],
    "T": [((0, 0), (1, 0)), ((0.5, 0), (0.5, 1))],
    "V": [((0, 0), (0.5, 1)), ((0.5, 1), (1, 0))],
    "X": [((0, 0), (1, 1)), ((1, 0), (0, 1))],
    "Z": [((0, 0), (1, 0)), ((1, 0), (0, 1)), ((0, 1), (1, 1))],
}


def _letters(d, box, text, colour, width):
    l, t, r, b = box
    n = len(text)
    gap = (r - l) * 0.12
    w = ((r - l) - gap * (n - 1)) / n
    for k, ch in enumerate(text):
        x0 = l + k * (w + gap)
        for (ax, ay), (bx, by) in _LETTERS[ch]:
            d.line([x0 + ax * w, t + ay * (b - t), x0 + bx * w, t + by * (b - t)], fill=colour, width=width)


_SKIN = ((255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 51, 23))
_HAIR = ((20, 15, 10), (70, 40, 20), (120, 70, 30), (200, 160, 80), (150, 50, 20), (200, 200, 200))


def _jitter(c, rng, amount=12):
    return tuple(int(min(255, max(0, v + rng.integers(-amount, amount + 1)))) for v in c)


def _draw_person(im, d, box, rng):
    """Head, hair, neck, torso, arms (and legs when the box is tall) filling ``box``."""
    l, t, r, b = box
    w, h = r - l, b - t
    cx = (l + r) / 2
    skin = _jitter(_SKIN[rng.integers(len(_SKIN))], rng)
    cloth = _hsv(rng.random(), rng.uniform(0.45, 0.95), rng.uniform(0.35, 0.95))
    hr = 0.24 * min(w * 1.1, h * 0.55)                      # head radius
    hy = t + hr * 1.15
    d.ellipse([cx - hr * 1.05, t, cx + hr * 1.05, t + hr * 1.4], fill=_jitter(_HAIR[rng.integers(len(_HAIR))], rng))
    d.ellipse([cx - hr, hy - hr, cx + hr, hy + hr], fill=skin)
    eye = max(1.0, hr * 0.12)
    for ex in (cx - hr * 0.4, cx + hr * 0.4):
        d.ellipse([ex - eye, hy - hr * 0.15 - eye, ex + eye, hy - hr * 0.15 + eye], fill=(30, 20, 20))
    d.rectangle([cx - hr * 0.35, hy + hr * 0.8, cx + hr * 0.35, hy + hr * 1.3], fill=skin)
    st, sb = hy + hr * 1.2, t + h * (0.7 if h > 1.45 * w else 1.0)
    d.polygon([(cx - w * 0.33, st), (cx + w * 0.33, st), (cx + w * 0.26, sb), (cx - w * 0.26, sb)], fill=cloth)
    aw = max(2, int(w * 0.1))
    for side in (-1, 1):
        sx = cx + side * w * 0.36
        hx = cx + side * w * rng.uniform(0.38, 0.5)
        hy2 = st + (sb - st) * rng.uniform(0.2, 0.95)
        d.line([sx, st + aw * 0.5, hx, hy2], fill=cloth, width=aw)
        d.ellipse([hx - aw * 0.6, hy2 - aw * 0.6, hx + aw * 0.6, hy2 + aw * 0.6], fill=skin)
    if sb < b:
        legs = _hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.6))
        for side in (-1, 1):
            d.line([cx + side * w * 0.12, sb, cx + side * w * 0.15, b], fill=legs, width=max(2, int(w * 0.13)))


def _draw_skyline(im, d, box, rng):
    l, t, r, b = box
    d.rectangle(box, fill=_hsv(rng.uniform(0.52, 0.62), rng.uniform(0.25, 0.6), rng.uniform(0.75, 1.0)))  # sky
    x = l
    while x < r - 4:
        bw = min(r - x, (r - l) * rng.uniform(0.16, 0.3))
        top = t + (b - t) * rng.uniform(0.05, 0.6)
        body = _hsv(rng.uniform(0.55, 0.65) if rng.random() < 0.6 else rng.uniform(0.05, 0.1),
                    rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.55))
        d.rectangle([x, top, x + bw, b], fill=body)
        lit = _hsv(rng.uniform(0.12, 0.17), rng.uniform(0.5, 0.9), 1.0)
        step = max(4.0, bw / rng.integers(3, 5))
        wy = top + step * 0.5
        while wy < b - step * 0.5:
            wx = x + step * 0.3
            while wx < x + bw - step * 0.5:
                d.rectangle([wx, wy, wx + step * 0.45, wy + step * 0.45], fill=lit)
                wx += step
            wy += step
        x += bw + rng.uniform(0, 3)


def _draw_map(im, d, box, rng):
    l, t, r, b = box
    w, h = r - l, b - t
    d.rectangle(box, fill=_hsv(rng.uniform(0.55, 0.6), rng.uniform(0.5, 0.8), rng.uniform(0.75, 0.95)))  # water
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = l + w * rng.uniform(0.3, 0.7), t + h * rng.uniform(0.3, 0.7)
        n = 9
        pts = []
        for k in range(n):
            a = 2 * math.pi * k / n
            rad = min(w, h) * rng.uniform(0.25, 0.48)
            pts.append((min(r, max(l, cx + rad * math.cos(a))), min(b, max(t, cy + rad * math.sin(a)))))
        d.polygon(pts, fill=_hsv(rng.uniform(0.2, 0.33), rng.uniform(0.35, 0.7), rng.uniform(0.55, 0.85)))
    step = min(w, h) / rng.uniform(4.0, 6.0)               # a street grid over everything
    for k in range(1, int(w / step) + 1):
        d.line([l + k * step, t, l + k * step, b], fill=(250, 245, 225), width=2)
    for k in range(1, int(h / step) + 1):
        d.line([l, t + k * step, r, t + k * step], fill=(250, 245, 225), width=2)
    px, py = l + w * rng.uniform(0.35, 0.65), t + h * rng.uniform(0.3, 0.55)
    pr = min(w, h) * 0.11
    d.polygon([(px - pr, py), (px + pr, py), (px, py + pr * 2.4)], fill=(220, 30, 30))
    d.ellipse([px - pr, py - pr, px + pr, py + pr], fill=(220, 30, 30))
    d.ellipse([px - pr * 0.4, py - pr * 0.4, px + pr * 0.4, py + pr * 0.4], fill=(255, 255, 255))


def _draw_logo(im, d, box, rng):
    """A club/brand emblem: a bold outlined badge, a striped field and stroke letters on a band."""
    l, t, r, b = box
    cx, cy, rad = (l + r) / 2, (t + b) / 2, min(r - l, b - t) / 2
    hue = rng.random()
    main = _hsv(hue, rng.uniform(0.85, 1.0), rng.uniform(0.75, 1.0))
    second = _hsv(hue + rng.uniform(0.3, 0.7), rng.uniform(0.85, 1.0), rng.uniform(0.6, 1.0))
    shape = int(rng.integers(3))

    def outline(scale):                                  # the badge's polygon, scaled about its centre
        if shape == 0:
            n, phase, pts = 24, 0.0, None
        elif shape == 1:
            pts = [(-1, -1), (1, -1), (1, 0.2), (0, 1), (-1, 0.2)]
        else:
            n, phase, pts = 6, math.pi / 6, None
        if pts is None:
            pts = [(math.cos(phase + 2 * math.pi * k / n), math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]
        return [(cx + scale * rad * x, cy + scale * rad * y) for x, y in pts]
    d.polygon(outline(1.0), fill=(15, 15, 15))
    d.polygon(outline(0.9), fill=main)
    d.polygon(outline(0.74), fill=(255, 255, 255))
    # the striped field: stripes of `second` inside the inner outline (drawn through a mask)
    inner = outline(0.66)
    x0, y0 = int(min(x for x, _ in inner)), int(min(y for _, y in inner))
    x1, y1 = int(math.ceil(max(x for x, _ in inner))), int(math.ceil(max(y for _, y in inner)))
    layer = Image.new("RGB", (x1 - x0 + 1, y1 - y0 + 1), (255, 255, 255))
    ld = ImageDraw.Draw(layer)
    step = max(4.0, rad * rng.uniform(0.18, 0.26))
    diagonal = rng.random() < 0.4
    k = 0
    while k * step < 2 * layer.size[0] + layer.size[1]:
        if diagonal:
            ld.polygon([(k * step - layer.size[1], 0), (k * step + step / 2 - layer.size[1], 0),
                        (k * step + step / 2, layer.size[1]), (k * step, layer.size[1])], fill=second)
        else:
            ld.rectangle([k * step, 0, k * step + step / 2, layer.size[1]], fill=second)
        k += 1
    mask = Image.new("L", layer.size, 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in inner], fill=255)
    im.paste(layer, (x0, y0), mask)
    keys = sorted(_LETTERS)
    text = "".join(keys[rng.integers(len(keys))] for _ in range(int(rng.integers(1, 4))))
    s = rad * 0.2
    half = s * (0.6 + 0.35 * len(text))
    d.rectangle([cx - rad * 0.8, cy - s * 1.4, cx + rad * 0.8, cy + s * 1.4], fill=main, outline=(15, 15, 15),
                width=max(1, int(rad * 0.04)))
    _letters(d, [cx - half, cy - s, cx + half, cy + s], text, (255, 255, 255), max(2, int(rad * 0.11)))


def _gold(rng):
    return _hsv(rng.uniform(0.11, 0.15), rng.uniform(0.7, 0.95), rng.uniform(0.8, 1.0))


def _draw_trophy(im, d, box, rng):
    """A gold cup on a stage before a deep red curtain (vertical folds) with a spotlight."""
    l, t, r, b = box
    w, h = r - l, b - t
    d.rectangle(box, fill=_hsv(rng.uniform(-0.02, 0.02), rng.uniform(0.75, 0.95), rng.uniform(0.35, 0.5)))
    fold = max(3.0, w / rng.uniform(7, 10))
    x = l + fold * rng.uniform(0, 1)
    while x < r:                                          # darker folds of the curtain
        d.rectangle([x, t, min(r, x + fold * 0.45), b], fill=_hsv(0.0, 0.9, rng.uniform(0.18, 0.28)))
        x += fold
    d.polygon([(l + w * 0.4, t), (l + w * 0.6, t), (r, b), (l, b)], fill=_hsv(0.15, 0.15, rng.uniform(0.3, 0.45)))
    l, t, r, b = l + w * 0.12, t + h * 0.12, r - w * 0.12, b - h * 0.04
    w, h = r - l, b - t
    cx = (l + r) / 2
    g = _gold(rng)
    hw = max(2, int(w * 0.07))
    for side in (-1, 1):                                 # handles
        d.arc([cx + side * w * 0.3 - w * 0.2, t + h * 0.08, cx + side * w * 0.3 + w * 0.2, t + h * 0.4],
              0, 360, fill=g, width=hw)
    d.chord([l + w * 0.15, t - h * 0.2, r - w * 0.15, t + h * 0.55], 0, 180, fill=g)  # bowl
    d.rectangle([cx - w * 0.06, t + h * 0.55, cx + w * 0.06, t + h * 0.8], fill=g)  # stem
    d.rectangle([l + w * 0.2, t + h * 0.8, r - w * 0.2, b], fill=_hsv(0.08, 0.6, rng.uniform(0.15, 0.35)))
    d.rectangle([l + w * 0.32, t + h * 0.85, r - w * 0.32, t + h * 0.93], fill=g)


def _draw_ball(im, d, box, rng):
    """A football (white with black pentagon patches) in a floodlit night stadium."""
    l, t, r, b = box
    w, h = r - l, b - t
    d.rectangle(box, fill=_hsv(rng.uniform(0.6, 0.72), rng.uniform(0.5, 0.85), rng.uniform(0.08, 0.22)))
    for k in range(int(rng.integers(3, 6))):               # floodlights
        fx, fy = l + w * rng.uniform(0.05, 0.95), t + h * rng.uniform(0.05, 0.3)
        d.ellipse([fx - 3, fy - 3, fx + 3, fy + 3], fill=(255, 255, 220))
    pitch = _hsv(rng.uniform(0.25, 0.33), rng.uniform(0.55, 0.8), rng.uniform(0.4, 0.6))
    d.rectangle([l, t + h * 0.6, r, b], fill=pitch)
    d.line([l, t + h * 0.8, r, t + h * 0.8], fill=(240, 240, 240), width=2)
    cx, cy = l + w * rng.uniform(0.4, 0.6), t + h * rng.uniform(0.45, 0.6)
    rad = min(w, h) * rng.uniform(0.24, 0.3)
    d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=(245, 245, 245), outline=(20, 20, 20),
              width=max(1, int(rad * 0.05)))
    turn = rng.uniform(0, 2 * math.pi / 5)
    spots = [(0, 0)] + [(0.66 * math.cos(a), 0.66 * math.sin(a)) for a in np.arange(5) * 2 * math.pi / 5 + turn]
    for sx, sy in spots:
        pr = rad * 0.25
        x0, y0 = cx + sx * rad, cy + sy * rad
        d.polygon([(x0 + pr * math.cos(a), y0 + pr * math.sin(a)) for a in np.arange(5) * 2 * math.pi / 5 + turn],
                  fill=(20, 20, 20))


def _draw_fireworks(im, d, box, rng):
    """An event poster: bursts of bright sparks on a night sky."""
    l, t, r, b = box
    w, h = r - l, b - t
    d.rectangle(box, fill=_hsv(rng.uniform(0.6, 0.72), rng.uniform(0.6, 0.9), rng.uniform(0.08, 0.25)))
    for _ in range(int(rng.integers(2, 4))):
        cx, cy = l + w * rng.uniform(0.25, 0.75), t + h * rng.uniform(0.25, 0.75)
        rad = min(w, h) * rng.uniform(0.22, 0.4)
        c = _hsv(rng.choice([0.0, 0.12, 0.33, 0.55, 0.83]) + rng.uniform(-0.03, 0.03), rng.uniform(0.5, 0.9), 1.0)
        n = int(rng.integers(12, 20))
        for k in range(n):
            a = 2 * math.pi * (k + rng.uniform(-0.2, 0.2)) / n
            ex, ey = cx + rad * math.cos(a), cy + rad * math.sin(a)
            ex, ey = min(r - 1, max(l, ex)), min(b - 1, max(t, ey))
            d.line([cx + 0.25 * rad * math.cos(a), cy + 0.25 * rad * math.sin(a), ex, ey], fill=c, width=2)
            d.ellipse([ex - 2, ey - 2, ex + 2, ey + 2], fill=(255, 255, 230))


# scene -> (variants, aspect range h/w of the key box)
_VARIANTS = {"PER": (("person",), (1.3, 1.7)), "LOC": (("skyline", "map"), (0.8, 1.1)),
             "ORG": (("badge",), (1.0, 1.0)), "MISC": (("trophy", "ball", "fireworks"), (1.0, 1.3))}
_DRAW = {"person": _draw_person, "skyline": _draw_skyline, "map": _draw_map, "badge": _draw_logo,
         "trophy": _draw_trophy, "ball": _draw_ball, "fireworks": _draw_fireworks}


#: Labels a detector reports in every kind of scene (crowds at venues, streets, offices, stadiums) with the
#: same probabilities whatever the scene: they say nothing about the entity type.
_SHARED_OBJECTS = (("person", 0.45), ("chair", 0.12), ("bottle", 0.1), ("car", 0.12), ("cup", 0.08),
                   ("potted plant", 0.06), ("cell phone", 0.08), ("handbag", 0.06))
#: The one label per variant that does hint at the type (reported with probability ``_P_HINT``).
_HINTS = {"person": "tie", "skyline": "traffic light", "map": "boat", "badge": "tv", "trophy": "wine glass",
          "ball": "sports ball", "fireworks": "kite"}
_P_HINT = 0.15


def _detections(scene, variant, people, rng) -> tuple[list[str], bool]:
    """What the simulated detector reports for the scene, and whether it hints at the type.

    As with a real detector on tweet photos, the labels do not give the type away: every scene
    draws from the same generic pool with the same probabilities (a "person" is as likely in front
    of a skyline or a trophy as in a portrait), and only with probability ``_P_HINT`` a label that
    goes with the scene's variant is added (``type_hint`` in the meta). The type is in the pixels.
    """
    found = [c for c, p in _SHARED_OBJECTS if rng.random() < p]
    if found and found[0] == "person" and scene == "PER" and people > 1:
        found = ["person"] * min(people, 3) + found[1:]     # a crowd: one box per drawn person
    hint = scene != "none" and rng.random() < _P_HINT
    if hint:
        found.insert(int(rng.integers(len(found) + 1)), _HINTS[variant])
    return found, bool(hint)


def noise_bank(seed, width, height, n=16):
    """n Gaussian sensor-noise fields (n, Hi, Wi, 3) int16 with σ from 3 to 8 grey levels (shared, for speed)."""
    g = np.random.default_rng([seed, 1000])
    sigma = np.linspace(3.0, 8.0, n)[:, None, None, None]                            # (n, 1, 1, 1)
    return np.rint(g.standard_normal((n, height, width, 3)) * sigma).astype(np.int16)  # (n, Hi, Wi, 3)


def render(scene, rng, width, height, noise):
    """Draw one picture. Returns (image, variant, key box in saved pixels or None, cells, detections, type hint).

    ``noise``: (n, Hi, Wi, 3) int16 fields from :func:`noise_bank`; one is added to the picture.
    """
    im = _background(rng, width, height)
    d = ImageDraw.Draw(im)
    sx, sy, left, top = crop_frame(width, height)
    variant, box, cells, people = None, None, [], 1
    if scene != "none":
        variants, (amin, amax) = _VARIANTS[scene]
        variant = variants[rng.integers(len(variants))]
        bw = rng.uniform(*KEY_WIDTH) * CELL                # key box in crop pixels (~11 of the 49 cells)
        bh = min(bw * rng.uniform(amin, amax), KEY_MAX_HEIGHT * CELL)
        bx, by = rng.uniform(0, CROP - bw), rng.uniform(0, CROP - bh)
        # crop pixels -> saved pixels (integers); the cells come from that saved box mapped back
        box = [int(math.floor((bx + left) / sx)), int(math.floor((by + top) / sy)),
               int(math.ceil((bx + bw + left) / sx)), int(math.ceil((by + bh + top) / sy))]
        cells = covered_cells([box[0] * sx - left, box[1] * sy - top, box[2] * sx - left, box[3] * sy - top])
        if scene == "PER" and rng.random() < 0.3:           # a few smaller people around the key one
            for _ in range(int(rng.integers(1, 3))):
                ow = rng.uniform(0.45, 0.7) * bw
                oh = ow * rng.uniform(1.3, 1.7)
                ox, oy = rng.uniform(0, width - ow), rng.uniform(0, height - oh)
                if ox + ow < box[0] or ox > box[2] or oy + oh < box[1] or oy > box[3]:
                    _draw_person(im, d, [ox, oy, ox + ow, oy + oh], rng)
                    people += 1
        _DRAW[variant](im, d, box, rng)
    arr = np.asarray(im).astype(np.int16)                                             # (Hi, Wi, 3)
    arr += noise[rng.integers(len(noise))]                                            # sensor noise (Hi, Wi, 3)
    np.clip(arr, 0, 255, out=arr)
    im = Image.fromarray(arr.astype(np.uint8), "RGB")
    found, hint = _detections(scene, variant, people, rng)
    return im, variant, box, cells, found, hint
