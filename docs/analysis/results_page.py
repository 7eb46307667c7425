"""docs/results.md and docs/results.json from one recorded quickstart output folder.

    alignbench run quickstart --out runs/quickstart-recorded --no-progress
    python docs/analysis/results_page.py runs/quickstart-recorded

Every results figure the README and docs/ quote comes from here. The numbers are the report's
own (``reports.build.collect``: the same means, intervals over seeds, paired differences and
ranking the HTML report and report.md show), so the page and the report cannot disagree. The
script writes docs/results.md (the run's facts once at the top, then the tables), docs/
results.json (every number the pages may quote) and copies the README's small table between its
``<!-- results-table -->`` and ``<!-- /results-table -->`` comments. tests/test_results_docs.py
checks that every results figure in README.md and docs/*.md is one of results.json's.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reports.build import collect  # noqa: E402  (the report's own values)
from reports.text import fmt as _fmt  # noqa: E402  (and its number format)

# the README's table: (column title, metric); win-rate with its interval, the rest as means
README_COLUMNS = [
    ("win-rate vs SFT", "win_rate.vs_sft"),
    ("toxic fraction", "toxicity.toxic_fraction"),
    ("myth questions answered truly (greedy)", "truthfulqa.gen_true.Adversarial"),
    ("TruthfulQA MC2, myths", "truthfulqa.mc2.Adversarial"),
]
# results.md's fuller tables: each eval's headline metrics with intervals and paired Δ
PAGE_METRICS = [
    "win_rate.vs_sft", "win_rate.lc_vs_sft", "win_rate.vs_base",
    "toxicity.toxic_fraction", "toxicity.mean",
    "truthfulqa.mc1", "truthfulqa.mc2", "truthfulqa.gen_true", "truthfulqa.gen_false",
    "truthfulqa.mc1.Adversarial", "truthfulqa.mc2.Adversarial", "truthfulqa.gen_true.Adversarial",
    "labeler_agreement.inter_labeler", "labeler_agreement.ai_judge_vs_majority",
    "labeler_agreement.rm_vs_gold", "kl.k1", "kl.gold_drop",
]
README_START, README_END = "<!-- results-table -->", "<!-- /results-table -->"


def results_id(out: Path) -> str:
    """What names a run's results whatever rewrote its files: the sha256 of every cell's key
    and metrics, in key order. docs/analysis/screenshots.py records it beside its pictures."""
    rows = map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())
    cells = sorted((r["key"], r.get("metrics") or {}) for r in rows)
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()


def run_facts(d: dict) -> dict:
    """The recorded run's commit, machine and date, from its cells' provenance."""
    recs = d["ok"]
    prov = d["provenance"]
    started = sorted(p["started"] for r in recs if (p := r.get("provenance", {})).get("started"))
    seconds = sum((r.get("provenance") or {}).get("seconds", 0.0) for r in d["records"])
    peaks = [(r.get("cost") or {}).get("peak_rss_bytes") for r in recs]
    return {
        "matrix": d["title"], "cells": len(d["records"]), "cells_ok": len(recs),
        "seeds": d["seeds"], "commit": prov.get("git_commit"),
        "uncommitted_changes": prov.get("git_dirty"), "code_version": prov.get("code_version"),
        "cpu_count": prov.get("cpu_count"), "cpu_model": prov.get("cpu_model") or "not recorded",
        "platform": prov.get("platform"), "python": prov.get("python"),
        "torch": (prov.get("packages") or {}).get("torch"),
        "started": started[0] if started else None, "cell_seconds": round(seconds, 1),
        "peak_rss_gb": round(max(p for p in peaks if p) / 1e9, 2) if any(peaks) else None,
    }


def interval(cell: dict | None) -> dict | None:
    if not cell or cell.get("mean") is None:
        return None
    out = {"mean": _fmt(cell["mean"]), "lo": _fmt(cell["lo"]), "hi": _fmt(cell["hi"])}
    if cell.get("population") == "seeds":  # over seeds on these prompts only
        out["seeds_only"] = True
    if cell.get("delta"):
        dl = cell["delta"]
        out["delta"] = {"mean": f"{dl['mean']:+.3f}", "lo": f"{dl['lo']:+.3f}",
                        "hi": f"{dl['hi']:+.3f}", "resolved": dl["significant"]}
    return out


def values(d: dict) -> dict:
    """results.json: each row's quoted metrics, the ranking, the A/A checks, the run's facts;
    numbers as the report prints them (strings, three decimals)."""
    rows = {row["label"]: {m: v for m in PAGE_METRICS if (v := interval(row["cells"].get(m)))}
            for row in d["rows"]}
    rk = d.get("ranking") or {}
    ranking = [{"row": r.get("label") or r.get("row"),
                "p_first": _fmt(r.get("p_first"), 2) if r.get("p_first") is not None else None}
               for r in rk.get("rows", [])]
    return {"run": run_facts(d), "reference": d["reference"], "rows": rows,
            "ranking": ranking,
            "aa_checks": [{"row": c["row"], "metric": c["metric"], "ok": c["ok"],
                           "mean": _fmt(c["mean"]), "lo": _fmt(c["lo"]), "hi": _fmt(c["hi"])}
                          for c in d["aa_checks"]]}


def cell_text(v: dict | None, with_interval: bool = True, with_delta: bool = False) -> str:
    if v is None:
        return "–"
    s = v["mean"] + (f" [{v['lo']}, {v['hi']}]{'†' if v.get('seeds_only') else ''}"
                     if with_interval and v["lo"] != "–" else "")
    if with_delta and v.get("delta"):
        dl = v["delta"]
        s += f"; Δ {dl['mean']} [{dl['lo']}, {dl['hi']}]{'*' if dl['resolved'] else ''}"
    return s


def readme_table(vals: dict) -> list[str]:
    lines = ["| method | " + " | ".join(t for t, _ in README_COLUMNS) + " |",
             "| --- " * (len(README_COLUMNS) + 1) + "|"]
    for label, row in vals["rows"].items():
        cells = [cell_text(row.get(m), with_interval=(i == 0))
                 for i, (_, m) in enumerate(README_COLUMNS)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for metric, what in (("win_rate.vs_sft", "win-rate"), ("toxicity.toxic_fraction",
                                                          "toxic fraction")):
        deltas = [f"{label} {d['mean']} [{d['lo']}, {d['hi']}]"
                  + ("" if d["resolved"] else " (not resolved)")
                  for label, row in vals["rows"].items()
                  if (d := (row.get(metric) or {}).get("delta"))]
        if deltas:
            lines += ["", textwrap.fill(f"Paired against {vals['reference']} by seed and prompt, "
                                        f"{what}: "
                                        + ", ".join(deltas) + ".", 96,
                                        break_on_hyphens=False)]
    return lines


def page(vals: dict) -> str:
    f = vals["run"]
    wrap = lambda text: textwrap.fill(text, 96, break_on_hyphens=False)  # noqa: E731
    out = ["# Results", "",
           wrap("Every results figure in the README and in docs/ is on this page, generated by "
           "`python docs/analysis/results_page.py OUT` from one recorded quickstart output "
           "folder (`alignbench run quickstart --out OUT --no-progress`); "
           "`tests/test_results_docs.py` checks the quotes against `docs/results.json`. Do not "
           "edit it by hand."), "",
           "<!-- run-facts -->",
           "The recorded run:", "",
           f"- matrix `{f['matrix']}`, {f['cells_ok']} of {f['cells']} cells ok, seeds "
           f"{', '.join(map(str, f['seeds']))}",
           f"- commit `{f['commit']}`" + (" with uncommitted changes in the working tree"
                                          if f["uncommitted_changes"] else "")
           + f" (code version `{f['code_version']}`)",
           f"- machine: {f['cpu_count']} cores, {f['cpu_model']}; {f['platform']}; "
           f"Python {f['python']}, torch {f['torch']}",
           f"- started {f['started']}; {f['cell_seconds']} s in its cells' own wall time; "
           f"peak resident memory of a cell {f['peak_rss_gb']} GB",
           "<!-- /run-facts -->", "",
           wrap("Means over seeds with the report's 95% interval (`reports.intervals`: over "
           "training seeds and evaluation prompts together, from each cell's per-prompt values, "
           "cut to the metric's range; † marks an interval over seeds on these prompts only, "
           "for a statistic with no per-prompt values); Δ is the paired difference against "
           f"{vals['reference']} at the same seed and prompt, * when its interval excludes 0 "
           "(docs/evals.md)."), "",
           "## The README's table", "", *readme_table(vals), ""]
    groups = {}
    for m in PAGE_METRICS:
        groups.setdefault(m.split(".")[0], []).append(m)
    for ev, ms in groups.items():
        ms = [m for m in ms if any(m in row for row in vals["rows"].values())]
        if not ms:
            continue
        out += [f"## {ev}", "", "| method | " + " | ".join(f"`{m}`" for m in ms) + " |",
                "| --- " * (len(ms) + 1) + "|"]
        for label, row in vals["rows"].items():
            out.append(f"| {label} | " + " | ".join(cell_text(row.get(m), with_delta=True)
                                                    for m in ms) + " |")
        out.append("")
    if vals["ranking"]:
        out += ["## Ranking on the gold win-rate against SFT", "",
                "| rank | row | P(first) |", "| --- | --- | --- |"]
        out += [f"| {i} | {r['row']} | {r['p_first'] or '–'} |"
                for i, r in enumerate(vals["ranking"], 1)]
        out.append("")
    if vals["aa_checks"]:
        out += ["## A/A checks", "", "| row | metric | mean [95% interval] | holds the null |",
                "| --- | --- | --- | --- |"]
        out += [f"| {c['row']} | `{c['metric']}` | {c['mean']} [{c['lo']}, {c['hi']}] | "
                f"{'yes' if c['ok'] else 'NO'} |" for c in vals["aa_checks"]]
        out.append("")
    return "\n".join(out)


def copy_into_readme(readme: Path, table: list[str]) -> None:
    text = readme.read_text(encoding="utf-8")
    rx = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not rx.search(text):
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} markers")
    readme.write_text(rx.sub(lambda _: "\n".join([README_START, *table, README_END]), text),
                      encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.split("\n\n")[1])
        return 2
    out = Path(argv[0])
    if not (out / "results.jsonl").is_file():
        raise SystemExit(f"{out}: no results.jsonl (run the quickstart into it first)")
    d = collect(out)
    vals = values(d)
    vals["run"]["results_id"] = results_id(out)
    docs = ROOT / "docs"
    (docs / "results.json").write_text(json.dumps(vals, indent=1) + "\n", encoding="utf-8")
    (docs / "results.md").write_text(page(vals), encoding="utf-8")
    copy_into_readme(ROOT / "README.md", readme_table(vals))
    print(f"wrote docs/results.md, docs/results.json and README.md's table from {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
