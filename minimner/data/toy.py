"""A small, synthetic, tweet-like NER data set embedded in the package.

It exists so the demo, the tutorials and the tests can run end to end on a fresh
machine without the real Twitter-2015/2017 data (which is never shipped). The
sentences are generated from templates and lists of public names with a seeded
generator: they teach the mechanics, not the task's difficulty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minimner.data.conll import Sentence, write_conll

__all__ = ["toy_sentences", "write_toy_dataset"]

_ENTITIES = {
    "PER": ["Taylor Swift", "LeBron James", "Barack Obama", "Emma Watson", "Elon Musk", "Serena Williams",
            "Justin Bieber", "Lionel Messi", "Adele", "Kanye West", "Lady Gaga", "Tom Hanks"],
    "LOC": ["London", "New York", "Paris", "Tokyo", "Chicago", "Texas", "Berlin", "Sydney", "Boston",
            "Los Angeles", "Madrid", "Toronto"],
    "ORG": ["Apple", "NASA", "Google", "Lakers", "BBC", "Microsoft", "Real Madrid", "Starbucks", "CNN",
            "Red Cross", "Nike", "Warner Bros"],
    "MISC": ["Super Bowl", "iPhone", "Olympics", "Grammys", "Christmas", "World Cup", "Coachella",
             "Star Wars", "Halloween", "Oscars"],
}

_TEMPLATES = [
    "RT @user : {PER} spotted in {LOC} today !",
    "{ORG} announces new {MISC} plans",
    "Watching the {MISC} with friends in {LOC} #fun",
    "{PER} joins {ORG} , fans in {LOC} react",
    "Can't believe {PER} said that about {ORG} lol",
    "Heading to {LOC} for the {MISC} tomorrow",
    "{ORG} shares drop after {PER} leaves",
    "so proud of {PER} ! #{MISC}",
    "Traffic is terrible in {LOC} again",
    "Best coffee in {LOC} is at {ORG}",
    "{PER} and {PER} at the {MISC} last night",
    "just finished my shift , time to sleep",
]


def _fill(template: str, gen: np.random.Generator) -> tuple[list[str], list[str]]:
    words, tags = [], []
    for token in template.split():
        prefix = ""
        if token.startswith("#{"):
            prefix, token = "#", token[1:]
        if token.startswith("{") and token.endswith("}"):
            etype = token[1:-1]
            names = _ENTITIES[etype]
            parts = names[gen.integers(len(names))].split()
            if prefix:  # a hashtag glues the name into one word
                parts = ["#" + "".join(parts)]
            words += parts
            tags += [f"B-{etype}"] + [f"I-{etype}"] * (len(parts) - 1)
        else:
            words.append(token)
            tags.append("O")
    return words, tags


def toy_sentences(n: int, seed: int = 0, split: str = "train") -> list[Sentence]:
    """``n`` synthetic labelled tweets (deterministic for a given ``seed``)."""
    gen = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words, tags = _fill(_TEMPLATES[gen.integers(len(_TEMPLATES))], gen)
        out.append(Sentence(words=words, tags=tags, image_id=f"toy_{split}_{i}"))
    return out


def write_toy_dataset(folder, n_train: int = 160, n_valid: int = 40, n_test: int = 40, seed: int = 0) -> Path:
    """Write ``train.txt`` / ``valid.txt`` / ``test.txt`` of the toy set into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        write_conll(folder / f"{split}.txt", toy_sentences(n, seed=seed * 10 + k, split=split))
    return folder
