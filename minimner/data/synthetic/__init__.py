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
* **Ambiguous tweets** (share ``p_ambiguous``, 0.7 by default) put a one- or two-word
  name into a *type-neutral* template ("can't stop thinking about Velova today", "Yadux
  is everywhere this week #wow"). Their names come from a small pool
  (:data:`~minimner.data.synthetic.text.AMBIGUOUS_NAMES`, 16 names), so each name
  appears in many tweets with every type: a tagger cannot learn the training tweets'
  types by heart from their text. The type is drawn uniformly, independently of name
  and template, so the text alone gives a chance-level guess (1/4). The **picture
  decides**: PER -> a person (head, hair, body; varied skin and clothes colours),
  LOC -> a place (a skyline with lit window grids, or a street map with water and a
  pin), ORG -> a logo (a bold outlined badge, saturated, with a striped field and
  stroke letters on a band), MISC -> an event or product (a gold trophy before a red
  curtain, a football in a floodlit night stadium, or a fireworks poster).
* **Text-decidable tweets** (share ``p_typed``, 0.2) use typed context ("flying to Norulo
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
from minimner.data.synthetic.generator import DEFAULT_SIZES, SPLITS, VERSION, generate
from minimner.data.synthetic.scenes import CELL, GRID, SCENES, TYPES, covered_cells, crop_frame
from minimner.data.synthetic.text import ENTITY_NAMES

__all__ = ["generate", "DEFAULT_SIZES", "VERSION", "SPLITS", "SCENES", "TYPES", "ENTITY_NAMES", "crop_frame",
           "covered_cells", "GRID", "CELL"]
