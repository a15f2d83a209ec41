"""A synthetic multimodal tweet set in which the *image* decides the entity type.

Real tweet images cannot be shipped, so the multimodal demo, tutorials and tests
run on this generated set instead. It is written in exactly the on-disk layout of
the real data, so it goes through the same readers, image pipeline and models::

    OUT/train.txt, valid.txt, test.txt   CoNLL with IMGID lines (docs/data.md §1), tags O, B-/I- PER LOC ORG MISC
    OUT/images/<id>.jpg                  Pillow-drawn JPEGs (default 320×256; absent for "no image" tweets)
    OUT/objects.json                     {"<id>.jpg": [COCO class names in detector order]} (docs/data.md §6)
    OUT/meta.json                        settings + version, per-image ground truth, summary

Design of the ambiguity
-----------------------
* **Invented names.** Entities are made-up syllable pairs (:data:`ENTITY_NAMES`:
  "Velova", "Yadux", ...), so a pretrained BERT has no prior about their type. Every name is drawn from one pool
  for every type, so across the data the same name is PER, LOC, ORG and MISC.
* **Ambiguous tweets** (share ``p_ambiguous``) put a one- or two-word name into a
  *type-neutral* template ("can't stop thinking about Velova today", "Yadux is
  everywhere this week #wow"). The type is drawn uniformly, independently of name
  and template, so the text alone gives a chance-level guess (1/4). The **picture
  decides**: PER -> a person (head, hair, body; varied skin and clothes colours),
  LOC -> a place (a skyline with lit window grids, or a street map with water and a
  pin), ORG -> a logo (a bold outlined badge, saturated, with a striped field and
  stroke letters on a band), MISC -> an event or product (a gold trophy before a red
  curtain, a football in a floodlit night stadium, or a fireworks poster).
* **Text-decidable tweets** (share ``p_typed``) use typed context ("flying to Norulo
  tomorrow", "@Osvek_FC signs a new striker", "RT @Ralimo : ...", "watching the Correl
  Cup final tonight"), including multi-word entities (``B-``/``I-``: "Mount Velova",
  "Davira United", "Correl Cup", first + last names). Their image shows the same type
  (probability 0.6) or no key object. An ambiguous tweet also carries a typed clause
  with probability 0.25.
* **O-only tweets** (the rest) have no entity; their picture is any scene, so a
  person in the picture does not by itself make an entity.

So a text-only tagger finds the spans and the typed entities but can only guess the
ambiguous types; a model that reads the image can resolve them.

The key object
--------------
The scene's key object is drawn at a random position and scale (2.8–3.8 grid cells
wide, at most 4.6 high: about a quarter of the grid) over a cluttered, type-neutral background (muted gradient,
20–35 muted shapes, pixel noise), always inside the 224×224 centre crop of the eval transform
(:func:`minimner.vision.images.eval_transform`: shorter side resized to 256, centre
crop 224). ``meta.json`` gives per image its bounding box in saved-image pixels
``[left, top, right, bottom]`` (right/bottom exclusive, Pillow's convention) and the
7×7 grid cells it covers in that crop frame (region r = 7·row + col, docs/data.md §5): a
cell is covered when at least half of its 32×32 area lies inside the box (the
centre cell when no cell reaches half). Some PER scenes hold extra, smaller people.

``meta.json``
-------------
``settings`` (every argument of :func:`generate` plus ``version``), ``complete``,
``summary`` (what :func:`generate` returns, less timing), ``grid`` (crop size, grid
size, and the crop frame ``(sx, sy, left, top)`` of :func:`crop_frame`) and
``images``: per image id (one per tweet, also for tweets without a file)

* ``split``; ``kind``: ``ambiguous`` | ``typed`` | ``none`` (O-only);
* ``gold``: type of the entity the picture is about (None for O-only tweets);
* ``image_spans``: word spans ``[start, end)`` of the entities whose type only the
  picture decides (the ambiguous ones; a scorer can report them separately);
* ``image``: whether ``images/<id>.jpg`` exists;
* ``scene`` (what the picture shows: PER, LOC, ORG, MISC or none), ``variant``
  (person, skyline, map, badge, trophy, ball, fireworks), ``misleading``;
* ``bbox`` and ``cells`` of the key object (None and [] without one);
* ``objects`` (as in ``objects.json``), ``detector_miss`` (forced empty) and
  ``type_hint`` (the labels include the variant's hinting label).

Noise (as the paper discusses)
------------------------------
* ``p_misleading``: an ambiguous tweet's picture shows another type than the gold
  one (flag ``misleading`` in the meta); its gold label is then unresolvable.
* ``p_no_objects``: the simulated detector misses everything (empty list).
* **The object labels do not give the type away**, as with a real detector on tweet
  photos: every scene (and every picture without a key object) draws its labels from
  one generic pool with the same probabilities ("person" 0.45, "car", "chair",
  "bottle", "cup", "cell phone", "handbag", "potted plant"), so a "person" is as
  likely over a skyline or a trophy as in a portrait. Only with probability 0.15 a
  label that goes with the scene's variant is added ("tie" for a person, "traffic
  light" / "boat" for a skyline / map, "tv" for a badge, "wine glass" / "sports ball"
  / "kite" for a trophy / football / fireworks), flagged ``type_hint`` in the meta.
  What decides is drawn in the picture's grid.
* ``p_no_image``: the tweet keeps its ``IMGID`` line but no file is written (the
  pipeline marks it missing; :mod:`minimner.vision.images`); it has no objects entry.

Determinism: everything is drawn from ``numpy.random.default_rng`` seeded by
``seed`` (text per split, each image from its own ``[seed, split, index]`` stream),
so the same arguments give byte-identical files. Writes are atomic
(:mod:`minimner.atomic`); ``meta.json`` is written first as "incomplete" and last
as "complete". A folder that already holds a complete set with the same settings is
returned as is; a folder holding anything else is refused, never overwritten.

Dimension legend: R = 49 regions of the 7×7 grid (region r = 7·row + col), S = 224
crop, images are (Hi, Wi) = (256, 320) pixels by default.
"""
from __future__ import annotations

import colorsys
import io
import json
import math
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from minimner.atomic import atomic_write, write_json_atomic
from minimner.data.conll import Sentence, write_conll
from minimner.vision.images import CROP, RESIZE
from minimner.vision.objects import class_id

__all__ = ["generate", "DEFAULT_SIZES", "VERSION", "SCENES", "ENTITY_NAMES", "crop_frame", "covered_cells",
           "separability_probe"]

#: Format version of the generated set (bump when the generator's output changes).
VERSION = 2

#: Tweets per split of the default set, sized for a CPU demo that trains a text-only and a multimodal
#: model: ~950 images, generated in ~3 s; random-init ResNet-18 features through the real pipeline take
#: ~0.07 s per image on one core (~65 s), and a text-CRF (MiniLM) epoch ~4.5 s per 100 train tweets.
DEFAULT_SIZES = {"train": 600, "valid": 100, "test": 300}

SPLITS = ("train", "valid", "test")

#: Scene types a picture can show: the four entity types, or no key object.
SCENES = ("PER", "LOC", "ORG", "MISC", "none")
_TYPES = SCENES[:4]

GRID = 7                       # the ResNet grid is GRID × GRID regions at a 224 crop
CELL = CROP // GRID            # 32 pixels of the crop per grid cell

# ------------------------------------------------------------------------------------------ text
_ONSETS = ("Var", "Kel", "Bra", "Os", "Tam", "Dre", "Mir", "Zan", "Fen", "Ral", "Sev", "Nor", "Pel", "Yad",
           "Gor", "Ith", "Vel", "Cor", "Bel", "Tor", "Jas", "Quen", "Wim", "Hal", "Esk", "Dav", "Lom", "Rin")
_CODAS = ("no", "tis", "vek", "rel", "ira", "ux", "ova", "eth", "imo", "ask", "und", "ari", "esh", "ulo")


def _name_pool(n: int = 96) -> tuple[str, ...]:
    """A fixed pool of invented capitalised names (none is a whole word of the MiniLM vocabulary)."""
    names = [a + b for a in _ONSETS for b in _CODAS]       # 392 syllable pairs
    order = np.random.default_rng(20230214).permutation(len(names))
    return tuple(names[i] for i in order[:n])


#: The invented names every entity is built from (the same pool for all four types).
ENTITY_NAMES = _name_pool()

_HANDLES = ("@jess_22", "@mike88", "@daily_vibes", "@sam_k", "@coffee_addict", "@lisa_m", "@tom_b99",
            "@newsbot", "@its_jay", "@rachel_x")
_FILLERS = ("", "", "", "#wow", "lol", "!!", "#tbt", "#nofilter", ":)", "http://t.co/aXk2", "http://t.co/9QpZ",
            "omg", "#weekend")

# "{E}" is the ambiguous entity: these templates carry no hint of its type.
_NEUTRAL = (
    "can't stop thinking about {E} today",
    "{E} is everywhere this week",
    "so much love for {E} right now",
    "look at {E} !",
    "{E} again , what a day",
    "nothing beats {E} honestly",
    "everyone is talking about {E}",
    "new pics of {E} just dropped",
    "{E} tonight , who else ?",
    "RT {H} : {E} never disappoints",
    "finally saw {E} in real life",
    "this is {E} , no words",
    "{E} {E} {E} !!!",
    "throwback to {E} last summer",
    "who else is obsessed with {E} ?",
)
# (type, template, entity forms); a form is "*" (one name), "**" (two names) or literal words around "*";
# "{N}" inside a token is a bare name glued into a handle.
_TYPED = (
    ("LOC", "flying to {E} tomorrow", ("*", "* City", "Lake *", "Mount *")),
    ("LOC", "just landed in {E}", ("*", "* City", "North *")),
    ("LOC", "greetings from {E} !", ("*", "Lake *", "Mount *")),
    ("LOC", "traffic in {E} is terrible again", ("*", "* City")),
    ("LOC", "moving to {E} next month", ("*", "North *")),
    ("PER", "RT @{N} : {neutral}", ("*",)),
    ("PER", "congrats to {E} on the new baby", ("*", "**")),
    ("PER", "{E} scored twice last night", ("*", "**")),
    ("PER", "{E} says she is retiring", ("**", "*")),
    ("PER", "interview with {E} tonight", ("**",)),
    ("ORG", "@{N}_FC signs a new striker", ("*",)),
    ("ORG", "{E} shares fell again today", ("*", "* Inc")),
    ("ORG", "{E} announces a new CEO", ("*", "* Inc", "* Group")),
    ("ORG", "just applied for a job at {E}", ("*", "* Inc")),
    ("ORG", "{E} beat {E2} 2 - 0", ("* United",)),
    ("MISC", "watching the {E} final tonight", ("* Cup",)),
    ("MISC", "tickets for {E} are sold out", ("* Fest", "* Cup")),
    ("MISC", "the new {E} trailer looks amazing", ("*", "* 2")),
    ("MISC", "{E} is trending", ("#*Day",)),
    ("MISC", "playing {E} all night", ("*", "* Online")),
)
_SHORT_NEUTRAL = ("what a game", "love this", "see you soon", "so true", "big news today")
_O_ONLY = (
    "good morning everyone", "i need coffee right now", "this weather though lol", "best day ever",
    "can't believe it is monday again", "who is up ?", "so tired today", "happy friday !",
    "that moment when the wifi dies", "cooking dinner tonight", "on my way home", "this song is stuck in my head",
    "RT {H} : this is so true", "new phone who dis", "late night thoughts", "rain again , great",
    "just finished my shift , time to sleep", "can't wait for the weekend",
)


def _entity(form: str, rng: np.random.Generator) -> list[str]:
    """The words of an entity for a form: ``*`` = a name, ``**`` = two distinct names, other words literal."""
    words = []
    for part in form.split():
        if part == "**":
            a, b = rng.choice(len(ENTITY_NAMES), size=2, replace=False)
            words += [ENTITY_NAMES[a], ENTITY_NAMES[b]]
        elif "*" in part:
            words.append(part.replace("*", ENTITY_NAMES[rng.integers(len(ENTITY_NAMES))]))
        else:
            words.append(part)
    return words


def _fill(template: str, slots: dict, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Expand a template: ``{E}``/``{E2}`` -> (words, type) entity, ``{H}`` -> a handle, the rest literal O."""
    words, tags = [], []
    for token in template.split():
        if token in slots:
            ent, etype = slots[token]
            words += ent
            tags += ["O"] * len(ent) if etype is None else [f"B-{etype}"] + [f"I-{etype}"] * (len(ent) - 1)
        elif token == "{H}":
            words.append(_HANDLES[rng.integers(len(_HANDLES))])
            tags.append("O")
        else:
            words.append(token)
            tags.append("O")
    return words, tags


def _typed_clause(rng: np.random.Generator) -> tuple[list[str], list[str], str]:
    """One text-decidable clause: (words, tags, entity type)."""
    etype, template, forms = _TYPED[rng.integers(len(_TYPED))]
    name = ENTITY_NAMES[rng.integers(len(ENTITY_NAMES))]
    if "{N}" in template:                                  # the entity is a handle: one token
        token = next(t for t in template.split() if "{N}" in t)
        words, tags = [], []
        for t in template.split():
            if t == token:
                words.append(t.replace("{N}", name))
                tags.append(f"B-{etype}")
            elif t == "{neutral}":
                extra = _SHORT_NEUTRAL[rng.integers(len(_SHORT_NEUTRAL))].split()
                words += extra
                tags += ["O"] * len(extra)
            else:
                words.append(t)
                tags.append("O")
        return words, tags, etype
    slots = {"{E}": (_entity(forms[rng.integers(len(forms))], rng), etype)}
    if "{E2}" in template:
        slots["{E2}"] = (_entity(forms[rng.integers(len(forms))], rng), etype)
    words, tags = _fill(template, slots, rng)
    return words, tags, etype


def _filler(words: list[str], tags: list[str], rng: np.random.Generator) -> None:
    f = _FILLERS[rng.integers(len(_FILLERS))]
    if f:
        words.append(f)
        tags.append("O")


def _tweet(rng: np.random.Generator, p_ambiguous: float, p_typed: float, p_misleading: float):
    """One tweet's words and tags and the plan of its picture.

    Returns
    -------
    words, tags : list of str
    plan : dict with ``kind`` (ambiguous | typed | none), ``scene`` (what the picture
        shows, one of SCENES), ``gold`` (type of the entity the picture is about, or
        None), ``misleading`` (the picture shows another type than ``gold``) and
        ``image_spans`` (word spans ``[start, end)`` of the entities whose type only the
        picture decides).
    """
    u = rng.random()
    if u < p_ambiguous:
        gold = _TYPES[rng.integers(4)]
        ent = _entity("**" if rng.random() < 0.3 else "*", rng)
        template = _NEUTRAL[rng.integers(len(_NEUTRAL))]
        if "{E} {E} {E}" in template:                      # a repeated chant: one-word name, three entities
            ent = ent[:1]
        words, tags = _fill(template, {"{E}": (ent, gold)}, rng)
        spans = [[k, k + len(ent)] for k, t in enumerate(tags) if t.startswith("B-")]
        if rng.random() < 0.25:                            # plus a text-decidable clause
            w2, t2, _ = _typed_clause(rng)
            words += [","] + w2
            tags += ["O"] + t2
        _filler(words, tags, rng)
        misleading = rng.random() < p_misleading
        scene = _TYPES[(_TYPES.index(gold) + 1 + rng.integers(3)) % 4] if misleading else gold
        return words, tags, {"kind": "ambiguous", "scene": scene, "gold": gold, "misleading": bool(misleading),
                             "image_spans": spans}
    if u < p_ambiguous + p_typed:
        words, tags, etype = _typed_clause(rng)
        if rng.random() < 0.2:                             # two typed clauses
            w2, t2, _ = _typed_clause(rng)
            words += ["and"] + w2
            tags += ["O"] + t2
        _filler(words, tags, rng)
        scene = etype if rng.random() < 0.6 else "none"
        return words, tags, {"kind": "typed", "scene": scene, "gold": etype, "misleading": False, "image_spans": []}
    words, tags = _fill(_O_ONLY[rng.integers(len(_O_ONLY))], {}, rng)
    _filler(words, tags, rng)
    return words, tags, {"kind": "none", "scene": SCENES[rng.integers(5)], "gold": None, "misleading": False,
                         "image_spans": []}


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
    for _ in range(int(rng.integers(20, 36))):
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


def _noise_bank(seed, width, height, n=16):
    """n Gaussian sensor-noise fields (n, Hi, Wi, 3) int16 with σ from 3 to 8 grey levels (shared, for speed)."""
    g = np.random.default_rng([seed, 1000])
    sigma = np.linspace(3.0, 8.0, n)[:, None, None, None]                            # (n, 1, 1, 1)
    return np.rint(g.standard_normal((n, height, width, 3)) * sigma).astype(np.int16)  # (n, Hi, Wi, 3)


def _render(scene, rng, width, height, noise):
    """Draw one picture. Returns (image, variant, key box in saved pixels or None, cells, detections, type hint).

    ``noise``: (n, Hi, Wi, 3) int16 fields from :func:`_noise_bank`; one is added to the picture.
    """
    im = _background(rng, width, height)
    d = ImageDraw.Draw(im)
    sx, sy, left, top = crop_frame(width, height)
    variant, box, cells, people = None, None, [], 1
    if scene != "none":
        variants, (amin, amax) = _VARIANTS[scene]
        variant = variants[rng.integers(len(variants))]
        bw = rng.uniform(2.8, 3.8) * CELL                  # key box in crop pixels (~11 of the 49 cells)
        bh = min(bw * rng.uniform(amin, amax), 4.6 * CELL)
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


# ------------------------------------------------------------------------------------------- API
def _check_prob(name, p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0 or p != p:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _settings(seed, sizes, p_misleading, p_no_objects, p_no_image, p_ambiguous, p_typed, image_size,
              jpeg_quality) -> dict:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if set(sizes) != set(SPLITS):
        raise ValueError(f"sizes must give the splits {list(SPLITS)}, got {sorted(sizes)}")
    for k, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"sizes[{k!r}] must be a non-negative integer, got {n!r}")
    probs = {k: _check_prob(k, v) for k, v in (("p_misleading", p_misleading), ("p_no_objects", p_no_objects),
                                                ("p_no_image", p_no_image), ("p_ambiguous", p_ambiguous),
                                                ("p_typed", p_typed))}
    if probs["p_ambiguous"] + probs["p_typed"] > 1.0 + 1e-12:
        raise ValueError(f"p_ambiguous + p_typed must be at most 1 (the rest are O-only tweets), got "
                         f"{p_ambiguous} + {p_typed}")
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size):
        raise ValueError(f"image_size must be (width, height) in whole pixels, got {image_size!r}")
    w, h = int(size[0]), int(size[1])
    if min(w, h) < CROP or max(w, h) > 4 * min(w, h):
        raise ValueError(f"image_size must be (width, height) with both sides >= {CROP} and an aspect ratio "
                         f"of at most 4, got {tuple(image_size)!r}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be an integer in 1..95, got {jpeg_quality!r}")
    return {"version": VERSION, "seed": int(seed), "sizes": {k: int(sizes[k]) for k in SPLITS}, **probs,
            "image_size": [w, h], "jpeg_quality": jpeg_quality}


def _summarise(meta_images: dict, splits: dict, settings: dict) -> dict:
    out = {"version": VERSION, "seed": settings["seed"], "splits": {}}
    for split, stats in splits.items():
        out["splits"][split] = dict(stats)
    ims = list(meta_images.values())
    with_image = [m for m in ims if m["image"]]
    out["tweets"] = len(ims)
    out["images"] = len(with_image)
    out["no_image"] = len(ims) - len(with_image)
    out["no_objects"] = sum(1 for m in with_image if not m["objects"])
    out["detector_miss"] = sum(1 for m in with_image if m["detector_miss"])
    amb = [m for m in ims if m["kind"] == "ambiguous"]
    out["ambiguous"] = len(amb)
    out["misleading"] = sum(1 for m in amb if m["misleading"])
    out["scenes"] = {s: sum(1 for m in with_image if m["scene"] == s) for s in SCENES}
    return out


def _write_jpeg(path: Path, im: Image.Image, quality: int) -> None:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data), "wb", mkdir=False)


def _existing(out: Path, settings: dict):
    """The meta of a complete identical set in ``out``, None when ``out`` is free; raises when it holds other data."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output folder")
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        if any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty and holds no synthetic data set (no meta.json); refusing "
                                  "to overwrite it: choose another folder or empty it")
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        old = meta["settings"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise FileExistsError(f"{meta_path} is not the meta file of a synthetic set ({e}); refusing to overwrite "
                              f"{out}") from None
    if old != settings:
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        raise FileExistsError(f"{out} already holds a synthetic set with other settings (existing, requested): "
                              f"{diff}; choose another folder or delete it")
    if not meta.get("complete"):
        return None                                       # our own interrupted run: redo it (same bytes)
    files = [out / f"{s}.txt" for s in SPLITS] + [out / "objects.json"]
    files += [out / "images" / f"{i}.jpg" for i, m in meta["images"].items() if m["image"]]
    if not all(f.is_file() for f in files):
        return None                                       # files removed since: regenerate them
    return meta


def generate(out_dir, seed: int = 0, sizes: dict | None = None, p_misleading: float = 0.1,
             p_no_objects: float = 0.15, p_no_image: float = 0.05, p_ambiguous: float = 0.55,
             p_typed: float = 0.3, image_size=(320, 256), jpeg_quality: int = 90) -> dict:
    """Write a synthetic multimodal tweet set whose images decide the ambiguous entity types.

    See the module docstring for the design. Files (all written atomically):
    ``{train,valid,test}.txt``, ``images/<id>.jpg``, ``objects.json``, ``meta.json``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder; created when missing. It must be empty, absent, or hold a set
        generated with the same settings (then nothing is rewritten).
    seed : int
        Seed of every random draw (same seed and settings -> byte-identical files).
    sizes : dict, optional
        Tweets per split, ``{"train": n, "valid": n, "test": n}``; default :data:`DEFAULT_SIZES`.
    p_misleading : float
        Probability that an ambiguous tweet's picture shows another type than the gold one.
    p_no_objects : float
        Probability that the simulated detector reports nothing for a picture.
    p_no_image : float
        Probability that a tweet has an ``IMGID`` line but no image file.
    p_ambiguous, p_typed : float
        Shares of ambiguous (type decided by the picture) and text-decidable tweets;
        the remaining ``1 − p_ambiguous − p_typed`` are O-only.
    image_size : (int, int)
        (width, height) of the saved JPEGs; both at least 224, aspect at most 4.
    jpeg_quality : int
        Pillow JPEG quality, 1..95.

    Returns
    -------
    dict
        Summary: ``version``, ``seed``, ``out_dir``, ``reused`` (True when an identical
        set was already there), ``seconds``, ``tweets``, ``images``, ``no_image``,
        ``no_objects``, ``detector_miss``, ``ambiguous``, ``misleading``, ``scenes``
        (pictures per scene) and per split ``splits[split]`` = tweets, entities per
        type, multi-word entities, O-only tweets and ``image_decided`` (entities whose
        type only the picture tells).

    Raises
    ------
    ValueError
        for negative or non-integer sizes or seed, probabilities outside [0, 1],
        ``p_ambiguous + p_typed > 1``, or a bad image size or quality.
    FileExistsError
        when ``out_dir`` holds anything other than an identical synthetic set.
    """
    t0 = time.perf_counter()
    settings = _settings(seed, sizes, p_misleading, p_no_objects, p_no_image, p_ambiguous, p_typed,
                         image_size, jpeg_quality)
    out = Path(out_dir)
    meta = _existing(out, settings)
    if meta is not None:
        return {**meta["summary"], "out_dir": str(out), "reused": True, "seconds": time.perf_counter() - t0}
    (out / "images").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "meta.json", {"settings": settings, "complete": False})
    width, height = settings["image_size"]
    noise = _noise_bank(settings["seed"], width, height)
    images: dict[str, dict] = {}
    objects: dict[str, list[str]] = {}
    split_stats = {}
    for si, split in enumerate(SPLITS):
        text_rng = np.random.default_rng([settings["seed"], si, 0])
        sentences = []
        stats = {"tweets": 0, "entities": {t: 0 for t in _TYPES}, "multiword": 0, "o_only": 0, "image_decided": 0}
        for i in range(settings["sizes"][split]):
            words, tags, plan = _tweet(text_rng, settings["p_ambiguous"], settings["p_typed"],
                                       settings["p_misleading"])
            has_image = not text_rng.random() < settings["p_no_image"]
            miss = bool(text_rng.random() < settings["p_no_objects"])
            image_id = f"{split}_{i:05d}"
            sentences.append(Sentence(words=words, tags=tags, image_id=image_id))
            stats["tweets"] += 1
            begins = [k for k, t in enumerate(tags) if t.startswith("B-")]
            for k in begins:
                stats["entities"][tags[k][2:]] += 1
                stats["multiword"] += int(k + 1 < len(tags) and tags[k + 1].startswith("I-"))
            stats["o_only"] += int(not begins)
            stats["image_decided"] += len(plan["image_spans"])
            entry = {"split": split, "kind": plan["kind"], "gold": plan["gold"], "image_spans": plan["image_spans"],
                     "image": has_image,
                     "scene": None, "variant": None, "misleading": plan["misleading"], "bbox": None, "cells": [],
                     "objects": [], "detector_miss": False, "type_hint": False}
            if has_image:
                image_rng = np.random.default_rng([settings["seed"], si, i + 1])
                im, variant, box, cells, found, hint = _render(plan["scene"], image_rng, width, height, noise)
                _write_jpeg(out / "images" / f"{image_id}.jpg", im, settings["jpeg_quality"])
                found = [] if miss else found
                for c in found:
                    class_id(c)                           # a COCO-80 name, or fail loudly here
                objects[f"{image_id}.jpg"] = found
                entry.update(scene=plan["scene"], variant=variant, bbox=box, cells=cells, objects=found,
                             detector_miss=miss, type_hint=hint and not miss)
            images[image_id] = entry
        write_conll(out / f"{split}.txt", sentences)
        split_stats[split] = stats
    write_json_atomic(out / "objects.json", objects)
    summary = _summarise(images, split_stats, settings)
    grid = {"crop": CROP, "grid": GRID, "frame": list(crop_frame(width, height))}
    write_json_atomic(out / "meta.json", {"settings": settings, "complete": True, "summary": summary, "grid": grid,
                                          "images": images})
    return {**summary, "out_dir": str(out), "reused": False, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------ separability probe
def _ridge_fit(x, y, lams):
    """Multi-output ridge regressions with a free bias, one per lam: (W, b) minimising |x W + b − y|² + lam |W|².

    x (N, D) float64, y (N, K) -> list of (W (D, K), b (K,)), one per entry of ``lams``
    """
    mu = x.mean(0)                                                                   # (D,)
    xc = x - mu                                                                      # (N, D)
    ym = y.mean(0)                                                                   # (K,)
    gram = xc.T @ xc                                                                 # (D, N) @ (N, D) -> (D, D)
    rhs = xc.T @ (y - ym)                                                            # (D, N) @ (N, K) -> (D, K)
    out = []
    for lam in lams:
        w = np.linalg.solve(gram + lam * np.eye(x.shape[1]), rhs)                    # (D, D) \ (D, K) -> (D, K)
        out.append((w, ym - mu @ w))
    return out


def _ridge_classifier(xtr, ytr, ncls, lams=(1.0, 10.0, 100.0, 1000.0), folds=3):
    """One-vs-rest ridge classifier; lam chosen by ``folds``-fold cross-validation, then refitted on all rows.

    Returns (W (D, ncls), b (ncls,), lam).
    """
    onehot = np.eye(ncls)[ytr]                                                       # (N, ncls)
    fold = np.arange(len(xtr)) % folds
    correct = np.zeros(len(lams))
    for f in range(folds):
        fit, held = fold != f, fold == f
        for k, (w, b) in enumerate(_ridge_fit(xtr[fit], onehot[fit], lams)):
            correct[k] += ((xtr[held] @ w + b).argmax(1) == ytr[held]).sum()
    lam = lams[int(np.flatnonzero(correct == correct.max())[-1])]                   # ties: the stronger ridge
    (w, b), = _ridge_fit(xtr, onehot, (lam,))
    return w, b, lam


def _auc(pos, neg) -> float:
    """ROC AUC = P(score of a positive > score of a negative), by ranks (Mann-Whitney)."""
    scores = np.concatenate([pos, neg])                                              # (P + N,)
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def separability_probe(data_dir, depth: int = 18, seed: int = 0, batch_size: int = 16,
                       limit: int | None = None) -> dict:
    """How well a random-init ResNet's features separate the scenes: linear probes, NumPy only.

    Features come through the real pipeline: :func:`minimner.vision.images.load_batch`
    (eval transform) -> a random-init (seed ``seed``), eval-mode (BN with its init
    statistics), BN-folded :mod:`minimner.models.resnet` of ``depth`` ->
    :meth:`ResNet.regions` (N, R, C), compressed with log1p. Ridge classifiers
    (one-vs-rest, lam in {1, 10, 100, 1000} by 3-fold cross-validation) are fitted on the
    ``train`` split's images and scored on the ``test`` split's images.

    Parameters
    ----------
    data_dir : folder written by :func:`generate`
    depth : ResNet depth (18 for the demo's encoder)
    seed : seed of the ResNet's random init
    batch_size : images per forward pass
    limit : use at most this many images per split (None: all)

    Returns
    -------
    dict
        ``scene_acc``: 4-way scene type of test images showing a key object, from the
        pooled features ([mean; max] over the R cells, standardised);
        ``scene5_acc``: 5-way, with "none" (no key object) as a class;
        ``object_acc``: 4-way from the mean feature over the key object's cells (what
        an attention map that lands on the object would pool);
        ``cell_auc``: ROC AUC of a per-cell ridge score separating key-object cells
        from all other cells; ``cell_type_acc``: 4-way type of each key-object cell
        from that cell's feature alone; ``n_train``, ``n_test`` (images), ``lams``
        (chosen), ``depth``, ``seconds``.
    """
    from minimner.models.resnet import build
    from minimner.vision.images import load_batch

    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))["images"]
    model = build(depth, rng=np.random.default_rng(seed)).eval().fold_bn()
    feats = {}
    for split in ("train", "test"):
        ids = [i for i, m in meta.items() if m["split"] == split and m["image"]][:limit]
        grids = []
        for k in range(0, len(ids), batch_size):
            chunk = ids[k:k + batch_size]
            x, present, _ = load_batch([data_dir / "images" / f"{i}.jpg" for i in chunk])  # (B, 3, S, S)
            if not present.all():
                raise ValueError(f"{data_dir}: unreadable images among {chunk}")
            grids.append(model.regions(model.features(x)))                                # (B, R, C)
        feats[split] = (ids, np.log1p(np.maximum(np.concatenate(grids).astype(np.float64), 0)))  # (N, R, C)
    (tr_ids, tr), (te_ids, te) = feats["train"], feats["test"]
    ytr = np.array([SCENES.index(meta[i]["scene"]) for i in tr_ids])                  # (N,)
    yte = np.array([SCENES.index(meta[i]["scene"]) for i in te_ids])
    out = {"n_train": len(tr_ids), "n_test": len(te_ids), "depth": depth, "lams": {}}

    ptr = np.concatenate([tr.mean(1), tr.max(1)], 1)                                  # (N, 2C) pooled
    pte = np.concatenate([te.mean(1), te.max(1)], 1)
    mu, sd = ptr.mean(0), ptr.std(0) + 1e-6                                            # (2C,)
    ptr, pte = (ptr - mu) / sd, (pte - mu) / sd
    for name, ncls in (("scene_acc", 4), ("scene5_acc", 5)):
        mtr, mte = ytr < ncls, yte < ncls
        w, b, out["lams"][name] = _ridge_classifier(ptr[mtr], ytr[mtr], ncls)
        out[name] = float(((pte[mte] @ w + b).argmax(1) == yte[mte]).mean())

    def cell_labels(ids):                                  # (N, R): scene index on key cells, 4 elsewhere
        lab = np.full((len(ids), GRID * GRID), 4)
        for n, i in enumerate(ids):
            if meta[i]["scene"] != "none":
                lab[n, meta[i]["cells"]] = SCENES.index(meta[i]["scene"])
        return lab.ravel()
    def object_mean(ids, grid):                            # (M, C): mean feature over each key object's cells
        return np.stack([grid[n, meta[i]["cells"]].mean(0) for n, i in enumerate(ids) if meta[i]["cells"]])
    otr, ote = object_mean(tr_ids, tr), object_mean(te_ids, te)
    mu, sd = otr.mean(0), otr.std(0) + 1e-6                                            # (C,)
    w, b, out["lams"]["object_acc"] = _ridge_classifier((otr - mu) / sd, ytr[ytr < 4], 4)
    out["object_acc"] = float(((((ote - mu) / sd) @ w + b).argmax(1) == yte[yte < 4]).mean())

    ctr, cte = cell_labels(tr_ids), cell_labels(te_ids)                                # (N·R,)
    xtr, xte = tr.reshape(-1, tr.shape[-1]), te.reshape(-1, te.shape[-1])              # (N·R, C)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6                                            # (C,)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w, b, out["lams"]["cell_auc"] = _ridge_classifier(xtr, (ctr < 4).astype(int), 2)
    score = xte @ (w[:, 1] - w[:, 0]) + (b[1] - b[0])                                   # (N·R,)
    out["cell_auc"] = _auc(score[cte < 4], score[cte == 4])
    w, b, out["lams"]["cell_type_acc"] = _ridge_classifier(xtr[ctr < 4], ctr[ctr < 4], 4)
    out["cell_type_acc"] = float(((xte[cte < 4] @ w + b).argmax(1) == cte[cte < 4]).mean())
    out["seconds"] = time.perf_counter() - t0
    return out
