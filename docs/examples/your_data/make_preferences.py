"""Writes ``preferences.jsonl`` beside this file: the example preference set that
``docs/examples/your_data.toml`` trains on, made from half of TruthfulQA (Lin et al. 2022) so
that it ships offline. Each question gives up to two pairs, a correct answer chosen over an
incorrect one, in TRL's standard preference format (prompt/chosen/rejected). The other half of
the questions is never written, so the TruthfulQA eval of a matrix on this file scores those
alone (the scenario removes every question a training prompt contains).

    python docs/examples/your_data/make_preferences.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.data.truthfulqa import load_packaged

PAIRS_PER_QUESTION = 2
SEED = 0


def main() -> None:
    items, _ = load_packaged()
    order = np.random.default_rng(SEED).permutation(len(items))
    rows = []
    for i in sorted(order[: len(items) // 2]):
        it = items[i]
        true = [c for c, ok in zip(it.mc2_choices, it.mc2_labels) if ok]
        false = [c for c, ok in zip(it.mc2_choices, it.mc2_labels) if not ok]
        for t, f in list(zip(true, false))[:PAIRS_PER_QUESTION]:
            rows.append({"prompt": it.question, "chosen": t, "rejected": f})
    out = Path(__file__).with_name("preferences.jsonl")
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    print(f"{out}: {len(rows)} pairs from {len(items) // 2} questions")


if __name__ == "__main__":
    main()
