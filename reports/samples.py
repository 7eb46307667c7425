"""The page's sample browser and per-example tables: the answers every row gave to the same
prompts, and whatever else the evals stored per example (``record["evals"][NAME]["rows"]``),
whatever their keys."""

from __future__ import annotations

import json
from typing import Any

from reports.model import Report
from reports.records import finite


def samples(d: Report, n: int = 8) -> list[dict[str, Any]]:
    """The same prompts answered by every row and seed, for every eval whose rows carry a
    ``prompt`` and the policy's answer under ``method`` (with ``p_method``, the judged
    probability that it beats the eval's reference answer, and the scenario's
    ``method_attributes`` where present): ``[{"eval", "prompts": [{"prompt", "answers"}]}]``,
    the first ``n`` prompts of each eval. Each answer carries ``tags``, its attributes as the
    sample browser filters on them (:func:`attribute_tags`)."""
    by_eval: dict[str, dict[str, dict[str, Any]]] = {}
    for row in d.rows:
        for r in row.records:
            for ev, info in (r.get("evals") or {}).items():
                shown = [s for s in (info or {}).get("rows") or [] if _is_sample(s)]
                for s in shown[:n]:
                    entry = by_eval.setdefault(ev, {}).setdefault(
                        s["prompt"], {"prompt": s["prompt"], "answers": []})
                    attrs = s.get("method_attributes") or {}
                    entry["answers"].append({"method": row.label, "seed": r.get("seed"),
                                             "text": s["method"], "p": s.get("p_method"),
                                             "attrs": attrs, "tags": attribute_tags(attrs)})
    return [{"eval": ev, "prompts": list(prompts.values())[:n]}
            for ev, prompts in by_eval.items()]


def example_rows(d: Report, n: int = 8, width: int = 160, max_columns: int = 20
                 ) -> list[dict[str, Any]]:
    """Each eval's per-example rows that the sample browser does not show (TruthfulQA's
    questions and picks, toxicity's samples, a plugin's rows, whatever their keys):
    ``[{"eval", "columns", "rows": [[row label, seed, value, ...]]}]``, the first ``n`` rows
    of each row's first seed, values as text cut to ``width`` characters; keys past the
    first ``max_columns`` share one last column, ``other``, as JSON."""
    out: dict[str, dict[str, Any]] = {}
    for row in d.rows:
        first = row.records[0]
        for ev, info in (first.get("evals") or {}).items():
            shown = [x for x in (info or {}).get("rows") or [] if isinstance(x, dict)]
            if not shown or all(map(_is_sample, shown)):
                continue  # none, or the sample browser's
            g = out.setdefault(ev, {"eval": ev, "columns": [], "rows": []})
            for x in shown[:n]:
                g["columns"] += [k for k in x if k not in g["columns"]]
                g["rows"].append((row.label, first.get("seed"), x))
    for g in out.values():
        cols, rest = g["columns"][:max_columns], g["columns"][max_columns:]
        g["rows"] = [[label, seed] + [_cell_text(x.get(c), width) for c in cols]
                     + ([_cell_text({c: x[c] for c in rest if c in x}, width)] if rest else [])
                     for label, seed, x in g["rows"]]
        g["columns"] = cols + (["other"] if rest else [])
    return list(out.values())


def _is_sample(x: Any) -> bool:
    """A stored row the sample browser shows: a prompt and the policy's answer to it."""
    return isinstance(x, dict) and isinstance(x.get("prompt"), str) \
        and isinstance(x.get("method"), str)


def _cell_text(v: Any, width: int) -> str:
    text = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else
                                 v if isinstance(v, str) else json.dumps(v))
    return text if len(text) <= width else text[:width - 1] + "…"


def attribute_tags(attrs: dict[str, Any]) -> list[str]:
    """A parsed answer's attributes as filter tags, whatever the scenario names them: a true
    flag by its name (``myth``), a text value as ``name=value`` (``truth=unknown_admitted``,
    the micro-world's "I do not know"), a positive count as ``name>0`` (``toxicity>0``)."""
    tags = []
    for k, v in attrs.items():
        if isinstance(v, bool):
            tags += [k] if v else []
        elif isinstance(v, str):
            tags.append(f"{k}={v}")
        elif finite(v) and v > 0:
            tags.append(f"{k}>0")
    return tags


def sample_filters(groups: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The sample browser's choices: rows, seeds, prompts and tags present, in order."""
    answers = [a for g in groups for s in g["prompts"] for a in s["answers"]]
    return {"methods": list(dict.fromkeys(a["method"] for a in answers)),
            "seeds": sorted({a["seed"] for a in answers if a["seed"] is not None}),
            "prompts": list(dict.fromkeys(s["prompt"] for g in groups for s in g["prompts"])),
            "tags": sorted({t for a in answers for t in a["tags"]})}
