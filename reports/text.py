"""The report's words and number formats, shared by the page (report.html) and report.md, so
the two say the same thing in the same digits."""

from __future__ import annotations

import math
import re
from typing import Any

from reports.findings import Finding, expectation

INTERVALS = ("Intervals: where the cells store each prompt's value (every mean over prompts: "
             "TruthfulQA and its slices, toxicity, win-rates, KL, agreement), over training "
             "seeds and evaluation prompts together: the (seeds x prompts) matrix's seed and "
             "prompt variance components, each at its own t quantile, the seed part floored "
             "by the residual; they generalize to new seeds and new prompts of the same kind. "
             "Agreement metrics resample prompts whole (a prompt's pairs, and every labeler's "
             "label on a pair, share it). A paired difference pairs by seed and by prompt, so "
             "a prompt's difficulty, shared by both rows, cancels. Marked †: a statistic with "
             "no per-prompt values (length-controlled rates, agreement indices, curve "
             "summaries) gets Student-t over seeds floored by each seed's standard error, "
             "which generalizes to new seeds on these prompts only; so do rows of fewer than "
             "3 seeds (one seed shows its own standard error). A metric with a range (rates, "
             "toxicity, kappas) has its interval cut to that range, which keeps its coverage. "
             "Below 3 seeds no paired difference is shown: with 2 seeds a t-interval is 12.7 "
             "standard errors wide.")
LENGTH_NOTE = ("Raw: the win-rate as judged. LC (per cell): the win_rate eval's own length "
               "control (AlpacaEval 2's length model fitted on the cell's pairs, no prompt "
               "term). LC (joint): the same model with each prompt's difficulty fitted jointly "
               "over every cell of this matrix, read at equal length and averaged over its pairs "
               "(reports/length_control.py). (!): the joint rate is more than 0.10 from the raw "
               "one (AlpacaEval 2's safeguard): read the raw rate, or give the eval more "
               "prompts. Intervals over seeds, none below 3 seeds; the joint rate's is floored "
               "by the per-cell LC's standard error, as it has no bootstrap of its own.")
FINDINGS_NOTE = ("Each claim's effect is measured in this run: a row's mean over seeds, or its "
                 "difference from (ratio to) another row paired over the seeds they share, with "
                 "a 95% interval (over seeds and prompts where both sides store per-prompt "
                 "values, else the floored t over seeds; for two untrained rows, the same on "
                 "every seed, the evaluation's own; against one untrained row, its standard "
                 "error counted once, not divided by the seed count). Holds: the interval lies on "
                 "the claimed side of the null, or inside the claimed range (for a range, each "
                 "side a 2.5% test); does not hold: no part of it lies on that side, or it lies "
                 "outside the range; not resolved: neither, at this seed count; not measured: "
                 "fewer than 3 seeds hold the values. Each claim is tested at 5% on its own, "
                 "with no correction for testing several: among twenty claims with no true "
                 "effect, one may read as resolved. Seeds for 80% power: how many seeds an "
                 "effect of the observed size and spread needs to be resolved as claimed "
                 "(two-sided t-test at 5%; computed after the fact, so a guide, not a "
                 "guarantee); none where seeds cannot move it or it was resolved the other way.")


def fmt(x: float | None, nd: int = 3) -> str:
    """A number as the report prints it: ``nd`` decimals, "–" for none or not finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def arrow(higher: bool | None) -> str:
    """A metric's direction as a header mark: ↑ higher is better, ↓ lower, · descriptive."""
    return {True: "↑", False: "↓"}.get(higher, "·")


def finding_cells(f: Finding) -> dict[str, str]:
    """A finding's table cells as text, shared by report.md and the page."""
    effect = "–" if f.effect is None else fmt(f.effect)
    if f.lo is not None:
        effect += f" [{fmt(f.lo)}, {fmt(f.hi)}]"
    return {"expected": expectation(f), "effect": effect,
            "seeds": ", ".join(str(s) for s in f.seeds) or "–",
            "needed": "–" if f.seeds_needed is None else str(f.seeds_needed)}


def breakable(name: str) -> Any:
    """A metric's or row's name, escaped, that a narrow cell may wrap after each underscore,
    dot and equals sign (``krippendorff_<wbr>alpha``, ``budget.<wbr>comparisons=<wbr>300``)
    instead of inside a word."""
    from markupsafe import Markup, escape
    return Markup(re.sub(r"([_.=])", r"\1<wbr>", str(escape(name))))
