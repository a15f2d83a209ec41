"""Reference solutions of tutorial 06 (converters)."""
import json
import struct

import numpy as np

_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]                    # header length, little-endian u64
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dt = np.dtype(_DTYPES[info["dtype"]])
        out[name] = np.frombuffer(data[lo:hi], dtype=dt).reshape(info["shape"]).astype(dt.newbyteorder("="))
    return out


def convert_state_dict(source, rules, expected):
    out = {}
    for key, value in source.items():
        rule = next(((old, new) for old, new in rules if key.startswith(old)), None)
        if rule is None:
            raise ValueError(f"unknown key {key!r}: no rule renames it")
        if rule[1] is None:
            continue                                             # dropped on purpose
        name = rule[1] + key[len(rule[0]):]
        if name not in expected:
            raise ValueError(f"key {key!r} becomes {name!r}, which the model does not have")
        if tuple(value.shape) != tuple(expected[name]):
            raise ValueError(f"{key!r} -> {name!r}: shape {tuple(value.shape)}, the model expects {tuple(expected[name])}")
        out[name] = value
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(f"missing keys: {missing}")
    return out


def wordpiece(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]                                     # stuck: the whole word is unknown
        pieces.append(piece)
        start = end
    return pieces
