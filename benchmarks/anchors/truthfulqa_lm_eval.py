"""The anchor for the TruthfulQA speed target: lm-evaluation-harness scoring the same file.

Not part of the suite (lm-eval is the optional ``anchors`` extra, which no test installs).
Install it into a side environment (`python3 -m venv --system-site-packages /tmp/lmeval &&
/tmp/lmeval/bin/pip install lm_eval==0.4.13`, the extra's pin) and run

    /tmp/lmeval/bin/python benchmarks/anchors/truthfulqa_lm_eval.py MODEL.gguf CSV [--limit N] [--stride N]

It converts the CSV to the Hugging Face ``multiple_choice`` schema exactly as alignbench's loader
reads it, registers lm-eval's own truthfulqa_mc1/mc2 task definitions on that local file (the
hub copy is not reachable offline), runs lm-eval (batch 16, float32) and alignbench on the same
questions, and prints both scores, the per-question differences and both wall times.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
output_type: multiple_choice
validation_split: validation
num_fewshot: 0
doc_to_text: !function utils.doc_to_text
doc_to_target: 0
doc_to_choice: "{{{{{field}.choices}}}}"
{extra}metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("csv")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--stride", type=int, default=1, help="every Nth question (the suite's "
                    "SmolLM2 test pins lm-eval's scores on every 20th)")
    a = ap.parse_args()
    import lm_eval
    from bench.data.truthfulqa import load_csv
    from evals import truthfulqa as TQ

    items = load_csv(Path(a.csv))[::a.stride][:a.limit]
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "tq.jsonl"
    data.write_text("".join(json.dumps({
        "question": it.question,
        "mc1_targets": {"choices": it.mc1_choices, "labels": [1] + [0] * (len(it.mc1_choices) - 1)},
        "mc2_targets": {"choices": it.mc2_choices, "labels": it.mc2_labels}}) + "\n"
        for it in items))
    lm_tq = Path(lm_eval.__file__).parent / "tasks" / "truthfulqa"
    utils = (lm_tq / "utils.py").read_text() + (
        "\n\ndef doc_to_text(doc):\n    return " + repr(TQ.QA_PRIMER)
        + " + '\\n\\nQ: ' + doc['question'] + '\\nA:'\n")
    (tmp / "utils.py").write_text(utils)
    (tmp / "local_mc1.yaml").write_text(TASK.format(name="local_mc1", data=data,
                                                    field="mc1_targets", extra=""))
    (tmp / "local_mc2.yaml").write_text(TASK.format(
        name="local_mc2", data=data, field="mc2_targets",
        extra="process_results: !function utils.process_results_mc2\n"))
    model = Path(a.model)
    args = f"pretrained={model.parent},gguf_file={model.name}," \
           f"dtype=float32"
    if model.suffix != ".gguf":
        args = f"pretrained={model},dtype=float32"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", args,
                    "--tasks", "local_mc1,local_mc2", "--include_path", str(tmp),
                    "--batch_size", "16", "--device", "cpu", "--output_path", str(tmp / "out"),
                    "--log_samples"], check=True)
    lm_seconds = time.perf_counter() - t
    samples = {}
    for f in (tmp / "out").rglob("samples_local_mc*.jsonl"):
        task = "mc1" if "mc1" in f.name else "mc2"
        for line in f.read_text().splitlines():
            r = json.loads(line)
            samples[(task, r["doc_id"])] = float(r["acc"])

    from bench.models import load_hf
    policy = load_hf(model)
    t = time.perf_counter()
    contexts = [TQ.QA_PRIMER + "\n\nQ: " + it.question + "\nA:" for it in items]
    scored = TQ.score_items(policy, items, contexts)
    ours_seconds = time.perf_counter() - t
    diffs = {"mc1": [], "mc2": []}
    for i, (it, (l1, l2)) in enumerate(zip(items, scored)):
        mc1, mc2 = TQ.mc_scores(l1, l2, it.mc2_labels)
        diffs["mc1"].append((mc1, samples[("mc1", i)]))
        diffs["mc2"].append((mc2, samples[("mc2", i)]))
    report = {"n": len(items), "lm_eval_seconds": round(lm_seconds, 1),
              "alignbench_seconds": round(ours_seconds, 1)}
    for m, v in diffs.items():
        ours, theirs = zip(*v)
        report[m] = {"alignbench": sum(ours) / len(ours), "lm_eval": sum(theirs) / len(theirs),
                     "max_abs_diff_per_question": max(abs(x - y) for x, y in v)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
