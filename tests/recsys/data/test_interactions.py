"""Tests for recsys.data.interactions: loading interaction logs, id maps, user_items."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.interactions import (
    INTERACTION_COLUMNS,
    InteractionFileError,
    build_dataset,
    drop_duplicate_interactions,
    load_interactions,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_udata_format_without_header(tmp_path):
    p = _write(tmp_path, "u.data", "1\t10\t3\t881250949\n2\t10\t4\t891717742\n1\t20\t5\t878887116\n")
    df = load_interactions(p)
    assert list(df.columns) == list(INTERACTION_COLUMNS)
    assert df["user_id"].tolist() == ["1", "2", "1"]
    assert df["item_id"].tolist() == ["10", "10", "20"]
    assert df["rating"].tolist() == [3.0, 4.0, 5.0]
    assert df["rating"].dtype == np.float64
    assert df["timestamp"].dtype == np.int64
    assert df["timestamp"].tolist() == [881250949, 891717742, 878887116]
    assert df.attrs["n_duplicates_dropped"] == 0


def test_csv_with_alias_header_and_extra_columns(tmp_path):
    p = _write(tmp_path, "r.csv", "userId,movieId,rating,timestamp,tag\n"
                                  "u1,m1,4.5,100,x\nu2,m1,2,200,y\n")
    df = load_interactions(p)
    assert list(df.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert df["user_id"].tolist() == ["u1", "u2"]
    assert df["rating"].tolist() == [4.5, 2.0]
    mapped = load_interactions(p, columns={"userId": "user_id", "movieId": "item_id"})
    assert list(mapped.columns) == ["user_id", "item_id", "rating"]
    assert mapped["rating"].tolist() == [1.0, 1.0]  # rating column not mapped


def test_csv_header_without_rating_gets_ones_and_kuairec_columns(tmp_path):
    p = _write(tmp_path, "k.csv", "user_id,video_id,play_duration,time,timestamp,watch_ratio\n"
                                  "0,5,100,2020-07-04 21:00:00,1593878903.438,0.72\n")
    df = load_interactions(p)
    assert df["item_id"].tolist() == ["5"]
    assert df["rating"].tolist() == [0.72]  # watch_ratio
    assert df["timestamp"].tolist() == [1593878903]  # 'timestamp' beats 'time'; floored
    p2 = _write(tmp_path, "n.csv", "user,item\na,b\nc,d\n")
    assert load_interactions(p2)["rating"].tolist() == [1.0, 1.0]



def test_signals_keep_named_feedback_columns(tmp_path):
    p = _write(tmp_path, "kr.csv", "user_id,video_id,time_ms,is_click,is_like,long_view\n"
                                   "u1,v1,1000,1,0,1\nu1,v2,2000,1,1,0\nu2,v1,3000,0,0,0\n")
    df = load_interactions(p, signals=["is_like", "long_view"])
    assert df["is_like"].tolist() == [0.0, 1.0, 0.0] and df["long_view"].tolist() == [1.0, 0.0, 0.0]
    assert "is_click" not in df.columns  # only the named signals are kept
    assert "is_like" not in load_interactions(p).columns
    with pytest.raises(InteractionFileError, match=r"no column 'is_share'.*is_click"):
        load_interactions(p, signals=["is_share"])
    bad = _write(tmp_path, "bad.csv", "user_id,item_id,is_like\nu1,v1,1\nu1,v2,yes\n")
    with pytest.raises(InteractionFileError, match=r"line 3.*non-numeric is_like"):
        load_interactions(bad, signals=["is_like"])
    neg = _write(tmp_path, "neg.csv", "user_id,item_id,is_like\nu1,v1,-1\n")
    with pytest.raises(InteractionFileError, match=r"line 2.*is_like negative"):
        load_interactions(neg, signals="is_like")
    with pytest.raises(ValueError, match="signals names a column 'rating'"):
        load_interactions(p, signals=["rating"])
    with pytest.raises(InteractionFileError, match="'video_id' is read as the item_id column"):
        load_interactions(p, signals=["video_id"])

def test_movielens_double_colon_and_explicit_columns(tmp_path):
    p = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    df = load_interactions(p)
    assert df["item_id"].tolist() == ["1193", "661"]
    p2 = _write(tmp_path, "x.txt", "a,b,999,7\n")
    df2 = load_interactions(p2, columns=("user_id", "item_id", None, "timestamp"))
    assert df2["timestamp"].tolist() == [7] and df2["rating"].tolist() == [1.0]


def test_parquet(tmp_path):
    p = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": [1, 2, 2], "item_id": [7, 7, 8], "rating": [1.0, 2.0, 3.0],
                  "timestamp": [5, 6, 7]}).to_parquet(p)
    df = load_interactions(p)
    assert df["user_id"].tolist() == ["1", "2", "2"]
    assert df["item_id"].tolist() == ["7", "7", "8"]
    assert df["timestamp"].dtype == np.int64


def test_parquet_nan_rating_names_row(tmp_path):
    p = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"],
                  "rating": [1.0, np.nan]}).to_parquet(p)
    with pytest.raises(InteractionFileError) as err:
        load_interactions(p)
    assert err.value.line == 2 and "NaN rating" in str(err.value)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("1\t2\t3\t4\n1\t2\t3\n", 2, "wrong number of fields"),
        ("1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2, "wrong number of fields"),
        ("user_id,item_id\na,b\nc,d\ne,f,g,h\n", 4, "wrong number of fields"),
        ("1::2::3\n4::5::6::7::8\n", 2, "wrong number of fields"),
        ("user_id,item_id,rating\na,b,1\nc,d,nan\n", 3, "NaN rating"),
        ("user_id,item_id,rating\na,b,1\nc,d,\n", 3, "NaN rating"),
        ("user_id,item_id,rating\na,b,1\nc,d,1\ne,f,good\n", 4, "non-numeric rating"),
        ("user_id,item_id\na,b\n,d\n", 3, "missing user_id"),
        ("1,2,3,4\n\n5,6,x,8\n", 3, "non-numeric rating"),  # blank line keeps numbering
    ],
)
def test_malformed_lines_name_the_line(tmp_path, text, line, words):
    p = _write(tmp_path, "bad.csv" if "," in text else "bad.tsv", text)
    with pytest.raises(InteractionFileError) as err:
        load_interactions(p)
    msg = str(err.value)
    assert err.value.line == line, msg
    assert f"line {line}" in msg and words in msg
    assert str(p) in msg and "user_id, item_id" in msg  # names file and expected columns
    assert isinstance(err.value, ValueError)


def test_empty_and_headerless_unknown_files(tmp_path):
    with pytest.raises(InteractionFileError, match="empty"):
        load_interactions(_write(tmp_path, "e.csv", "\n\n"))
    with pytest.raises(InteractionFileError, match="no data rows"):
        load_interactions(_write(tmp_path, "h.csv", "user_id,item_id\n"))
    with pytest.raises(InteractionFileError, match="2 to 4 fields"):
        load_interactions(_write(tmp_path, "w.csv", "a,b,c,d,e\n"))
    with pytest.raises(InteractionFileError, match="no column recognised as item_id"):
        load_interactions(_write(tmp_path, "u.csv", "user_id,foo\n1,2\n"))
    with pytest.raises(FileNotFoundError):
        load_interactions(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="not interaction columns"):
        load_interactions(_write(tmp_path, "c.csv", "1,2\n"), columns=("user", "item_id"))


def test_duplicates_keep_latest_timestamp_and_are_counted(tmp_path, caplog):
    p = _write(tmp_path, "d.csv", "user_id,item_id,rating,timestamp\n"
                                  "a,x,1,50\na,x,2,10\nb,y,3,5\na,x,4,50\nb,z,5,1\n")
    with caplog.at_level(logging.WARNING, logger="recsys.data.interactions"):
        df = load_interactions(p)
    assert df.attrs["n_duplicates_dropped"] == 2
    assert "2 duplicate" in caplog.text
    # latest timestamp wins; tie at 50 -> later row (rating 4); original order kept
    assert df[["user_id", "item_id", "rating"]].values.tolist() == [
        ["b", "y", 3.0], ["a", "x", 4.0], ["b", "z", 5.0]]


def test_duplicates_without_timestamp_keep_last():
    df = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "x", "x"],
                       "rating": [1.0, 2.0, 3.0]})
    out = drop_duplicate_interactions(df)
    assert out["rating"].tolist() == [2.0, 3.0] and out.attrs["n_duplicates_dropped"] == 1


def test_dataset_sorted_ids_and_user_items(caplog):
    df = pd.DataFrame({"user_id": ["10", "2", "2", "9"], "item_id": ["b", "a", "c", "a"],
                       "rating": [5.0, 3.0, 0.0, 1.0]})
    ds = build_dataset(df)
    assert ds.user_ids.tolist() == ["2", "9", "10"]  # numeric order for digit ids
    assert ds.item_ids.tolist() == ["a", "b", "c"]
    assert ds.user_index("10") == 2 and ds.user_index(9) == 1 and ds.item_index("c") == 2
    with pytest.raises(ValueError, match="not in this Dataset"):
        ds.user_index("nobody")
    m = ds.to_user_items(df)
    assert m.shape == (3, 3) and m.dtype == np.float32
    assert m.toarray().tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]
    r = ds.to_user_items(df, binary=False)
    assert r.toarray().tolist() == [[3, 0, 0], [1, 0, 0], [0, 5, 0]]  # zero rating not stored
    other = pd.DataFrame({"user_id": ["2", "77", "2"], "item_id": ["a", "a", "zz"]})
    with caplog.at_level(logging.WARNING, logger="recsys.data.interactions"):
        m2 = ds.to_user_items(other)
    assert m2.nnz == 1 and "2 of 3 rows dropped" in caplog.text
    dup = pd.DataFrame({"user_id": ["2", "2"], "item_id": ["a", "a"], "rating": [1.0, 2.0]})
    assert ds.to_user_items(dup).nnz == 1
    with pytest.raises(ValueError, match="drop_duplicate_interactions"):
        ds.to_user_items(dup, binary=False)


def test_text_ids_sort_lexicographically():
    ds = build_dataset(pd.DataFrame({"user_id": ["b", "a", "B"], "item_id": ["1", "01", "1"]}))
    assert ds.user_ids.tolist() == ["B", "a", "b"]
    assert ds.item_ids.tolist() == ["01", "1"]


@pytest.mark.realdata
def test_movielens_100k_real_file():
    path = DATA / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    df = load_interactions(path)
    assert len(df) == 100_000 and df.attrs["n_duplicates_dropped"] == 0
    ds = build_dataset(df)
    assert (ds.n_users, ds.n_items) == (943, 1682)
    assert ds.user_ids[0] == "1" and ds.item_ids[-1] == "1682"
    m = ds.to_user_items(df, binary=False)
    assert m.nnz == 100_000 and set(np.unique(m.data)) == {1, 2, 3, 4, 5}
    assert df["timestamp"].min() > 8e8
