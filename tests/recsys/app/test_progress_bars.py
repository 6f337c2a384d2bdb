"""`evaluate`, `train --tune` and `calibrate` show tqdm bars like `embed`: on a terminal only, off with -q
(issue 14, item 10). stderr is replaced by a buffer that says it is a terminal (or not)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        items = rng.choice(np.arange((u % 2) * 10, (u % 2) * 10 + 10), size=6, replace=False)
        rows += [(f"u{u}", f"i{i}", 1.0, 1000 + t) for t, i in enumerate(items)]
    path = tmp_path_factory.mktemp("log") / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    """An index whose vectors are the tiny encoder's embeddings of its captions, and labelled pairs."""
    from embeddings.encoders import TINY_MODEL, load_encoder
    from embeddings.index import VideoIndex

    enc = load_encoder(TINY_MODEL, "none", device="cpu")
    captions = [f"a {w} scene number {i}" for i, w in enumerate("red blue green dog cat boat car tree".split())]
    ids = [f"v{i}" for i in range(len(captions))]
    folder = tmp_path_factory.mktemp("cal")
    VideoIndex.build(enc.encode_text(captions), ids, factory_string="Flat", encoder=enc.describe(),
                     metadata=pd.DataFrame({"video_id": ids, "caption": captions, "synthetic": False})
                     ).save(folder / "index")
    pd.DataFrame({"video_id": ids + ids[::-1], "caption": captions + [c + " again" for c in captions]}
                 ).to_csv(folder / "pairs.csv", index=False)
    return folder


def _stderr_of(monkeypatch, argv, *, terminal=True) -> str:
    buf = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    assert main(argv) == 0, buf.getvalue()
    return buf.getvalue()


def _commands(log_file, index_dir, tmp_path):
    return {
        "evaluate": ["evaluate", str(log_file), "--protocol", "leave_last_out", "--models", "popularity,ease",
                     "--bootstrap", "10", "--out", str(tmp_path / "rep")],
        "tune ease": ["train", str(log_file), "--model", "ease", "--tune", "--out", str(tmp_path / "m")],
        "calibrate: encode queries": ["calibrate", str(index_dir / "index"), "--captions",
                                      str(index_dir / "pairs.csv"), "-k", "3", "--plot", str(tmp_path / "rc.png")],
    }


def test_bars_on_a_terminal(log_file, index_dir, tmp_path, monkeypatch):
    for desc, argv in _commands(log_file, index_dir, tmp_path).items():
        err = _stderr_of(monkeypatch, argv)
        assert f"{desc}: 100%" in err, (desc, err[-2000:])
    assert "2/2" in _stderr_of(monkeypatch, _commands(log_file, index_dir, tmp_path)["evaluate"])  # 2 models


def test_no_bars_with_quiet_or_off_a_terminal(log_file, index_dir, tmp_path, monkeypatch):
    for desc, argv in _commands(log_file, index_dir, tmp_path).items():
        assert f"{desc}:" not in _stderr_of(monkeypatch, [*argv, "-q"]), desc
        assert f"{desc}:" not in _stderr_of(monkeypatch, argv, terminal=False), desc
