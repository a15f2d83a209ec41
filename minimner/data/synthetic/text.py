"""The tweets of the synthetic set: invented names, type-neutral and typed templates, one tweet and its picture's plan."""
from __future__ import annotations

import numpy as np

from minimner.data.synthetic.scenes import SCENES, TYPES

__all__ = ["ENTITY_NAMES", "tweet"]

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
#: The names of the type-neutral (picture-decided) entities: a small pool, so that each name appears in many
#: training tweets with all four types and the text cannot learn the training tweets' types by heart
#: (with the whole pool most type-neutral tweets are unique and a tagger memorises them instead of reading
#: the picture; measured in the README's demo section).
AMBIGUOUS_NAMES = ENTITY_NAMES[:16]

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


def _entity(form: str, rng: np.random.Generator, pool=None) -> list[str]:
    """The words of an entity for a form: ``*`` = a name, ``**`` = two names, other words literal.

    ``pool``: the names to use (default :data:`ENTITY_NAMES`); the draws are the same whatever the
    pool (an index into :data:`ENTITY_NAMES`, taken modulo the pool's size).
    """
    pool = ENTITY_NAMES if pool is None else pool
    words = []
    for part in form.split():
        if part == "**":
            a, b = rng.choice(len(ENTITY_NAMES), size=2, replace=False)
            words += [pool[a % len(pool)], pool[b % len(pool)]]
        elif "*" in part:
            words.append(part.replace("*", pool[rng.integers(len(ENTITY_NAMES)) % len(pool)]))
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


def tweet(rng: np.random.Generator, p_ambiguous: float, p_typed: float, p_misleading: float):
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
        gold = TYPES[rng.integers(4)]
        ent = _entity("**" if rng.random() < 0.3 else "*", rng, AMBIGUOUS_NAMES)
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
        scene = TYPES[(TYPES.index(gold) + 1 + rng.integers(3)) % 4] if misleading else gold
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
