"""The judge's numbers on the items an adaptive run still thinks on, for the run and for a reference (the base
in think mode) on the *same* items: a run that answers easy items directly keeps only the hard ones to think
on, so its overall consistency rate mixes a change of reasoning with a change of items.

    python benchmarks/paired_think.py --ref runs/eval-base-think/predictions.json \
        --run runs/eval-default-adaptive/predictions.json [--out paired.json]

Both files are ``evaluate --judge oracle`` predictions of the same set (the run's in any mode).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from audio_thinker.evaluate import compute_metrics

KEYS = ("accuracy", "consistency_rate", "mean_think_quality", "right_inconsistent_rate", "n_judged")


def paired(ref: Sequence[dict], run: Sequence[dict]) -> dict:
    """``{"n_items", "n_run_thinks", "run", "ref", "by_sub_category"}``: both sides' judge metrics over the
    items where both outputs are judged think traces."""
    by_id = {r["id"]: r for r in ref}
    missing = [r["id"] for r in run if r["id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} items of the run are not in the reference (first: {missing[0]})")
    # judged think traces on both sides (the judge leaves direct answers and unreadable outputs at None)
    pairs = [(r, by_id[r["id"]]) for r in run if r.get("consistent") is not None]
    pairs = [(a, b) for a, b in pairs if b.get("consistent") is not None]
    if not pairs:
        raise ValueError("no judged think traces on both sides (evaluate with --judge oracle)")
    run_m, ref_m = compute_metrics([a for a, _ in pairs]), compute_metrics([b for _, b in pairs])
    subs = sorted(run_m["by_sub_category"])
    return {
        "n_items": len(run),
        "n_run_thinks": len(pairs),
        "run": {k: run_m[k] for k in KEYS},
        "ref": {k: ref_m[k] for k in KEYS},
        "by_sub_category": {
            s: {
                side: {k: m["by_sub_category"][s][k] for k in KEYS}
                for side, m in (("run", run_m), ("ref", ref_m))
            }
            for s in subs
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--ref", required=True, help="predictions.json of the reference (e.g. the base, think mode)"
    )
    p.add_argument("--run", required=True, help="predictions.json of the run, on the same set")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    try:
        ref, run = (json.loads(Path(f).read_text()) for f in (args.ref, args.run))
        result = paired(ref, run)
    except KeyError as e:
        sys.exit(f"paired_think: a prediction lacks the field {e} (evaluate's predictions.json expected)")
    except (OSError, ValueError, TypeError) as e:
        sys.exit(f"paired_think: {e}")
    print(f"{result['n_run_thinks']} of {result['n_items']} items thought on by the run")
    print(f"{'':24s}" + "".join(f"{k:>26s}" for k in KEYS))
    for name, m in [("run", result["run"]), ("ref", result["ref"])] + [
        (f"{s} · {side}", v[side]) for s, v in result["by_sub_category"].items() for side in ("run", "ref")
    ]:
        print(f"{name:24s}" + "".join(f"{m[k] if m[k] is not None else '-':>26}" for k in KEYS))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
