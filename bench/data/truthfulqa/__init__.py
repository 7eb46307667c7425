"""TruthfulQA (Lin et al. 2022) in one shape, from any of its distributions.

Sources: the original generation-format CSV, Hugging Face's ``multiple_choice`` config as
JSON/JSONL/parquet, or the hub itself (``truthfulqa/truthful_qa``, needs a network). The CSV
ships inside this package (``packaged_csv()``; Apache-2.0, see LICENSE and README.md beside
it), so a clone or an install evaluates TruthfulQA offline with no file of the user's. The real
scenario splits these questions into training prompts and held-out evaluation items; the
TruthfulQA eval scores them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import store
from bench.api import DataError

HUB_ID = "truthfulqa/truthful_qa"

# The generation-format CSV of Lin, Hilton and Evans (ACL 2022), shipped beside this module;
# its sha256 is checked on every load, so a damaged copy fails naming the fix instead of
# scoring a model on altered questions. A new copy of the file needs a new digest here, and
# with it a new code version, so no cached number outlives the data it was measured on.
PACKAGED_CSV = Path(__file__).with_name("TruthfulQA.csv")
PACKAGED_SHA256 = "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697"
PACKAGED_NAME = "TruthfulQA.csv (packaged with alignbench)"  # the source name results carry


@dataclass
class TruthfulQAItem:
    """One multiple-choice question, normalized from any source (TruthfulQA's own schema)."""

    question: str
    mc1_choices: list[str]  # best answer first
    mc2_choices: list[str]
    mc2_labels: list[int]  # 1 = true answer
    type: str = ""  # "Adversarial" / "Non-Adversarial" (micro-world adds "Unknown")
    category: str = ""


class TruthfulQADataError(DataError):
    """TruthfulQA data that is missing or unreadable (the message names the file and the fix)."""


def _split(answers: str) -> list[str]:
    return [a.strip() for a in answers.split(";") if a.strip()]


def load_csv(path: Path) -> list[TruthfulQAItem]:
    """The original generation-format CSV. MC1 = [Best Answer] + Incorrect Answers; MC2 =
    Correct Answers + Incorrect Answers (the derivation the HF multiple_choice config uses)."""
    items = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"Type", "Category", "Question", "Best Answer", "Correct Answers",
                "Incorrect Answers"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise TruthfulQADataError(f"{path}: not a TruthfulQA CSV, missing columns "
                                      f"{sorted(missing)}")
        for row in reader:
            correct, wrong = _split(row["Correct Answers"]), _split(row["Incorrect Answers"])
            items.append(TruthfulQAItem(
                question=row["Question"].strip(),
                mc1_choices=[row["Best Answer"].strip()] + wrong,
                mc2_choices=correct + wrong, mc2_labels=[1] * len(correct) + [0] * len(wrong),
                type=row["Type"].strip(), category=row["Category"].strip()))
    return items


def _from_hf_record(r: dict[str, Any]) -> TruthfulQAItem:
    mc1, mc2 = r["mc1_targets"], r["mc2_targets"]
    order = np.argsort(-np.asarray(mc1["labels"]), kind="stable")  # best answer first
    return TruthfulQAItem(question=r["question"], mc1_choices=[mc1["choices"][i] for i in order],
                          mc2_choices=list(mc2["choices"]), mc2_labels=list(mc2["labels"]),
                          type=r.get("type", ""), category=r.get("category", ""))


def load_path(path: Path) -> list[TruthfulQAItem]:
    path = Path(path)
    if not path.is_file():
        raise TruthfulQADataError(f"TruthfulQA data file {path} does not exist; give the CSV or "
                                  f"the multiple_choice JSON/parquet")
    if path.suffix == ".csv":
        return load_csv(path)
    if path.suffix == ".parquet":
        import pandas as pd
        return [_from_hf_record(r) for r in pd.read_parquet(path).to_dict("records")]
    if path.suffix in (".json", ".jsonl"):
        text = path.read_text(encoding="utf-8")
        recs = json.loads(text) if path.suffix == ".json" else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
        return [_from_hf_record(r) for r in recs]
    raise TruthfulQADataError(f"{path}: unsupported TruthfulQA format {path.suffix!r}; use .csv, "
                              f".json, .jsonl or .parquet")


def load_with_source(path: Path | str) -> tuple[list[TruthfulQAItem], dict[str, Any]]:
    """The items of a local file and the source record every result carries: name (the path
    as given), sha256 of the file's bytes, n."""
    items = load_path(Path(path))
    return items, {"name": str(path), "sha256": store.sha256_file(Path(path)), "n": len(items)}


def verified_csv(path: Path, sha256: str = PACKAGED_SHA256) -> Path:
    """``path``, once its bytes hash to ``sha256``; else a one-line TruthfulQADataError naming
    the file and how to restore it."""
    path = Path(path)
    fix = "reinstall alignbench (pip install --force-reinstall alignbench) or restore the " \
          "file from the repository (git checkout -- bench/data/truthfulqa/TruthfulQA.csv)"
    if not path.is_file():
        raise TruthfulQADataError(f"packaged TruthfulQA CSV {path} is missing; {fix}")
    got = store.sha256_file(path)
    if got != sha256:
        raise TruthfulQADataError(f"packaged TruthfulQA CSV {path} is damaged (sha256 {got}, "
                                  f"expected {sha256}); {fix}")
    return path


def packaged_csv() -> Path:
    """The TruthfulQA CSV shipped in this package (817 questions), its checksum verified."""
    return verified_csv(PACKAGED_CSV)


def load_packaged() -> tuple[list[TruthfulQAItem], dict[str, Any]]:
    """The packaged CSV's items and their source record (as ``load_with_source``, under a name
    that is the same on every machine, not this install's path)."""
    items, source = load_with_source(packaged_csv())
    return items, {**source, "name": PACKAGED_NAME}


def load_hub() -> list[TruthfulQAItem]:
    from datasets import load_dataset
    ds = load_dataset(HUB_ID, "multiple_choice", split="validation")
    return [_from_hf_record(r) for r in ds]
