"""MGCMT parity table: minimner's NumPy model against the test-only torch MSCMT and the authors' own module.

    python benchmarks/mgcmt_parity.py                               # torch reference only
    python benchmarks/mgcmt_parity.py --original PATH_TO_IIE4MNER   # + the authors' module (never committed)

Runs the comparisons of tests/models/test_mgcmt_parity.py (same weights moved by key through
``MGCMT.from_original``, same inputs, eval mode, float32 both sides) for every flag set, and
writes the worst differences per flag set to benchmarks/results/mgcmt_parity.{md,json}:
main / aux emissions (max |Δ|), loss (relative), the worst per-tensor gradient (max |Δ| / max |g|)
and whether the Viterbi paths are equal. The test asserts the tolerances; this script records
the figures.
"""
from __future__ import annotations

import argparse
import os
import sys

import _harness as H


def markdown(result: dict) -> str:
    """The report of a result record (what publish writes as mgcmt_parity.md)."""
    lines = ["# MGCMT parity (float32, eval mode)", "",
             "Same random weights (moved by key through `MGCMT.from_original`) and inputs on both sides: "
             "BERT H=64, 4 heads, 1 layer, F=128; B=3, T=10 (lengths 10/7/4); 7×7×2048 grid; 5 object slots, "
             "one row without objects; Vc=15. Gradient: max |Δ| / max |g| per tensor, worst tensor shown "
             "(attention key biases, whose exact gradient is 0, are checked against the key weights' scale). "
             "Tolerances asserted by tests/models/test_mgcmt_parity.py: emissions 1e-5, loss 1e-6, "
             "gradients 1e-4.", "",
             "| against | flag set | main | aux | loss (rel) | worst grad (rel) | worst tensor | Viterbi equal |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for f in result["rows"]:
        lines.append(f"| {f['against']} | {f['flags']} | {f['main']:.2e} | {f['aux']:.2e} | {f['loss']:.2e} | "
                     f"{f['grad']:.2e} | `{f['grad_key']}` | {'yes' if f['paths_equal'] else 'NO'} |")
    lines += ["", "Command: `python benchmarks/mgcmt_parity.py --original PATH_TO_IIE4MNER`.", "",
              H.machine_line(result["machine"]) + "\n"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--original", metavar="PATH", default=None,
                   help="an IIE4MNER checkout (LiuPeiP-CS/IIE4MNER) to compare with the authors' module too")
    p.add_argument("--out", default=str(H.RESULTS), help="results folder (default benchmarks/results)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.original:
        os.environ["MINIMNER_IIE4MNER"] = args.original           # read when the test helpers are imported
    sys.path.insert(0, str(H.ROOT))
    from tests.models import test_mgcmt_parity as P

    rows = []
    for name, flags in P.REF_SETS.items():
        rows.append(("torch reference", name, P.run_torch_reference(name, flags)))
    if args.original:
        for name, flags in P.FLAG_SETS.items():
            rows.append(("authors' module", name, P.run_original(name, flags)))
        rows.append(("authors' module", "ffusion_method=5 (H=768, 12 heads)",
                     P.run_original("ffusion_method=5", {"ffusion_method": 5}, cfg=P.H768)))
    else:
        print("no --original given: the authors' module is not compared (pass an IIE4MNER checkout)")
    result = {"rows": [{"against": w, "flags": n, **f} for w, n, f in rows], "machine": H.machine(torch=True)}
    H.publish(result, markdown(result), "mgcmt_parity", args.out, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
