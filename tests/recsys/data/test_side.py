"""Sequence logs, item feature/text files and the short-video dataset loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.datasets import load_dataset
from recsys.data.side import ItemDataError, load_item_features, load_item_text, read_sequences

_ROOT = Path(__file__).resolve().parents[3]
# the project's own checkout sits beside shared/; a worktree one level deeper
DATA = next((p for p in (_ROOT.parent / "shared" / "data", _ROOT.parents[1] / "shared" / "data")
             if p.is_dir()), _ROOT.parent / "shared" / "data")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_sequences_keeps_order_as_position(tmp_path):
    p = _write(tmp_path / "s.tsv", "u1\t5 3 9\nu2\t3\n")
    df = read_sequences(p)
    assert df["user_id"].tolist() == ["u1", "u1", "u1", "u2"]
    assert df["item_id"].tolist() == ["5", "3", "9", "3"]
    assert df["position"].tolist() == [0, 1, 2, 0]
    assert df["timestamp"].tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize("text, row, word", [
    ("u1\t1 2\n\nu2\t3\n", 2, "empty line"),
    ("u1\t1 2 1\n", 1, "repeated"),
    ("u1\t1\nu1\t2\n", 2, "also has line 1"),
    ("u1 1 2\n", 1, "no tab"),
    ("u1\t\n", 1, "no item"),
])
def test_read_sequences_bad_input_names_file_and_row(tmp_path, text, row, word):
    p = _write(tmp_path / "bad.tsv", text)
    with pytest.raises(ItemDataError) as ei:
        read_sequences(p)
    assert ei.value.row == row and str(p) in str(ei.value) and word in str(ei.value)
    assert "fix:" in str(ei.value)


def test_read_sequences_repeat_rules(tmp_path):
    p = _write(tmp_path / "r.tsv", "u\t1 2 1 3\n")
    assert read_sequences(p, repeats="first")["item_id"].tolist() == ["1", "2", "3"]
    assert read_sequences(p, repeats="last")["item_id"].tolist() == ["2", "1", "3"]


def test_npy_features_row_count_nan_and_zero_rows(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    np.save(tmp_path / "f.npy", x)
    ids, got = load_item_features(tmp_path / "f.npy", n_items=4)
    assert ids.tolist() == ["0", "1", "2", "3"] and np.array_equal(got, x)
    with pytest.raises(ItemDataError, match="4 rows, expected 5"):
        load_item_features(tmp_path / "f.npy", n_items=5)
    x[2, 1] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(ItemDataError, match="row 3: item '2' has NaN"):
        load_item_features(tmp_path / "n.npy")
    x[2] = 0
    np.save(tmp_path / "z.npy", x)
    with pytest.raises(ItemDataError, match="all-zero"):
        load_item_features(tmp_path / "z.npy")
    assert load_item_features(tmp_path / "z.npy", allow_zero_rows=True)[1].shape == (4, 3)


def test_csv_and_parquet_features_aligned_by_id(tmp_path):
    df = pd.DataFrame({"item_id": ["b", "a", "c"], "f0": [2.0, 1.0, 3.0], "f1": [20., 10., 30.]})
    df.to_csv(tmp_path / "f.csv", index=False)
    ids, x = load_item_features(tmp_path / "f.csv", item_ids=["a", "b", "c"])
    assert ids.tolist() == ["a", "b", "c"] and x[:, 0].tolist() == [1.0, 2.0, 3.0]
    pd.DataFrame({"item_id": ["a", "b"], "vec": [[1.0, 0.0], [0.0, 1.0]]}).to_parquet(
        tmp_path / "f.parquet")
    _, x = load_item_features(tmp_path / "f.parquet", item_ids=["b", "a"])
    assert x.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ItemDataError, match=r"1 of 3 items have no feature vector \(e.g. \['z'\]"):
        load_item_features(tmp_path / "f.csv", item_ids=["a", "b", "z"])


def test_csv_features_non_numeric_cell_names_row(tmp_path):
    _write(tmp_path / "f.csv", "item_id,f0\na,1\nb,oops\n")
    with pytest.raises(ItemDataError, match="row 3: column 'f0' holds non-numeric 'oops'"):
        load_item_features(tmp_path / "f.csv")


def test_item_text(tmp_path):
    _write(tmp_path / "t.csv", 'item,title\n1,"cat video, #cats"\n2,\n')
    ids, texts = load_item_text(tmp_path / "t.csv", item_ids=["2", "1"])
    assert ids.tolist() == ["2", "1"] and texts == ["", "cat video, #cats"]


def test_load_dataset_tiktok_layout_on_tiny_files(tmp_path):
    _write(tmp_path / "train.tsv", "user\titem\n0\t1\n0\t2\n1\t0\n")
    _write(tmp_path / "val.tsv", "user\titem\n0\t3\n")
    np.save(tmp_path / "image_feat.npy", np.eye(4, dtype=np.float16) + 0.5)
    np.save(tmp_path / "audio_feat.npy", np.ones((4, 2), dtype=np.float16))
    d = load_dataset("tiktok-mmssl", tmp_path)
    assert d.items["item_id"].tolist() == ["0", "1", "2", "3"]  # item 3 has no training row
    assert d.validation["item_id"].tolist() == ["3"]
    assert d.item_features["visual"].shape == (4, 4)
    np.save(tmp_path / "audio_feat.npy", np.ones((3, 2), dtype=np.float16))
    with pytest.raises(ItemDataError, match="3 rows, expected 4"):
        load_dataset("tiktok-mmssl", tmp_path)


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="known: \\['microlens-50k', 'tiktok-mmssl'\\]"):
        load_dataset("tiktok", ".")


@pytest.mark.realdata
def test_real_tiktok_mmssl():
    if not (DATA / "tiktok-mmssl").is_dir():
        pytest.skip(f"no {DATA / 'tiktok-mmssl'}")
    d = load_dataset("tiktok-mmssl", DATA)
    assert len(d.interactions) == 59541 and len(d.validation) == 3051
    assert len(d.items) == 6710
    assert {k: v.shape for k, v in d.item_features.items()} == {"visual": (6710, 128),
                                                                "acoustic": (6710, 128)}


@pytest.mark.realdata
def test_real_microlens_50k():
    if not (DATA / "microlens-50k").is_dir():
        pytest.skip(f"no {DATA / 'microlens-50k'}")
    d = load_dataset("microlens-50k", DATA)
    df = d.interactions
    assert len(df) == 309708 and df["user_id"].nunique() == 50000
    assert len(d.items) == 19220 and (d.items["title"] != "").all()
    first = df[df["user_id"] == df["user_id"].iat[0]]
    assert first["position"].tolist() == list(range(len(first)))
