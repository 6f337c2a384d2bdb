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
    (d / "log_standard_4_08_to_4_21_pure.csv").write_text(
        "user_id,video_id,date,hourmin,time_ms,is_click,is_like,long_view,play_time_ms,duration_ms\n"
        "0,9,20220408,1000,1649390400123,1,0,1,5000,8000\n")
    (d / "log_random_4_22_to_5_08_pure.csv").write_text("user_id,video_id,time_ms,is_click\n0,8,1,1\n")
    df = datasets.load_kuairand(tmp_path)
    assert df[["user_id", "item_id", "rating", "timestamp"]].values.tolist() == [
        ["0", "9", 1.0, 1649390400]]
    assert df["long_view"].tolist() == [1]


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
