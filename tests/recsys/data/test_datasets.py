"""Dataset loaders: verified atomic download (network replaced), official formats, real copies."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data import datasets
from recsys.data.datasets import (
    SOURCES,
    Source,
    download,
    load_kuairec,
    load_kuairec_items,
    load_movielens,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def fake_net(monkeypatch):
    served, calls = {}, []

    def urlopen(url, timeout=60.0):
        calls.append(url)
        if url not in served:
            raise OSError(f"no network in tests: {url}")
        return _Resp(served[url])

    monkeypatch.setattr(datasets, "_urlopen", urlopen)
    return served, calls


def test_download_verifies_md5_and_unpacks_atomically(tmp_path, fake_net, monkeypatch):
    served, calls = fake_net
    blob = _zip({"ml-1m/ratings.dat": "1::10::5::978300760\n2::10::3::978300761\n",
                 "ml-1m/movies.dat": "10::GoldenEye (1995)::Action\n"})
    monkeypatch.setitem(SOURCES, "ml-1m", Source("https://x/ml-1m.zip", "ml-1m.zip",
                                                 md5=hashlib.md5(blob).hexdigest(), folder="ml-1m"))
    served["https://x/ml-1m.zip"] = blob
    df = load_movielens("1m", tmp_path, download=True)
    assert df[["user_id", "item_id"]].values.tolist() == [["1", "10"], ["2", "10"]]
    assert df["rating"].tolist() == [5.0, 3.0] and df["timestamp"].iloc[0] == 978300760
    assert (tmp_path / "ml-1m.zip").is_file() and (tmp_path / "ml-1m" / "ratings.dat").is_file()
    load_movielens("ml-1m", tmp_path, download=True)  # already there: no second fetch
    assert calls == ["https://x/ml-1m.zip"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    items = datasets.load_movielens_items("1m", tmp_path)
    assert items.iloc[0].tolist() == ["10", "GoldenEye (1995)", "Action"]


def test_download_rejects_a_corrupted_file(tmp_path, fake_net, monkeypatch):
    served, _ = fake_net
    monkeypatch.setitem(SOURCES, "ml-1m", Source("https://x/ml-1m.zip", "ml-1m.zip", md5="0" * 32,
                                                 folder="ml-1m"))
    served["https://x/ml-1m.zip"] = _zip({"ml-1m/ratings.dat": "1::2::3::4\n"})
    with pytest.raises(ValueError, match="md5 of the download"):
        download("ml-1m", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind


def test_download_checksums_published_elsewhere_and_missing(tmp_path, fake_net, monkeypatch):
    served, _ = fake_net
    blob = _zip({"KuaiRec/data/small_matrix.csv":
                 "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
                 "0,5,3000,1000,x,20200705,1593878903.4,3.0\n"
                 "0,6,1000,1000,x,20200705,1593878904.9,1.0\n"
                 "1,5,2000,1000,x,20200705,,2.0\n"})
    monkeypatch.setitem(SOURCES, "kuairec", Source("https://z/KuaiRec.zip", "KuaiRec.zip",
                                                   zenodo_record="1", folder="KuaiRec"))
    served["https://z/KuaiRec.zip"] = blob
    served["https://zenodo.org/api/records/1"] = (
        b'{"files": [{"key": "KuaiRec.zip", "checksum": "md5:' + hashlib.md5(blob).hexdigest().encode()
        + b'"}]}')
    df = load_kuairec(tmp_path, download=True)
    assert df["item_id"].tolist() == ["5", "6"]  # the row without a timestamp is dropped (logged)
    assert df["like"].tolist() == [True, False] and df["rating"].tolist() == [3.0, 1.0]
    assert df["timestamp"].tolist() == [1593878903, 1593878904]
    assert df.attrs["like_rule"] == "watch_ratio > 2.0"
    assert load_kuairec(tmp_path, like_threshold=0.5)["like"].all()
    with pytest.raises(ValueError, match="no published checksum"):
        download("microlens-100k", tmp_path / "m")
    with pytest.raises(ValueError, match="unknown"):
        download("ml-3m", tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_movielens("25m", tmp_path / "nothing")


def test_movielens_csv_variants_and_microlens(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    df = load_movielens("latest-small", tmp_path)
    assert df.iloc[0][["user_id", "item_id", "rating"]].tolist() == ["1", "31", 2.5]
    m = tmp_path / "MicroLens-100k"
    (m / "covers").mkdir(parents=True)
    (m / "MicroLens-100k_pairs.csv").write_text("userID,videoID,timestamp\n7,100,5\n7,101,9\n")
    (m / "MicroLens-100k_title_en.csv").write_text("item,title\n100,a cat\n101,a dog\n")
    (m / "covers" / "100.jpg").write_bytes(b"\xff\xd8")
    inter, items = datasets.load_microlens(tmp_path)
    assert inter["item_id"].tolist() == ["100", "101"]
    assert items["title"].tolist() == ["a cat", "a dog"]
    assert items["cover_path"].iloc[0].endswith("100.jpg") and pd.isna(items["cover_path"].iloc[1])
    (m / "MicroLens-100k_pairs.csv").unlink()
    (m / "MicroLens-50k_pairs.tsv").write_text("7\t100 101 100\n8\t101\n")
    inter, _ = datasets.load_microlens(tmp_path)
    # user 7 saw 100 twice: the later (position 2) is kept
    assert sorted(map(tuple, inter[["user_id", "item_id", "timestamp"]].values.tolist())) == [
        ("7", "100", 2), ("7", "101", 1), ("8", "101", 0)]


def test_kuairand_standard_logs(tmp_path):
    d = tmp_path / "KuaiRand-Pure" / "data"
    d.mkdir(parents=True)
    # the header of KuaiRand-Pure's log_standard_*.csv (KuaiRand README), two real-format rows
    header = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
              "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
              "is_profile_enter,is_rand,tab\n")
    (d / "log_standard_4_08_to_4_21_pure.csv").write_text(
        header + "0,9,20220408,1000,1649390400123,1,0,0,1,0,0,1,5000,8000,0,12,0,0,1\n"
        "0,7,20220408,1000,1649390401999,0,1,1,0,1,1,0,300,9000,4,0,1,0,4\n")
    (d / "log_standard_4_22_to_5_08_pure.csv").write_text(
        header + "1,9,20220422,1200,1650600000000,1,1,0,0,0,0,0,700,8000,0,0,0,0,2\n")
    (d / "log_random_4_22_to_5_08_pure.csv").write_text("user_id,video_id,time_ms,is_click\n0,8,1,1\n")
    df = datasets.load_kuairand(tmp_path)
    assert df[["user_id", "item_id", "rating", "timestamp"]].values.tolist() == [
        ["0", "9", 1.0, 1649390400], ["0", "7", 0.0, 1649390401], ["1", "9", 1.0, 1650600000]]
    # every feedback column survives, row-aligned, for multi-behaviour labels
    for col, want in {"is_like": [0, 1, 1], "is_follow": [0, 1, 0], "is_comment": [1, 0, 0],
                      "is_forward": [0, 1, 0], "is_hate": [0, 1, 0], "long_view": [1, 0, 0],
                      "play_time_ms": [5000, 300, 700], "duration_ms": [8000, 9000, 8000],
                      "profile_stay_time": [0, 4, 0], "comment_stay_time": [12, 0, 0],
                      "is_profile_enter": [0, 1, 0], "tab": [1, 4, 2], "hourmin": [1000, 1000, 1200],
                      "time_ms": [1649390400123, 1649390401999, 1650600000000]}.items():
        assert df[col].tolist() == want, col
    (d / "log_standard_4_22_to_5_08_pure.csv").write_text("user_id,video,time_ms\n1,9,5\n")
    with pytest.raises(ValueError, match=r"\['video_id', 'is_click'\] missing.*unmodified KuaiRand"):
        datasets.load_kuairand(tmp_path)


def test_kuairec_keeps_every_feedback_column(tmp_path):
    d = tmp_path / "KuaiRec" / "data"
    d.mkdir(parents=True)
    (d / "small_matrix.csv").write_text(  # KuaiRec 2.0's header (its README), real-format rows
        "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
        "14,148,4381,6067,2020-07-05 05:27:48.378,20200705,1593898068.378,0.722103\n"
        "14,183,11635,6100,2020-07-05 05:28:00.057,20200705,1593898080.057,1.907377\n")
    df = load_kuairec(tmp_path, like_threshold=1.0)
    assert df["watch_ratio"].tolist() == [0.722103, 1.907377] == df["rating"].tolist()
    assert df["play_duration"].tolist() == [4381, 11635] and df["video_duration"].tolist() == [6067, 6100]
    assert df["date"].tolist() == [20200705, 20200705] and df["like"].tolist() == [False, True]
    assert df["time"].tolist() == ["2020-07-05 05:27:48.378", "2020-07-05 05:28:00.057"]
    assert df["unix_time"].tolist() == [1593898068.378, 1593898080.057]
    assert df["timestamp"].tolist() == [1593898068, 1593898080]
    (d / "small_matrix.csv").write_text("user_id,video_id,timestamp\n1,2,3.0\n")
    with pytest.raises(ValueError, match=r"\['watch_ratio'\] missing.*unmodified KuaiRec"):
        load_kuairec(tmp_path)


@pytest.mark.realdata
def test_real_movielens_100k_and_kuairec_side_tables():
    ml = DATA / "ml-100k"
    if not (ml / "u.data").is_file():
        pytest.skip(f"real data not found at {ml}")
    assert hashlib.md5((ml / "u.data").read_bytes()).hexdigest() == "6e47046882bad158b0efbb84cd5cb987"
    df = load_movielens("100k", ml)
    assert len(df) == 100_000 and df["user_id"].nunique() == 943 and df["item_id"].nunique() == 1682
    assert df["rating"].between(1, 5).all()
    items = datasets.load_movielens_items("100k", DATA)
    assert len(items) == 1682 and items.iloc[0]["title"] == "Toy Story (1995)"
    assert items.iloc[0]["genres"] == "Animation|Children's|Comedy"
    kr = DATA / "kuairec"
    if not (kr / "kuairec_caption_category.csv").is_file():
        pytest.skip("KuaiRec side tables not found")
    side = load_kuairec_items(kr)
    assert len(side) == 10_728 and side["item_id"].tolist()[:2] == ["0", "1"]
    assert side["tags"].iloc[1] == [27, 9]
    assert isinstance(side["caption"].iloc[0], str) and side["caption"].iloc[0]
    assert np.all(side["item_id"].astype(int).diff().dropna() == 1)
