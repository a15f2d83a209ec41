"""Augmentation-table benchmark: the Twitter-2015 + Twitter-2017 vocabulary against the 400k GloVe table.

Work: every distinct token of ``twitter2015/{train,valid,test}.txt`` and
``twitter2017/{train,valid,test}.txt`` (those present), looked up in GloVe 6B
50-d (400000 × 50, the converted offline default) with the ``auto`` case policy;
for every distinct lexicon row found, its exact top-4 cosine neighbours (self
excluded), softmax weights and weighted sum (docs/augmentation.md §1); a seeded random vector
for every out-of-lexicon word; then the cached ``.npz`` is written (atomically)
and read back.

Timed (wall clock, ``time.perf_counter``):

* ``vocabulary``: reading the CoNLL files into the sorted vocabulary;
* ``lexicon load``: reading the converted ``.npz`` (and its content fingerprint);
* ``table build``: :func:`minimner.lexicon.augment.build_table` (lookup, the
  chunked exact search on NumPy, weights, sums, OOV vectors) — the acceptance
  number ("well under a minute on the 2-core machine");
* ``cache write`` / ``cache read``.

Reference in the same run: the same neighbour search written the way a PyTorch
user would (``torch.topk`` over chunked ``U[q] @ Uᵀ`` on CPU, the same chunk size,
softmax and weighted sum), timed right after ours; the ratio is minimner /
torch. Before reporting, the script checks that the two agree (similarity at
every rank to 2e-6; identical neighbour ids except where the float32
similarities of two candidates tie within 2e-6) and exits with status 1 if not.

Peak memory: minimner's peak traced memory during ``build_table``
(tracemalloc sees NumPy allocations; a separate, untimed run) and the process's
peak RSS.

Usage::

    python benchmarks/augment_table.py              # full run → benchmarks/results/augment_table.{json,md}
    python benchmarks/augment_table.py --quick      # a 2000-word sample of the vocabulary, no files written
    python benchmarks/augment_table.py --data DIR --lexicon FILE.npz
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# benchmarks/_harness.py (this folder is on sys.path); importing it puts the repository root there too
from _harness import ROOT, add_common, apply_threads, machine, machine_line, publish, traced_peak_mib

from minimner.lexicon.augment import AugmentationTable, build_table, collect_vocabulary
from minimner.lexicon.io import load_lexicon
from minimner.lexicon.neighbours import _DEFAULT_CHUNK_BYTES, _chunk_rows, resolve_words

TOL = 2e-6


def data_files(data: Path) -> list[Path]:
    files = [data / ds / f"{split}.txt" for ds in ("twitter2015", "twitter2017")
             for split in ("train", "valid", "test")]
    return [f for f in files if f.is_file()]


def torch_reference(lexicon, qids, k, chunk_rows):
    """The same search with torch.topk: ids (Q, k), sims (Q, k), weights, sums (NumPy)."""
    import torch

    raw = torch.from_numpy(lexicon.vectors)                                   # (V, E)
    unit = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-30)               # (V, E)
    q_all = torch.from_numpy(qids)
    ids, sims = [], []
    with torch.no_grad():
        for s in range(0, len(qids), chunk_rows):
            q = q_all[s:s + chunk_rows]
            S = unit[q] @ unit.T                                               # (n, V)
            S[torch.arange(len(q)), q] = -float("inf")
            v, i = torch.topk(S, k, dim=1)                                     # (n, k) sorted descending
            ids.append(i)
            sims.append(v)
        ids, sims = torch.cat(ids), torch.cat(sims)
        w = torch.softmax(sims, dim=1)                                         # (Q, k)
        vec = torch.einsum("qk,qke->qe", w, raw[ids])                          # (Q, E)
    return ids.numpy(), sims.numpy(), w.numpy(), vec.numpy()


def check_agreement(table, ref, rows_of_words, uniq):
    """Our table rows vs the torch search (tie-aware on ids). Returns (#near-tie rows, max |Δ| of sums)."""
    ids_t, sims_t, _, vec_t = ref
    ours_rows = np.array([rows_of_words[j] for j in uniq], dtype=np.int64)  # a vocabulary row per lexicon id
    ids_o, sims_o = table.neighbour_ids[ours_rows], table.similarities[ours_rows]
    if not np.allclose(sims_o, sims_t, atol=TOL, rtol=0):
        bad = np.argmax(np.abs(sims_o - sims_t).max(axis=1))
        raise AssertionError(f"similarities differ for lexicon row {uniq[bad]}: {sims_o[bad]} vs {sims_t[bad]}")
    # The similarities agree rank by rank to TOL, so where the ids differ at a rank the two picks have
    # similarities within TOL of each other: a float32 near-tie (or an exact tie broken differently,
    # torch.topk does not promise the lower index). Those rows are counted, not failed.
    differ = np.any(ids_o != ids_t, axis=1)
    near = int(differ.sum())
    same = ~differ
    vec_diff = float(np.abs(table.vectors[ours_rows][same] - vec_t[same]).max()) if same.any() else 0.0
    if vec_diff > 1e-4:
        raise AssertionError(f"weighted sums differ by {vec_diff:.2e}")
    return near, vec_diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MINIMNER_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--lexicon", type=Path, default=None,
                    help="lexicon file (default: the converted GloVe 6B 50-d, made on first use)")
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    add_common(ap, quick="a 2000-word sample of the vocabulary; writes nothing", threads="torch")
    args = ap.parse_args(argv)

    files = data_files(args.data)
    if not files:
        print(f"no Twitter data under {args.data} (set --data or MINIMNER_DATA)", file=sys.stderr)
        return 2
    times = {}
    t0 = time.perf_counter()
    vocab = collect_vocabulary(files)
    times["vocabulary"] = time.perf_counter() - t0
    if args.quick:
        vocab = vocab[::max(1, len(vocab) // 2000)][:2000]  # a spread sample

    t0 = time.perf_counter()
    if args.lexicon is None:
        from minimner.lexicon.glove import ensure_default_lexicon
        lex_path = ensure_default_lexicon(verbose=True)
    else:
        lex_path = args.lexicon
    lex = load_lexicon(lex_path, progress=False)
    lex.fingerprint()
    times["lexicon load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = build_table(vocab, lex, k=args.k)
    times["table build"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        p = table.save(Path(tmp) / "aug.npz")
        times["cache write"] = time.perf_counter() - t0
        size = p.stat().st_size
        t0 = time.perf_counter()
        AugmentationTable.load(p)
        times["cache read"] = time.perf_counter() - t0

    ids, _ = resolve_words(lex, vocab, "auto")
    rows_of = {}
    for r, j in enumerate(ids.tolist()):
        if j >= 0:
            rows_of.setdefault(j, r)
    uniq = np.array(sorted(rows_of), dtype=np.int64)
    result = {"benchmark": "augment_table", "quick": args.quick, "machine": machine(torch=True),
              "data_files": [str(f.relative_to(args.data)) for f in files], "lexicon": str(lex_path),
              "lexicon_words": len(lex), "dim": lex.dim, "k": args.k, "vocabulary": len(vocab),
              "in_lexicon": int(table.in_lexicon.sum()), "lexicon_rows_searched": int(uniq.size),
              "cache_bytes": size, "seconds": {k: round(v, 3) for k, v in times.items()}}

    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            apply_threads(args)
            rows = _chunk_rows(len(lex), _DEFAULT_CHUNK_BYTES)
            t0 = time.perf_counter()
            ref = torch_reference(lex, uniq, args.k, rows)
            t_ref = time.perf_counter() - t0
            near, vdiff = check_agreement(table, ref, rows_of, uniq)
            result["torch_reference"] = {"seconds": round(t_ref, 3),
                                         "ratio_minimner_over_torch": round(times["table build"] / t_ref, 3),
                                         "near_tie_rows": near, "max_abs_diff_weighted_sums": vdiff,
                                         "chunk_rows": rows, "threads": torch.get_num_threads()}

    result["peak_traced_build_mib"] = round(traced_peak_mib(lambda: build_table(vocab, lex, k=args.k)), 1)
    result["peak_rss_process_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    publish(result, markdown(result), "augment_table", args.out, write=not (args.quick or args.no_write))
    return 0


def markdown(r: dict) -> str:
    m, s = r["machine"], r["seconds"]
    lines = [f"# Augmentation table benchmark (Twitter-2015 + Twitter-2017 vocabulary, {r['lexicon_words']}-word "
             f"lexicon, k = {r['k']})", "",
             f"Vocabulary: {r['vocabulary']} words from {', '.join(r['data_files'])}; {r['in_lexicon']} found in "
             f"the lexicon (case policy auto), {r['lexicon_rows_searched']} distinct lexicon rows searched "
             f"exactly against all {r['lexicon_words']} × {r['dim']} vectors.", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s.items()]
    t = r.get("torch_reference")
    if t:
        lines += ["", f"PyTorch reference (torch.topk over the same chunked products, {t['threads']} threads): "
                      f"{t['seconds']:.2f} s; ratio minimner table build / torch search = "
                      f"{t['ratio_minimner_over_torch']:.2f}. Agreement checked: {t['near_tie_rows']} rows differ "
                      f"only by float32 near-ties; max |Δ| of the weighted sums elsewhere "
                      f"{t['max_abs_diff_weighted_sums']:.1e}."]
    lines += ["", f"Peak traced memory of `build_table` (tracemalloc): {r['peak_traced_build_mib']} MiB; "
                  f"peak RSS of the whole process: {r['peak_rss_process_mib']} MiB. Cached table: "
                  f"{r['cache_bytes'] / 2**20:.1f} MiB.", "",
              machine_line(m, torch_threads=False)]  # the reference's threads are in its own sentence
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
