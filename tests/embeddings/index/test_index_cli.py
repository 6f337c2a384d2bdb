"""CLI: `index build --factory auto --frames-out`, `index info`, `search --frames-index`."""

from __future__ import annotations

import json

import pytest

from recsys.cli import main

pytestmark = pytest.mark.slow  # embeds clips with tiny-clip: ~60 s on the loaded 2-core machine


def test_auto_build_frames_and_info(tmp_path, capsys):
    from embeddings.video.samples import make_sample_catalog

    clips = tmp_path / "clips"
    make_sample_catalog(clips, n_clips=4, size=(32, 32), n_frames=12, fps=6)
    emb, idx, fidx = tmp_path / "emb", tmp_path / "idx", tmp_path / "fidx"
    assert main(["embed", str(clips), "--out", str(emb), "--model", "tiny-clip", "--pretrained", "none",
                 "--frames", "3", "-q"]) == 0
    capsys.readouterr()
    assert main(["index", "build", str(emb), "--out", str(idx), "--factory", "auto",
                 "--frames-out", str(fidx), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["factory_string"] == "Flat" and out["tuning"]["recall@10"] == 1.0
    assert main(["index", "info", str(idx), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["tuning"]["recall@10"] == 1.0 and manifest["tuning"]["ranking"]
    assert main(["search", str(idx), "--frames-index", str(fidx), "--text", "a red circle", "-k", "3",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]
    assert res["level"] == "frame" and len(res["results"]) == 3
    assert len({r["video_id"] for r in res["results"]}) == 3  # one row per video
    assert all(r["timestamp_s"] >= 0 for r in res["results"])
