"""A researcher's own data in the real scenario: the sources it names, loaded once through
``bench.data.sources`` (TRL's formats, normalized at load), turned into the text the harness
uses (a prompt is the full text given to the model, in its chat template), and split.

The preference set is split by prompt, with a seeded permutation, into three disjoint parts:
the pairs methods draw from under the ``comparisons`` budget, a held-out part (evaluation
prompts and the pairs each reward model and judge is scored on), and, when the evaluation
judge is the gold reward model, the pairs it is trained on, which no method sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bench import store
from bench.api import DataError
from bench.data.sources import Loaded, SourceError, SourceSpec, load, parse_source, render
from bench.seeding import derive_seed

Chat = Callable[[list[str]], list[str]]  # raw user messages -> prompts in the chat template
Template = Callable[[list[dict], bool], str] | None  # messages, add_generation_prompt -> text


def load_source(value: str | SourceSpec, kind: str, option: str) -> Loaded:
    spec = value if isinstance(value, SourceSpec) else parse_source(value, option)
    return load(spec, kind, option)


def load_preferences(value: str | SourceSpec, option: str) -> Loaded:
    """Paired rows (prompt/chosen/rejected, explicit or implicit prompt) or, when the source is
    not paired but reads as unpaired rows (prompt/completion/label), those: TRL's trainers
    tell the two apart by their columns, and so does this. The paired error is the one
    reported when neither reads."""
    try:
        return load_source(value, "preferences", option)
    except SourceError as paired_err:
        try:
            return load_source(value, "unpaired", option)
        except SourceError:
            raise paired_err from None


def as_text(loaded: Loaded, template: Template, chat: Chat, source: str) -> list[dict[str, Any]]:
    """The rows as text: conversational rows through the model's chat template; a standard
    row's prompt is a user message, wrapped in the chat template where the model has one (as
    every prompt the harness gives a chat model)."""
    rows = render(loaded.rows, loaded.kind, loaded.conversational, template, source=source)
    if not loaded.conversational and rows:
        wrapped = chat([r["prompt"] for r in rows])
        rows = [{**r, "prompt": p} for r, p in zip(rows, wrapped)]
    return rows


def seeded_draw(rows: list[dict[str, Any]], n: int, seed: int, stream: str
                ) -> list[dict[str, Any]]:
    """The first ``n`` rows of a permutation seeded by ``seed`` and ``stream``: without
    replacement, and a larger ``n`` extends a smaller one's draw."""
    order = np.random.default_rng(derive_seed(seed, stream)).permutation(len(rows))
    return [dict(rows[i]) for i in order[:n]]


@dataclass
class PreferencePool:
    """The pairs (or unpaired rows) methods may draw: :class:`bench.api.PreferenceSource`."""

    paired: bool
    rows: list[dict[str, Any]]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = store.content_key(self.rows)

    @property
    def size(self) -> int:
        return len(self.rows)

    def draw(self, n: int, seed: int) -> list[dict[str, Any]]:
        if n > len(self.rows):
            raise DataError(f"{n} {'comparisons' if self.paired else 'ratings'} asked of a "
                            f"preference set whose training split holds {len(self.rows)}; "
                            f"lower the budget or give more data")
        return seeded_draw(self.rows, n, seed, "preferences.draw")


@dataclass(frozen=True)
class PreferenceSplit:
    train: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    gold: list[dict[str, Any]]
    how: str


def split_by_prompt(rows: list[dict[str, Any]], held_out: float, gold: float, seed: int
                    ) -> PreferenceSplit:
    """Disjoint parts by prompt (every row of a prompt lands in one part): a seeded permutation
    of the distinct prompts, the first ``held_out`` share held out, the next ``gold`` share for
    the gold reward model, the rest for training."""
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))
    order = np.random.default_rng(derive_seed(seed, "preferences.split")).permutation(
        len(prompts))
    n_held, n_gold = int(round(held_out * len(prompts))), int(round(gold * len(prompts)))
    part = {prompts[i]: 0 if j < n_held else 1 if j < n_held + n_gold else 2
            for j, i in enumerate(order)}
    parts: list[list[dict[str, Any]]] = [[], [], []]
    for r in rows:
        parts[part[r["prompt"]]].append(r)
    if not parts[2] or (held_out and not parts[0]) or (gold and not parts[1]):
        raise DataError(f"the preference set has {len(prompts)} distinct prompts, too few to "
                        f"split {held_out:.0%} held out and {gold:.0%} for the gold reward "
                        f"model with some left to train on; give more data or lower "
                        f"held_out_fraction / gold_fraction")
    how = (f"seeded permutation (split_seed={seed}) of {len(prompts)} distinct prompts: "
           f"{n_held} held out, {n_gold} for the gold reward model, "
           f"{len(prompts) - n_held - n_gold} for training")
    return PreferenceSplit(train=parts[2], held_out=parts[0], gold=parts[1], how=how)


def without_overlap(prompts: list[str], training: set[str]) -> tuple[list[str], int]:
    """Evaluation prompts that are not training prompts (exact text), and how many were
    removed: a prompt a method trained on never scores it."""
    kept = [p for p in dict.fromkeys(prompts) if p not in training]
    return kept, len(set(prompts)) - len(kept)


class Drawn:
    """``(n, seed) -> rows``, drawn without replacement in a seeded order (the same ``(n,
    seed)`` gives the same rows; a larger ``n`` extends a smaller one's): a scenario's
    demonstrations when the user names them."""

    def __init__(self, rows: list[dict[str, str]], what: str):
        self.rows, self.what = rows, what

    def __call__(self, n: int, seed: int) -> list[dict[str, str]]:
        if n > len(self.rows):
            raise DataError(f"{n} {self.what} asked of a source that holds {len(self.rows)}; "
                            f"lower budget.{self.what} or give more data")
        return seeded_draw(self.rows, n, seed, self.what)
