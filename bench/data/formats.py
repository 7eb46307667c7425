"""TRL's dataset formats, normalized into the canonical rows of :mod:`bench.data.sources`.

One normalizer per kind of data takes a split's raw rows (with the user's ``columns`` already
renamed) and returns the canonical rows, whether they are conversational, and the format's
name for the provenance; each unusable row is one ``SourceError`` line naming the row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.api import DataError


class SourceError(DataError):
    """A data source that cannot be used; the message is one line: the source, the row where one
    is at fault, the problem and the fix."""


def _missing(where: str, need: str, wanted: tuple[str, ...], present: list[str]) -> SourceError:
    """The error for absent columns, with an example ``columns`` map: the file's other columns,
    in its order, onto the names it lacks."""
    wanted = tuple(w for w in wanted if w not in present)
    spare = [c for c in present if c not in ("prompt", "completion", "chosen", "rejected", "label")]
    pairs = ", ".join(f"{old} = \"{new}\"" for old, new in zip(spare, wanted, strict=False)) or \
        ", ".join(f"your_column = \"{new}\"" for new in wanted)
    return SourceError(f"{where}: needs {need}; columns present: "
                       f"{', '.join(present) or '(none)'}; map yours, e.g. "
                       f"columns = {{{pairs}}}")


def _text(value: Any, i: int, field: str, where: str) -> str | list[dict]:
    """A string, or a list of messages reduced to ``{"role", "content"}`` (Arrow pads absent
    keys with None, so only these two are kept: every source gives the same rows)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else f"{type(value).__name__} {value!r:.40}"
        raise SourceError(f"{where}: row {i}: {field} is {got}; it must be a string or a list "
                          f"of {{\"role\", \"content\"}} messages")
    out = []
    for j, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise SourceError(f"{where}: row {i}: {field} message {j} is {m!r:.60}; each "
                              f"message needs a \"role\" and a \"content\" string")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _texts(row: dict, fields: tuple[str, ...], i: int, where: str) -> dict:
    """``fields`` of ``row`` validated, all strings or all message lists."""
    out = {f: _text(row[f], i, f, where) for f in fields}
    styles = {f: isinstance(v, list) for f, v in out.items()}
    if len(set(styles.values())) > 1:
        conv = [f for f, s in styles.items() if s]
        raise SourceError(f"{where}: row {i}: mixes standard and conversational fields "
                          f"({', '.join(conv)} are messages, the rest strings); make all "
                          f"strings or all message lists")
    return out


def _style(rows: list[dict], where: str) -> bool:
    """Whether the rows are conversational; refuses rows that disagree with row 0."""
    styles = [any(isinstance(v, list) for v in r.values()) for r in rows]
    first = styles[0]
    for i, style in enumerate(styles):
        if style != first:
            raise SourceError(f"{where}: row {i} is {'standard' if first else 'conversational'}"
                              f" but row 0 is not; make all rows strings or all message lists")
    return first


def _demonstrations(raw: list[dict], cols: list[str], where: str):
    if {"prompt", "completion"} <= set(cols):
        rows = [_texts(r, ("prompt", "completion"), i, where) for i, r in enumerate(raw)]
        return rows, _style(rows, where), "prompt-completion"
    if "messages" in cols:
        rows = [_split_messages(_text(r["messages"], i, "messages", where), i, where)
                for i, r in enumerate(raw)]
        return rows, _style(rows, where), "language modeling"
    if "text" in cols:
        bad = next((i for i, r in enumerate(raw) if not isinstance(r["text"], str)), None)
        if bad is not None:
            raise SourceError(f"{where}: row {bad}: text is {type(raw[bad]['text']).__name__}; "
                              f"it must be a string (conversations go in a messages column)")
        return [{"prompt": "", "completion": r["text"]} for r in raw], False, "language modeling"
    raise _missing(where, "prompt and completion columns (or text, or messages)",
                   ("prompt", "completion"), cols)


def _split_messages(messages: Any, i: int, where: str) -> dict:
    """A conversation: prompt = the messages before the last assistant message, completion =
    that message."""
    if isinstance(messages, str):
        raise SourceError(f"{where}: row {i}: messages is a string; it must be a list of "
                          f"{{\"role\", \"content\"}} messages (plain text goes in text)")
    last = [j for j, m in enumerate(messages) if m["role"] == "assistant"]
    if not last:
        raise SourceError(f"{where}: row {i}: messages has no assistant message to learn; "
                          f"end each conversation with the assistant's reply")
    return {"prompt": messages[:last[-1]], "completion": [messages[last[-1]]]}


def _preferences(raw: list[dict], cols: list[str], where: str):
    if not {"chosen", "rejected"} <= set(cols):
        raise _missing(where, "chosen and rejected columns (and prompt, unless chosen and "
                       "rejected both begin with it)", ("prompt", "chosen", "rejected"), cols)
    rows, implicit = [], 0
    for i, r in enumerate(raw):
        pair = _texts(r, ("chosen", "rejected"), i, where)
        # TRL's maybe_extract_prompt: a string prompt beside full conversations is a label,
        # not the prompt; the conversations hold the prompt
        if "prompt" in cols and not (isinstance(pair["chosen"], list)
                                     and isinstance(r["prompt"], str)):
            rows.append(_texts(r, ("prompt", "chosen", "rejected"), i, where))
        else:
            rows.append(_extract_prompt(pair["chosen"], pair["rejected"], i, where))
            implicit += 1
    how = "implicit prompt" if implicit == len(rows) else \
        "explicit prompt" if not implicit else "explicit and implicit prompts"
    return rows, _style(rows, where), f"preference, {how}"


def _extract_prompt(chosen: str | list, rejected: str | list, i: int, where: str) -> dict:
    """TRL's ``extract_prompt``: the prompt is the longest common prefix of chosen and rejected
    (characters for strings, whole messages for conversations)."""
    if chosen == rejected:
        raise SourceError(f"{where}: row {i}: chosen and rejected are identical; a preference "
                          f"needs two different answers")
    limit = min(len(chosen), len(rejected))
    n = next((k for k in range(limit) if chosen[k] != rejected[k]), None)
    if n is None:  # one begins with the other: TRL keeps the shorter one's last item out
        n = limit - 1
    elif isinstance(chosen, str) and n > 0 and chosen[n - 1] == " ":
        n -= 1  # TRL gives the space before the difference to the completions (" blue.")
    if n <= 0:
        shared = "no leading message" if isinstance(chosen, list) else "no leading text"
        raise SourceError(f"{where}: row {i}: chosen and rejected share {shared}, so there is "
                          f"no implicit prompt to extract; add a prompt column")
    return {"prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def _unpaired(raw: list[dict], cols: list[str], where: str):
    if not {"prompt", "completion", "label"} <= set(cols):
        raise _missing(where, "prompt, completion and label columns",
                       ("prompt", "completion", "label"), cols)
    rows = []
    for i, r in enumerate(raw):
        label = r["label"]
        if type(label) is int and label in (0, 1):
            label = bool(label)
        if type(label) is not bool:
            raise SourceError(f"{where}: row {i}: label is {label!r:.40}; a label is true or "
                              f"false (or 1 or 0): true when the completion is desirable")
        rows.append({**_texts(r, ("prompt", "completion"), i, where), "label": label})
    return rows, _style(rows, where), "unpaired preference"


def _prompts(raw: list[dict], cols: list[str], where: str):
    if "prompt" not in cols:
        raise _missing(where, "a prompt column", ("prompt",), cols)
    rows, nested = [], False
    for i, r in enumerate(raw):
        p = r["prompt"]
        if isinstance(p, dict):  # RealToxicityPrompts: {"text": ..., "toxicity": ...}
            if not isinstance(p.get("text"), str):
                raise SourceError(f"{where}: row {i}: prompt is a table without a \"text\" "
                                  f"string; give prompt as a string, messages, or {{text = ...}}")
            p, nested = p["text"], True
        rows.append({"prompt": _text(p, i, "prompt", where)})
    fmt = "prompt-only, RealToxicityPrompts" if nested else "prompt-only"
    return rows, _style(rows, where), fmt


NORMALIZERS: dict[str, Callable[[list[dict], list[str], str], tuple[list[dict], bool, str]]] = {
    "demonstrations": _demonstrations, "preferences": _preferences, "unpaired": _unpaired,
    "prompts": _prompts}
