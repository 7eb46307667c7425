import json
import math

from bench import store


def test_canonical_key_ignores_key_order():
    assert store.content_key({"a": 1, "b": [1, 2]}) == store.content_key({"b": [1, 2], "a": 1})
    assert store.content_key({"a": 1}) != store.content_key({"a": 2})


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "x" / "result.json"
    store.atomic_write_json(p, {"v": 1.5, "bad": math.nan})
    assert json.loads(p.read_text()) == {"v": 1.5, "bad": None}  # never NaN in JSON
    assert [f.name for f in p.parent.iterdir()] == ["result.json"]


def test_read_json_detects_truncation(tmp_path):
    p = tmp_path / "r.json"
    store.atomic_write_json(p, {"metrics": {"a": 1.0}, "status": "ok"})
    full = p.read_text()
    p.write_text(full[: len(full) // 2])
    assert store.read_json(p) is None
    assert store.read_json(tmp_path / "missing.json") is None


def test_provenance_has_the_required_fields():
    prov = store.provenance("cpu")
    for k in ("git_commit", "git_dirty", "code_version", "python", "packages", "device"):
        assert k in prov
    assert prov["packages"]["torch"]
