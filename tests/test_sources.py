"""bench.data.sources: every accepted file type and TRL format loads to the same canonical rows,
provenance hashes the rows, and every unusable source is one line naming the problem."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydantic
import pytest

from bench.api import DataError
from bench.data.sources import Loaded, SourceError, SourceSpec, load, parse_source, render

OPT = "scenario.options.preferences"


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


Q1, Q2 = [msg("user", "What color is the sky?")], [msg("user", "Where is the sun?")]
A1, B1 = [msg("assistant", "It is blue.")], [msg("assistant", "It is green.")]
A2, B2 = [msg("assistant", "In the sky.")], [msg("assistant", "In the sea.")]

PREFS = [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
         {"prompt": "The sun is", "chosen": " hot.", "rejected": " cold."},
         {"prompt": "Grass is", "chosen": " green.", "rejected": " purple."}]
PREFS_CONV = [{"prompt": Q1, "chosen": A1, "rejected": B1},
              {"prompt": Q2, "chosen": A2, "rejected": B2}]
DEMOS = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in PREFS]
DEMOS_CONV = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in PREFS_CONV]


# --------------------------------------------------------------------------- writers


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def json_array(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def csv(path: Path, rows: list[dict]) -> Path:
    import pandas as pd
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def parquet(path: Path, rows: list[dict]) -> Path:
    from datasets import Dataset
    Dataset.from_list(rows).to_parquet(str(path))
    return path


def saved(path: Path, rows: list[dict]) -> Path:
    from datasets import Dataset
    Dataset.from_list(rows).save_to_disk(str(path))
    return path


def saved_dict(path: Path, rows: list[dict]) -> Path:
    from datasets import Dataset, DatasetDict
    DatasetDict({"train": Dataset.from_list(rows[:1]),
                 "test": Dataset.from_list(rows)}).save_to_disk(str(path))
    return path


WRITERS = {  # name: (writer, file name, split that holds all the rows)
    "jsonl": (jsonl, "data.jsonl", "train"), "json lines": (jsonl, "data.json", "train"),
    "json array": (json_array, "data.json", "train"), "csv": (csv, "data.csv", "train"),
    "parquet": (parquet, "data.parquet", "train"), "dataset folder": (saved, "ds", "train"),
    "datasetdict folder": (saved_dict, "dd", "test")}
CONVERSATIONAL_WRITERS = [w for w in WRITERS if w != "csv"]  # a CSV cell holds a string


def write(tmp_path: Path, writer: str, rows: list[dict]) -> tuple[Path, str]:
    fn, name, split = WRITERS[writer]
    return fn(tmp_path / name, rows), split


def load_as(path: Path, kind: str, **spec) -> Loaded:
    return load(SourceSpec(path=str(path), **spec), kind, OPT)


def renamed(rows: list[dict], names: dict[str, str]) -> list[dict]:
    return [{names.get(k, k): v for k, v in r.items()} for r in rows]


# --------------------------------------------------------------------------- preferences


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("mapped", [False, True], ids=["canonical", "column map"])
def test_standard_preferences_load_alike_from_every_file_type(tmp_path, writer, mapped):
    names = {"prompt": "question", "chosen": "good", "rejected": "bad"} if mapped else {}
    path, split = write(tmp_path, writer, renamed(PREFS, names))
    columns = {v: k for k, v in names.items()}
    got = load_as(path, "preferences", split=split, columns=columns)
    assert got.rows == PREFS and not got.conversational and got.kind == "preferences"
    assert got.provenance["format"] == "preference, explicit prompt, standard"


@pytest.mark.parametrize("writer", CONVERSATIONAL_WRITERS)
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_conversational_preferences_load_alike(tmp_path, writer, implicit):
    rows = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]}
            for r in PREFS_CONV] if implicit else PREFS_CONV
    path, split = write(tmp_path, writer, rows)
    got = load_as(path, "preferences", split=split)
    assert got.rows == PREFS_CONV and got.conversational
    how = "implicit" if implicit else "explicit"
    assert got.provenance["format"] == f"preference, {how} prompt, conversational"


def test_implicit_standard_prompt_is_the_shared_prefix(tmp_path):
    rows = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]}
            for r in PREFS]
    got = load_as(jsonl(tmp_path / "p.jsonl", rows), "preferences")
    assert got.rows == PREFS  # the space before the first difference goes to the completions
    assert got.provenance["format"] == "preference, implicit prompt, standard"


def test_implicit_prompt_matches_trl_extract_prompt(tmp_path):
    data_utils = pytest.importorskip("trl.data_utils")
    rows = [{"chosen": "The sky is blue.", "rejected": "The sky is green."},
            {"chosen": "Answer: yes", "rejected": "Answer: no"},
            {"chosen": "abcd", "rejected": "abce"},
            {"chosen": "a b", "rejected": "a b c"},  # no difference within chosen
            {"chosen": Q1 + A1, "rejected": Q1 + B1},
            {"chosen": Q1 + A1 + Q2 + A2, "rejected": Q1 + A1 + Q2 + B2},
            {"chosen": Q1 + A1, "rejected": Q1 + A1 + Q2 + B2}]  # no difference within chosen
    for i, row in enumerate(rows):
        got = load_as(jsonl(tmp_path / f"{i}.jsonl", [row]), "preferences").rows[0]
        assert got == data_utils.extract_prompt(row), row


def test_string_prompt_beside_full_conversations_is_ignored_as_trl_does(tmp_path):
    rows = [{"prompt": "What color is the sky?", "chosen": Q1 + A1, "rejected": Q1 + B1}]
    got = load_as(jsonl(tmp_path / "p.jsonl", rows), "preferences")
    assert got.rows == PREFS_CONV[:1]


def test_message_extras_are_dropped_so_sources_agree(tmp_path):
    rows = [{"prompt": [{**Q1[0], "name": "ann"}], "chosen": A1, "rejected": B1}]
    assert load_as(jsonl(tmp_path / "p.jsonl", rows), "preferences").rows == PREFS_CONV[:1]


# --------------------------------------------------------------------------- other kinds


@pytest.mark.parametrize("writer", ["jsonl", "csv", "parquet", "dataset folder"])
def test_unpaired_preferences(tmp_path, writer):
    rows = [{"prompt": "The sky is", "completion": " blue.", "label": True},
            {"prompt": "The sky is", "completion": " green.", "label": False}]
    as_ints = [{**r, "label": int(r["label"])} for r in rows]
    path, split = write(tmp_path, writer, as_ints if writer == "csv" else rows)
    got = load_as(path, "unpaired", split=split)
    assert got.rows == rows and all(type(r["label"]) is bool for r in got.rows)
    assert got.provenance["format"] == "unpaired preference, standard"


def test_unpaired_conversational(tmp_path):
    rows = [{"prompt": Q1, "completion": A1, "label": True},
            {"prompt": Q1, "completion": B1, "label": False}]
    got = load_as(jsonl(tmp_path / "u.jsonl", rows), "unpaired")
    assert got.rows == rows and got.conversational


@pytest.mark.parametrize("writer", ["jsonl", "csv", "parquet", "datasetdict folder"])
def test_demonstrations_prompt_completion_and_text(tmp_path, writer):
    path, split = write(tmp_path, writer, DEMOS)
    assert load_as(path, "demonstrations", split=split).rows == DEMOS
    texts = [{"text": r["prompt"] + r["completion"]} for r in DEMOS]
    (tmp_path / "lm").mkdir()
    path, split = write(tmp_path / "lm", writer, texts)
    got = load_as(path, "demonstrations", split=split)
    assert got.rows == [{"prompt": "", "completion": t["text"]} for t in texts]
    assert got.provenance["format"] == "language modeling, standard"


def test_demonstrations_conversational_shapes_agree(tmp_path):
    pc = load_as(jsonl(tmp_path / "pc.jsonl", DEMOS_CONV), "demonstrations")
    chats = [{"messages": r["prompt"] + r["completion"]} for r in DEMOS_CONV]
    lm = load_as(parquet(tmp_path / "lm.parquet", chats), "demonstrations")
    assert pc.rows == lm.rows == DEMOS_CONV and pc.conversational and lm.conversational
    assert pc.provenance["format"] == "prompt-completion, conversational"
    assert lm.provenance["format"] == "language modeling, conversational"
    assert pc.provenance["sha256"] == lm.provenance["sha256"]
    # the prompt is everything before the last assistant message, which is the completion;
    # a user turn after it has no answer to learn and is left out
    system = [msg("system", "Be brief.")]
    longer = [{"messages": system + Q1 + A1}, {"messages": Q1 + B1 + Q2 + A2 + Q1}]
    assert load_as(jsonl(tmp_path / "long.jsonl", longer), "demonstrations").rows == [
        {"prompt": system + Q1, "completion": A1}, {"prompt": Q1 + B1 + Q2, "completion": A2}]


def test_prompts_from_every_shape(tmp_path):
    want = [{"prompt": "The sky is"}, {"prompt": "So, I started to"}]
    txt = tmp_path / "p.txt"
    txt.write_text("The sky is\n\n  So, I started to  \n", encoding="utf-8")
    rtp = [{"filename": "a.txt", "prompt": {"text": "The sky is", "toxicity": 0.1},
            "continuation": {"text": " blue", "toxicity": 0.0}},
           {"filename": "b.txt", "prompt": {"text": "So, I started to", "toxicity": None},
            "continuation": {"text": " run", "toxicity": 0.2}}]
    extra = [{**w, "id": i, "source": "web"} for i, w in enumerate(want)]
    sources = {"txt": (txt, {}), "jsonl": (jsonl(tmp_path / "p.jsonl", want), {}),
               "rtp": (jsonl(tmp_path / "rtp.jsonl", rtp), {}),
               "extra columns": (parquet(tmp_path / "x.parquet", extra), {}),
               "mapped csv": (csv(tmp_path / "q.csv", renamed(want, {"prompt": "question"})),
                              {"question": "prompt"})}
    formats = {}
    for name, (path, columns) in sources.items():
        got = load_as(path, "prompts", columns=columns)
        assert got.rows == want, name
        formats[name] = got.provenance["format"]
    assert formats["rtp"] == "prompt-only, RealToxicityPrompts, standard"
    assert formats["txt"] == "prompt-only, standard"
    conv = load_as(jsonl(tmp_path / "c.jsonl", [{"prompt": Q1}]), "prompts")
    assert conv.rows == [{"prompt": Q1}] and conv.conversational


def test_split_slices_apply_to_files_and_folders(tmp_path):
    assert load_as(jsonl(tmp_path / "p.jsonl", PREFS), "preferences",
                   split="train[:2]").rows == PREFS[:2]
    folder = saved_dict(tmp_path / "dd", PREFS)
    assert load_as(folder, "preferences", split="test[1:]").rows == PREFS[1:]
    assert load_as(folder, "preferences", split="train+test[:1]").rows == PREFS[:1] * 2
    txt = tmp_path / "p.txt"
    txt.write_text("a\nb\nc\nd\n", encoding="utf-8")
    assert load_as(txt, "prompts", split="train[50%:]").rows == [{"prompt": "c"},
                                                                  {"prompt": "d"}]


# --------------------------------------------------------------------------- provenance


def test_provenance_hashes_rows_not_paths(tmp_path):
    a = load_as(jsonl(tmp_path / "a.jsonl", PREFS), "preferences")
    b = load_as(parquet(tmp_path / "b.parquet", PREFS), "preferences")
    (tmp_path / "c").mkdir()
    c = load_as(jsonl(tmp_path / "c" / "a.jsonl", PREFS), "preferences")
    assert a.provenance["sha256"] == b.provenance["sha256"] == c.provenance["sha256"]
    assert a.provenance["files"] == c.provenance["files"] != b.provenance["files"]
    assert a.provenance == {**c.provenance, "source": a.provenance["source"]}
    path = tmp_path / "a.jsonl"  # one byte edited in place: " hot." -> " hit."
    path.write_text(path.read_text(encoding="utf-8").replace(" hot.", " hit."),
                    encoding="utf-8")
    edited = load_as(path, "preferences")
    assert edited.provenance["sha256"] != a.provenance["sha256"]
    assert edited.provenance["files"] != a.provenance["files"]
    assert a.provenance["n"] == 3 and a.provenance["revision"] is None
    assert (a.provenance["source"], a.provenance["split"]) == (str(tmp_path / "a.jsonl"),
                                                               "train")


def test_folder_provenance_lists_its_files(tmp_path):
    got = load_as(saved_dict(tmp_path / "dd", PREFS), "preferences", split="test")
    assert "dataset_dict.json" in got.provenance["files"]
    assert any(f.startswith("test/") and f.endswith(".arrow") for f in got.provenance["files"])


def test_hub_id_goes_to_load_dataset_and_records_the_commit(tmp_path, monkeypatch):
    import datasets
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = saved(tmp_path / "org___prefs" / "default" / "0.0.0" / commit, PREFS)
    asked = {}

    def fake_load_dataset(path, name=None, **kw):  # the hub's answer, served from "its cache"
        asked.update(path=path, name=name, **kw)
        return datasets.load_from_disk(str(folder))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    got = load(parse_source({"path": "org/prefs", "name": "default", "revision": "main"}, OPT),
               "preferences", OPT)
    assert asked == {"path": "org/prefs", "name": "default", "split": "train",
                     "revision": "main"}
    assert got.rows == PREFS and got.provenance["revision"] == commit
    assert got.provenance["files"] == {} and got.provenance["source"] == "org/prefs"


# --------------------------------------------------------------------------- parse_source


def test_parse_source():
    assert parse_source("org/data", OPT) == SourceSpec(path="org/data")
    spec = parse_source({"path": "d.csv", "split": "train[:10]",
                         "columns": {"question": "prompt"}}, OPT)
    assert spec.split == "train[:10]" and spec.columns == {"question": "prompt"}
    with pytest.raises(pydantic.ValidationError):
        spec.path = "other"  # frozen


@pytest.mark.parametrize("value, expect", [
    ({"path": "d.csv", "spilt": "test"}, "spilt"), ({"split": "test"}, "path"),
    ({"path": ""}, "path"), (3, "got int"), ({"path": "d.csv", "columns": ["a"]}, "columns")])
def test_parse_source_refuses(value, expect):
    with pytest.raises(SourceError) as e:
        parse_source(value, OPT)
    assert expect in str(e.value) and OPT in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- bad sources


def _bad_json(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "chosen": \n', encoding="utf-8")
    return tmp_path / "bad.jsonl", {}


def _not_saved(tmp_path):
    (tmp_path / "plain").mkdir()
    jsonl(tmp_path / "plain" / "x.jsonl", PREFS)
    return tmp_path / "plain", {}


def _rows(rows, **spec):
    return lambda tmp_path: (jsonl(tmp_path / "p.jsonl", rows), spec)


def _file(name, text, **spec):
    def make(tmp_path):
        (tmp_path / name).write_text(text, encoding="utf-8")
        return tmp_path / name, spec
    return make


BAD = {  # name: (make the source, kind, words the one-line message must hold)
    "missing file": (lambda p: (p / "nope.jsonl", {}), "preferences",
                     ["nope.jsonl", "no such file"]),
    "unknown suffix": (_file("d.xlsx", "x"), "preferences",
                       ["unknown file type '.xlsx'", ".jsonl"]),
    "not a save_to_disk folder": (_not_saved, "preferences", ["save_to_disk", "plain"]),
    "folder without the split": (lambda p: (saved_dict(p / "dd", PREFS), {"split": "dev"}),
                                 "preferences", ["no split 'dev'", "test, train"]),
    "file split other than train": (_rows(PREFS, split="test"), "preferences",
                                    ["one split", "train"]),
    "bad split spec": (_rows(PREFS, split="train[:x]"), "preferences", ["train[:x]", "slice"]),
    "empty file": (_file("e.jsonl", "\n"), "preferences", ["empty"]),
    "empty split": (_rows(PREFS, split="train[:0]"), "preferences", ["no rows"]),
    "empty txt": (_file("e.txt", " \n\n"), "prompts", ["no rows"]),
    "txt for preferences": (_file("e.txt", "a"), "preferences", [".txt", "prompts only"]),
    "malformed json": (_bad_json, "preferences", ["could not be read as jsonl"]),
    "missing column": (_rows([{"question": "q", "good": "a", "bad": "b"}]), "preferences",
                       ["needs chosen and rejected", "columns present: question, good, bad",
                        'columns = {question = "prompt", good = "chosen", bad = "rejected"}']),
    "missing prompt column": (_rows([{"question": "q"}]), "prompts",
                              ['columns = {question = "prompt"}']),
    "column map names an absent column": (_rows(PREFS, columns={"question": "prompt"}),
                                          "preferences", ["'question'", "chosen, prompt"]),
    "chosen is an int": (_rows([PREFS[0], {"prompt": "p", "chosen": 3, "rejected": "r"}]),
                         "preferences", ["row 1", "chosen is int 3", "must be a string"]),
    "message without content": (_rows([{"prompt": [{"role": "user"}], "chosen": A1,
                                        "rejected": B1}]), "preferences",
                                ["row 0", "prompt message 0", '"content"']),
    "message without role": (_rows([PREFS_CONV[0], {**PREFS_CONV[1], "chosen": [
        {"content": "x"}]}]), "preferences", ["row 1", "chosen message 0", '"role"']),
    "label yes": (_rows([{"prompt": "p", "completion": "c", "label": True},
                         {"prompt": "p", "completion": "c", "label": "yes"}]), "unpaired",
                  ["row 1", "label is 'yes'", "true or false"]),
    "label 2": (_rows([{"prompt": "p", "completion": "c", "label": 2}]), "unpaired",
                ["label is 2"]),
    "mixed in a row": (_rows([{"prompt": Q1, "chosen": "a", "rejected": "b"}]), "preferences",
                       ["row 0", "mixes standard and conversational"]),
    "mixed demonstration": (_rows([{"prompt": "p", "completion": A1}]), "demonstrations",
                            ["row 0", "mixes standard and conversational"]),
    "implicit, no shared message": (_rows([{"chosen": Q1 + A1, "rejected": Q2 + B2}]),
                                    "preferences", ["row 0", "share no leading message",
                                                    "add a prompt column"]),
    "implicit, no shared text": (_rows([{"chosen": "Yes.", "rejected": "No."}]),
                                 "preferences", ["share no leading text", "prompt column"]),
    "identical pair": (_rows([{"chosen": "Same.", "rejected": "Same."}]), "preferences",
                       ["identical"]),
    "messages without an assistant": (_rows([{"messages": Q1}]), "demonstrations",
                                      ["row 0", "no assistant message"]),
    "hub id offline": (lambda p: ("someone/no-such-dataset", {}), "preferences",
                       ["someone/no-such-dataset", "not in the local cache", "local",
                        "connect"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_source_is_one_line(tmp_path, name):
    make, kind, words = BAD[name]
    path, spec = make(tmp_path)
    with pytest.raises(SourceError) as e:
        load(SourceSpec(path=str(path), **spec), kind, OPT)
    text = str(e.value)
    assert isinstance(e.value, DataError) and isinstance(e.value, ValueError)
    assert "\n" not in text and text.startswith(f"{OPT}: {path}")
    for word in words:
        assert word in text, (word, text)
    assert e.value.__cause__ is None  # no datasets traceback chained beneath the line


def test_rows_that_disagree_on_format_are_refused(tmp_path):
    # datasets reads a JSON column of mixed types as JSON values, row by row
    path = jsonl(tmp_path / "m.jsonl", [{"prompt": "a"}, {"prompt": Q1}])
    with pytest.raises(SourceError) as e:
        load_as(path, "prompts")
    assert str(e.value) == (f"{OPT}: {path}: row 1 is conversational but row 0 is not; make "
                            f"all rows strings or all message lists")


def test_unknown_kind(tmp_path):
    with pytest.raises(SourceError, match="unknown kind of data 'pairs'"):
        load_as(jsonl(tmp_path / "p.jsonl", PREFS), "pairs")


def test_local_read_leaves_no_cache_behind(tmp_path, monkeypatch):
    import tempfile

    import datasets
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "in").mkdir()
    for writer in (jsonl, csv, parquet):
        load_as(writer(tmp_path / "in" / f"p.{writer.__name__}", PREFS), "preferences")
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["p.csv", "p.jsonl",
                                                                  "p.parquet"]
    assert not (tmp_path / "hf").exists() and not any((tmp_path / "tmp").iterdir())


# --------------------------------------------------------------------------- render


@pytest.fixture(scope="module")
def chat_template(tiny_real_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_real_model)
    return lambda messages, gen: tok.apply_chat_template(messages, tokenize=False,
                                                         add_generation_prompt=gen)


def test_render_with_a_real_chat_template(chat_template):
    out = render(PREFS_CONV, "preferences", True, chat_template, source=OPT)
    first = out[0]
    assert first["prompt"].endswith("<|im_start|>user\nWhat color is the sky?<|im_end|>\n"
                                    "<|im_start|>assistant\n")
    assert first["chosen"] == "It is blue.<|im_end|>\n"
    assert first["rejected"] == "It is green.<|im_end|>\n"
    assert first["prompt"] + first["chosen"] == chat_template(Q1 + A1, False)
    assert all(isinstance(v, str) for row in out for v in row.values())
    prompts = render([{"prompt": Q2}], "prompts", True, chat_template, source=OPT)
    assert prompts[0]["prompt"] == chat_template(Q2, True)
    unpaired = render([{"prompt": Q1, "completion": B1, "label": False}], "unpaired", True,
                      chat_template, source=OPT)
    assert unpaired[0]["completion"] == "It is green.<|im_end|>\n"
    assert unpaired[0]["label"] is False


def test_render_falls_back_to_the_content_and_says_so(caplog):
    def template(messages, gen):  # renders the last turn differently once it is answered
        body = "|".join(m["content"] for m in messages)
        return body + ("|>" if gen else "")
    with caplog.at_level(logging.WARNING, logger="alignbench"):
        out = render(DEMOS_CONV[:1], "demonstrations", True, template, source=OPT)
    assert out == [{"prompt": "What color is the sky?|>", "completion": "It is blue."}]
    assert "assistant content alone" in caplog.text


def test_render_standard_rows_unchanged_and_conversational_needs_a_template():
    assert render(PREFS, "preferences", False, None, source=OPT) == PREFS
    with pytest.raises(SourceError) as e:
        render(PREFS_CONV, "preferences", True, None, source=OPT)
    assert str(e.value) == (f"{OPT} is conversational but the model has no chat template; give "
                            f"standard (string) rows or a model with a chat template")
