"""`recsys data list` / `recsys data download`: offline errors name the URL and the place."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from recsys.cli import main
from recsys.data import datasets
from recsys.data.datasets import SOURCES, Source


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def offline(monkeypatch):
    def urlopen(url, timeout=60.0):
        raise OSError(f"<urlopen error no network: {url}>")

    monkeypatch.setattr(datasets, "_urlopen", urlopen)


def test_list_names_every_dataset_with_url_and_checksum(capsys):
    assert main(["data", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"ml-100k", "ml-25m", "kuairec", "kuairand-pure", "microlens-50k",
            "tiktok-mmssl"} <= set(rows)
    assert rows["ml-100k"]["checksum"] == "md5 0e33842e24a9c977be4e0107933c0723"
    assert rows["ml-100k"]["url"].endswith("/ml-100k.zip")


def test_offline_download_names_url_and_place_then_uses_the_file(tmp_path, offline, capsys,
                                                                  monkeypatch):
    blob = _zip({"ml-1m/ratings.dat": "1::10::5::978300760\n"})
    monkeypatch.setitem(SOURCES, "ml-1m", Source("https://x/ml-1m.zip", "ml-1m.zip",
                                                 md5=hashlib.md5(blob).hexdigest(), folder="ml-1m"))
    assert main(["data", "download", "ml-1m", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach https://x/ml-1m.zip" in err and str(tmp_path / "ml-1m.zip") in err
    (tmp_path / "ml-1m.zip").write_bytes(blob)  # the user fetched it by hand
    assert main(["data", "download", "ml-1m", "--root", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folder"] == str(tmp_path / "ml-1m")
    assert (tmp_path / "ml-1m" / "ratings.dat").is_file()


def test_hand_fetched_file_with_wrong_checksum_is_refused(tmp_path, offline, capsys, monkeypatch):
    monkeypatch.setitem(SOURCES, "ml-1m", Source("https://x/ml-1m.zip", "ml-1m.zip", md5="0" * 32,
                                                 folder="ml-1m"))
    (tmp_path / "ml-1m.zip").write_bytes(_zip({"ml-1m/ratings.dat": "1::2::3::4\n"}))
    assert main(["data", "download", "ml-1m", "--root", str(tmp_path)]) == 1
    assert "expected 00000000" in capsys.readouterr().err
    assert not (tmp_path / "ml-1m").exists()


def test_unknown_and_local_only_names_are_usage_errors(tmp_path, capsys):
    assert main(["data", "download", "ml-7m", "--root", str(tmp_path)]) == 2
    assert "recsys data list" in capsys.readouterr().err
    assert main(["data", "download", "tiktok-mmssl", "--root", str(tmp_path)]) == 2
    assert "MMSSL" in capsys.readouterr().err
