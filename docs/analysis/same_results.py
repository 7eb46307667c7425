"""Whether two runs of one matrix gave the same numbers: every cell's metrics, intervals, counts,
curves, movement, eval spend, budget charges and status, and its cost in tokens, FLOPs and
rollouts, compared exactly. Wall times (``cost.wall_seconds`` and the budget's
``spent.wall_seconds``) and memory are measurements of the machine, not results, and are left
out. Exit 0 when every field is equal, 1 otherwise (each difference named).

With ``--intervals`` it asks the weaker question for runs that need not agree to the bit (a
changed code path, one seed): per cell, how many metrics are identical, and which differ by
more than 1.96 joint standard errors, z = |a - b| / sqrt(se_a^2 + se_b^2) (each metric against
its own bootstrap interval; this does not compare methods with each other), over the cells
both runs have. Exit 1 when any metric does. The PPO cell before and after the memory fixes:

    python docs/analysis/same_results.py --intervals runs/ppo_before runs/smollm2

The check that the memory options left the micro-world alone, the quickstart before them
against the same preset after them (each run from its own checkout, with its own cache):

    python -m bench.cli run quickstart --out /tmp/qs_base --no-progress   # in a worktree before the change
    alignbench run quickstart --out /tmp/qs_head --no-progress
    python docs/analysis/same_results.py /tmp/qs_base /tmp/qs_head
"""

import json
import math
import sys
from pathlib import Path

from bench.record import SPENT_COSTS

FIELDS = ("metrics", "uncertainty", "n", "curves", "movement", "eval_spend", "budget", "status")
COSTS = (*SPENT_COSTS, "eval_flops", "rollouts")  # what the cell spent, not the machine's time


def cells(out: str) -> dict[tuple, dict]:
    rows = map(json.loads, Path(out, "results.jsonl").read_text().splitlines())
    return {(r["method"], r["seed"], json.dumps(r["point"], sort_keys=True)): r for r in rows}


def comparable(row: dict, field: str):
    value = row[field]
    if field == "budget":  # its wall-time charge is the machine's speed
        spent = {u: x for u, x in value["spent"].items() if u != "wall_seconds"}
        value = {**value, "spent": spent}
    return value


def differences(a: dict, b: dict) -> list[str]:
    out = []
    for f in FIELDS:
        va, vb = comparable(a, f), comparable(b, f)
        if va == vb:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            keys = sorted(k for k in va.keys() | vb.keys() if va.get(k) != vb.get(k))
            out.append(f"{f}: {', '.join(map(str, keys[:8]))}")
        else:
            out.append(f)
    out += [f"cost.{c}: {a['cost'][c]} against {b['cost'][c]}" for c in COSTS
            if a["cost"][c] != b["cost"][c]]
    return out


def beyond_noise(a: dict, b: dict) -> tuple[int, int, list[tuple[float, str, float, float]]]:
    """Identical metrics, metrics with an interval on both sides, and each of those metrics'
    (z, name, a, b), largest z first."""
    ma, mb, ua, ub = a["metrics"], b["metrics"], a["uncertainty"], b["uncertainty"]
    same = sum(ma[k] == mb.get(k) for k in ma)
    zs = []
    for k in ma.keys() & mb.keys():
        if ua.get(k) is None or ub.get(k) is None or ma[k] is None or mb[k] is None:
            continue
        se = math.hypot(ua[k], ub[k])
        z = abs(ma[k] - mb[k]) / se if se > 0 else (0.0 if ma[k] == mb[k] else math.inf)
        zs.append((z, k, ma[k], mb[k]))
    return same, len(zs), sorted(zs, reverse=True)


def exact(a: dict, b: dict) -> int:
    """Every field of every cell equal: the number of differences, each printed."""
    if a.keys() != b.keys():
        print(f"cells in one run only: {sorted(a.keys() ^ b.keys())}")
        return 1
    differ = 0
    for key in sorted(a):
        for d in differences(a[key], b[key]):
            differ += 1
            print(f"{key[0]} seed={key[1]} {key[2]}: {d}")
    print(f"{len(a)} cells, {len(a) * (len(FIELDS) + len(COSTS))} fields compared, "
          f"{differ} differ")
    return differ


def within_intervals(a: dict, b: dict) -> int:
    """Over the cells both runs have (one may be a --methods subset of the other): the number
    of metrics beyond 1.96 joint SE, each cell's count printed."""
    if a.keys() != b.keys():
        print(f"cells in one run only: {sorted(a.keys() ^ b.keys())}")
    out = 0
    for key in sorted(a.keys() & b.keys()):
        same, n, zs = beyond_noise(a[key], b[key])
        far = [z for z in zs if z[0] > 1.96]
        out += len(far)
        top = ", ".join(f"{k} {x:.4g} against {y:.4g} (z={z:.2f})" for z, k, x, y in zs[:1])
        print(f"{key[0]} seed={key[1]} {key[2]}: {same} of {len(a[key]['metrics'])} metrics "
              f"identical; {len(far)} of {n} with intervals beyond 1.96 joint SE"
              + (f"; largest {top}" if top else ""))
        for z, k, x, y in far:
            print(f"    {k}: {x:.4g} against {y:.4g}, z={z:.2f}")
    return out


def main(first: str, second: str, intervals: bool = False) -> int:
    compare = within_intervals if intervals else exact
    return 1 if compare(cells(first), cells(second)) else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--intervals"]
    if len(args) != 2:
        sys.exit("usage: python docs/analysis/same_results.py [--intervals] RUN_A RUN_B "
                 "(two output folders)")
    sys.exit(main(*args, intervals="--intervals" in sys.argv[1:]))
