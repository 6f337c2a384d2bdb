"""Strict JSON everywhere: no NaN/Infinity (JavaScript's JSON.parse rejects them), null for missing values."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embeddings._io import dumps_strict, write_json


def strict_loads(text: str):
    """``json.loads`` that raises on NaN / Infinity / -Infinity, as strict parsers do."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_strict_loads_refuses_what_plain_json_dumps_writes():
    with pytest.raises(ValueError, match="NaN"):
        strict_loads(json.dumps({"x": float("nan")}))


def test_dumps_strict_writes_null_for_missing_values(tmp_path):
    obj = {"nan": float("nan"), "inf": np.float32(np.inf), "na": pd.NA, "nat": pd.NaT, "i": np.int64(3),
           "f": np.float64(0.5), "arr": np.array([1.0, np.nan]), "t": (1, 2), "p": Path("/a/b"),
           "nested": [{"x": float("-inf")}], "when": pd.Timestamp("2024-01-02")}
    back = strict_loads(dumps_strict(obj))
    assert back == {"nan": None, "inf": None, "na": None, "nat": None, "i": 3, "f": 0.5, "arr": [1.0, None],
                    "t": [1, 2], "p": "/a/b", "nested": [{"x": None}], "when": "2024-01-02T00:00:00"}
    assert isinstance(back["i"], int)
    write_json(tmp_path / "c.json", {"auroc": float("nan")})  # calibration.json had NaN
    assert strict_loads((tmp_path / "c.json").read_text()) == {"auroc": None}


def test_search_records_of_synthetic_items_are_plain_json():
    """Synthetic rows lack captions (NaN), store source_shots as JSON text and seed in a float column."""
    from embeddings.index import VideoIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    meta = pd.DataFrame({"caption": ["a dog", "a cat", math.nan], "duration_s": [2.0, 3.0, math.nan],
                         "synthetic": [False, False, True], "seed": [math.nan, math.nan, 0.0],
                         "source_shots": [None, None, json.dumps([{"video_id": "v0", "timestamp_s": 0.5}])]})
    index = VideoIndex.build(x, ["v0", "v1", "syn"], metadata=meta, device="cpu")
    recs = index.search(x[2:3], k=3).to_records(index.metadata)[0]
    syn = next(r for r in recs if r["video_id"] == "syn")
    assert syn["caption"] is None and syn["duration_s"] is None
    assert syn["seed"] == 0 and isinstance(syn["seed"], int)
    assert syn["source_shots"] == [{"video_id": "v0", "timestamp_s": 0.5}]
    real = next(r for r in recs if r["video_id"] == "v0")
    assert real["caption"] == "a dog" and real["seed"] is None
    assert strict_loads(dumps_strict(recs)) == recs
