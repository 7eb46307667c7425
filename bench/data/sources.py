"""A user's dataset, read through Hugging Face ``datasets`` in TRL's documented formats and
normalized once, at load, into one canonical shape per kind of data.

Sources: a hub dataset id, a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file (``.txt``,
one prompt a line, for prompts only), or a folder written by ``Dataset.save_to_disk`` or
``DatasetDict.save_to_disk``. Formats (TRL's): standard (strings) or conversational (lists of
``{"role", "content"}`` messages); language modeling, prompt-only, prompt-completion,
preference with an explicit or an implicit prompt, unpaired preference.

Canonical rows, by kind (P, C, R: all strings, or all message lists, never mixed):

* ``demonstrations``: ``{"prompt": P, "completion": C}``
* ``preferences``: ``{"prompt": P, "chosen": C, "rejected": R}``
* ``unpaired``: ``{"prompt": P, "completion": C, "label": bool}`` (KTO)
* ``prompts``: ``{"prompt": P}``

An implicit prompt (preference rows of chosen and rejected only) is split off as TRL's
``extract_prompt`` does: the longest common prefix, in characters for strings and in whole
messages for conversations. Messages keep only their role and content.

Every unusable source is one ``SourceError`` line naming the source, the row where one is at
fault (rows count from 0 within the split, like ``ds[i]``), the problem and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from bench.data.formats import NORMALIZERS, SourceError
from bench.store import sha256_file

Kind = Literal["demonstrations", "preferences", "unpaired", "prompts"]
# the text fields of each kind's canonical row, prompt first
FIELDS: dict[str, tuple[str, ...]] = {
    "demonstrations": ("prompt", "completion"), "preferences": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion"), "prompts": ("prompt",)}
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
FILE_TYPES = ".jsonl, .json, .csv or .parquet"

log = logging.getLogger("alignbench.data")


class SourceSpec(BaseModel):
    """Where a dataset comes from, as a matrix option gives it (``parse_source``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)  # hub id, local file, or save_to_disk folder
    name: str | None = None  # hub config name
    split: str = "train"  # a split name, or a datasets slice like "train[:80%]"
    revision: str | None = None  # hub revision
    columns: dict[str, str] = {}  # the file's column -> the canonical name


@dataclass(frozen=True)
class Loaded:
    """A source's canonical rows, their format, and where they came from (``provenance``:
    source, name, split, revision, sha256 of the canonical rows, files, n, format)."""

    kind: Kind
    rows: list[dict]
    conversational: bool
    provenance: dict


def parse_source(value: str | dict, option: str) -> SourceSpec:
    """A matrix option's source: a bare string is ``{"path": value}``; a table takes ``path``,
    ``name``, ``split``, ``revision`` and ``columns``. ``option`` names it in errors."""
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise SourceError(f"{option}: a data source is a path or hub id (a string) or a table "
                          f"with path = ...; got {type(value).__name__}")
    try:
        return SourceSpec.model_validate(value)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "source"
        raise SourceError(f"{option}: {where}: {err['msg']}; a source is a string or a table of "
                          f"path, name, split, revision and columns") from None


def load(spec: SourceSpec, kind: str, option: str) -> Loaded:
    """Read ``spec`` and normalize it into ``kind``'s canonical rows (module docstring).
    Raises ``SourceError`` (one line) for anything unusable."""
    where = f"{option}: {spec.path}"
    if kind not in FIELDS:
        raise SourceError(f"{where}: unknown kind of data {kind!r}; one of {', '.join(FIELDS)}")
    raw, files, revision = _read(spec, kind, where)
    if not raw:
        raise SourceError(f"{where}: split {spec.split!r} has no rows; give a file or split "
                          f"with data")
    raw = _rename(raw, spec.columns, where)
    rows, conversational, fmt = NORMALIZERS[kind](raw, list(raw[0]), where)
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    provenance = {"source": spec.path, "name": spec.name, "split": spec.split,
                  "revision": revision, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                  "files": files, "n": len(rows),
                  "format": f"{fmt}, {'conversational' if conversational else 'standard'}"}
    return Loaded(kind=kind, rows=rows, conversational=conversational, provenance=provenance)


# --------------------------------------------------------------------------- reading


def _read(spec: SourceSpec, kind: str, where: str) -> tuple[list[dict], dict, str | None]:
    """The split's raw rows, ``{relative file: sha256}`` of local files, and the hub commit."""
    path = Path(spec.path).expanduser()
    if path.is_dir():
        return _read_folder(path, spec.split, where)
    if path.is_file():
        return _read_file(path, spec.split, kind, where)
    if _looks_local(spec.path):
        raise SourceError(f"{where}: no such file or folder (looked for {path.resolve()}); "
                          f"check the path")
    return _read_hub(spec, where)


def _looks_local(text: str) -> bool:
    # a hub id is "name" or "owner/name"; anything else that is not on disk is a missing path
    return (text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
            or Path(text).suffix.lower() in {*BUILDERS, ".txt"})


def _split_names(split: str, where: str) -> list[str]:
    """The split names in a datasets split spec ("train[:80%]+test"); refuses a bad spec."""
    from datasets.arrow_reader import ReadInstruction
    try:
        ReadInstruction.from_spec(split)
    except (ValueError, AssertionError):
        raise SourceError(f"{where}: split {split!r} is not a split name or a slice like "
                          f"\"train[:80%]\"; fix split") from None
    return [part.split("[")[0].strip() for part in split.split("+")]


def _split_ranges(split: str, sizes: dict[str, int], where: str) -> list[tuple[str, int, int]]:
    """``(split name, start, stop)`` for each part of a split spec, given each split's size."""
    from datasets.arrow_reader import ReadInstruction
    missing = [n for n in _split_names(split, where) if n not in sizes]
    if missing:
        raise SourceError(f"{where}: no split {missing[0]!r}; its splits: "
                          f"{', '.join(sorted(sizes))}; set split to one of them")
    return [(i.splitname, i.from_, i.to)
            for i in ReadInstruction.from_spec(split).to_absolute(sizes)]


def _read_file(path: Path, split: str, kind: str, where: str) -> tuple[list[dict], dict, None]:
    suffix = path.suffix.lower()
    files = {path.name: sha256_file(path)}
    if suffix == ".txt":
        if kind != "prompts":
            raise SourceError(f"{where}: a .txt file holds prompts only, one a line; give "
                              f"{kind} as {FILE_TYPES}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise SourceError(f"{where}: not UTF-8 text; save it as UTF-8") from None
        prompts = [{"prompt": line.strip()} for line in lines if line.strip()]
        ranges = _split_ranges(split, {"train": len(prompts)}, where)
        return [r for _, a, b in ranges for r in prompts[a:b]], files, None
    if suffix not in BUILDERS:
        raise SourceError(f"{where}: unknown file type {suffix or '(no suffix)'!r}; give "
                          f"{FILE_TYPES} (.txt for prompts), or a save_to_disk folder")
    if path.stat().st_size < 4096 and not path.read_bytes().strip():  # datasets: StopIteration
        raise SourceError(f"{where}: the file is empty; give a file with rows")
    if any(name != "train" for name in _split_names(split, where)):
        raise SourceError(f"{where}: split {split!r}, but a file holds one split, \"train\"; "
                          f"use split = \"train\" or a slice of it such as \"train[:80%]\"")
    import datasets
    # a private cache, gone after the read: datasets would otherwise keep an Arrow copy of
    # every file it reads, keyed on the path and mtime, in the user's cache
    with quiet_datasets(), tempfile.TemporaryDirectory(prefix="alignbench-source-") as cache:
        try:
            ds = datasets.load_dataset(BUILDERS[suffix], data_files=str(path), split="train",
                                       cache_dir=cache)
            table = ds.to_list()
        except Exception as e:  # datasets raises many types here; the user needs one line
            raise SourceError(f"{where}: could not be read as {suffix[1:]} ({_reason(e)}); "
                              f"check that the file is well-formed {suffix[1:]}") from None
    # sliced here, as folders are: an empty slice is "no rows", not a datasets error
    ranges = _split_ranges(split, {"train": len(table)}, where)
    return [r for _, a, b in ranges for r in table[a:b]], files, None


def _read_folder(path: Path, split: str, where: str) -> tuple[list[dict], dict, None]:
    import datasets
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise SourceError(f"{where}: a folder, but not one written by Dataset.save_to_disk or "
                          f"DatasetDict.save_to_disk (no dataset_dict.json or state.json); "
                          f"give such a folder or a {FILE_TYPES} file")
    files = {p.relative_to(path).as_posix(): sha256_file(p)
             for p in sorted(path.rglob("*")) if p.is_file()}
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise SourceError(f"{where}: could not read the saved dataset ({_reason(e)}); save it "
                          f"again with save_to_disk") from None
    if isinstance(ds, datasets.DatasetDict):
        tables = dict(ds)
    else:  # one saved split answers to any split name; only the slice applies
        tables = {name: ds for name in _split_names(split, where)}
    ranges = _split_ranges(split, {k: len(v) for k, v in tables.items()}, where)
    rows = [r for name, a, b in ranges for r in tables[name].select(range(a, b)).to_list()]
    return rows, files, None


def _read_hub(spec: SourceSpec, where: str) -> tuple[list[dict], dict, str | None]:
    import datasets
    try:
        with quiet_datasets():
            ds = datasets.load_dataset(spec.path, spec.name, split=spec.split,
                                       revision=spec.revision)
        rows = ds.to_list()
    except OSError as e:  # offline, unreachable, or not on the hub (ConnectionError is one)
        raise SourceError(f"{where}: not a local file or folder, and the hub dataset is not in "
                          f"the local cache and could not be fetched ({_reason(e)}); use a "
                          f"local {FILE_TYPES} file or save_to_disk folder, or connect and "
                          f"retry") from None
    except Exception as e:
        raise SourceError(f"{where}: the hub dataset could not be loaded ({_reason(e)}); "
                          f"check name, split and revision") from None
    return rows, {}, _hub_commit(ds, spec)


def _hub_commit(ds: Any, spec: SourceSpec) -> str | None:
    """The hub commit the rows came from, best effort; else the revision asked for."""
    # datasets keys a hub dataset's cache folder by the commit it resolved
    for f in getattr(ds, "cache_files", None) or []:
        found = re.search(r"[/\\]([0-9a-f]{40})[/\\]", f.get("filename", ""))
        if found:
            return found.group(1)
    try:
        from huggingface_hub import HfApi, constants
        if not constants.HF_HUB_OFFLINE:
            return HfApi().dataset_info(spec.path, revision=spec.revision).sha
    except Exception:  # provenance is best effort: a failed look-up leaves the revision asked
        pass
    return spec.revision


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No datasets progress bars during a read (they would cut into the run's own output)."""
    from datasets.utils import (are_progress_bars_disabled, disable_progress_bars,
                                enable_progress_bars)
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _reason(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return (lines[0][:200] if lines else type(e).__name__)


def _rename(rows: list[dict], columns: dict[str, str], where: str) -> list[dict]:
    """Apply the column map; a mapped column replaces a column already of its new name."""
    if not columns:
        return rows
    present = set(rows[0])
    for old in columns:
        if old not in present:
            raise SourceError(f"{where}: columns maps {old!r}, which is not a column; columns "
                              f"present: {', '.join(sorted(present))}")
    targets = set(columns.values())
    return [{**{k: v for k, v in r.items() if k not in columns and k not in targets},
             **{new: r[old] for old, new in columns.items()}} for r in rows]


# --------------------------------------------------------------------------- rendering


def render(rows: list[dict], kind: str, conversational: bool,
           template: Callable[[list[dict], bool], str] | None, *, source: str) -> list[dict]:
    """Canonical rows as the text the harness uses: the prompt is the full text given to the
    model, and each completion (chosen, rejected) the text that follows it; a label stays a
    bool. ``template(messages, add_generation_prompt)`` is the tokenizer's
    ``apply_chat_template(..., tokenize=False)``. Standard rows come back unchanged (the harness
    wraps a standard prompt as a user message itself)."""
    if kind not in FIELDS:
        raise SourceError(f"{source}: unknown kind of data {kind!r}; one of {', '.join(FIELDS)}")
    if not conversational:
        return [dict(r) for r in rows]
    if template is None:
        raise SourceError(f"{source} is conversational but the model has no chat template; "
                          f"give standard (string) rows or a model with a chat template")
    out, fallbacks = [], 0
    for row in rows:
        prompt = template(row["prompt"], True)
        new = {**row, "prompt": prompt}
        for field in FIELDS[kind][1:]:
            full = template(row["prompt"] + row[field], False)
            if full.startswith(prompt):
                new[field] = full[len(prompt):]
            else:  # a template that renders a turn differently once it is answered
                new[field] = "".join(m["content"] for m in row[field])
                fallbacks += 1
        out.append(new)
    if fallbacks:
        log.warning("%s: for %d completions the chat template's full rendering does not start "
                    "with its prompt rendering; those completions are the assistant content "
                    "alone, without the template's end-of-turn marker", source, fallbacks)
    return out
