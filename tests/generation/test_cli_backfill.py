"""`recsys calibrate` and the new `recsys query` options, end to end on a tiny random-weight encoder.

Item vectors are the encoder's own text embeddings of their captions, so a caption's top-1 is
its item (cosine 1): labels are known without real weights.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder
from embeddings.index.video_index import VideoIndex
from recsys.cli import main

WORDS = "red blue green dog cat boat car tree sun moon river city night day bird fish".split()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    enc = load_encoder(TINY_MODEL, "none", device="cpu")
    captions = [f"a {a} {b}" for a, b in zip(WORDS, WORDS[3:] + WORDS[:3], strict=True)]
    vecs = enc.encode_text(captions)
    ids = [f"v{i}" for i in range(len(captions))]
    meta = pd.DataFrame({"video_id": ids, "caption": captions, "synthetic": False})
    folder = tmp_path_factory.mktemp("cli")
    VideoIndex.build(vecs, ids, metadata=meta, factory_string="Flat",
                     encoder=enc.describe()).save(folder / "index")
    queries = [f"the {w} {w}" for w in WORDS]
    q = enc.encode_text(queries)
    worst = [ids[int(np.argmin(vecs @ v))] for v in q]  # relevant = least similar: top-1 is wrong
    rows = [{"video_id": i, "caption": c} for i, c in zip(ids, captions, strict=True)]
    rows += [{"video_id": w, "caption": t} for w, t in zip(worst, queries, strict=True)]
    pd.DataFrame(rows).to_csv(folder / "pairs.csv", index=False)
    return folder


def test_calibrate_then_query_uses_it(index_dir, capsys):
    rc = main(["calibrate", str(index_dir / "index"), "--captions", str(index_dir / "pairs.csv"),
               "-k", "4", "--method", "isotonic", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["n_queries"] == 32 and out["n_synthetic_excluded"] == 0
    assert out["auroc_top1"] == 1.0 and out["threshold_source"] == "probability 0.5"
    assert (index_dir / "index" / "calibration.json").is_file()
    assert (index_dir / "index" / "risk_coverage.png").is_file()
    rc = main(["query", str(index_dir / "index"), "--text", "a red dog", "-k", "3", "--json"])
    (res,) = json.loads(capsys.readouterr().out)
    assert rc == 0 and 0.0 <= res["confidence"] <= 1.0
    assert res["threshold"] == 0.5  # the calibrated gate, read from the index folder
    assert res["results"][0]["video_id"] == "v0" and not res["backfill_triggered"]
    rc = main(["query", str(index_dir / "index"), "--text", "a red dog", "-k", "3", "--json",
               "--no-calibration"])
    (raw,) = json.loads(capsys.readouterr().out)
    assert raw["threshold"] is None and raw["confidence"] == pytest.approx(1.0, abs=1e-5)


def test_diffusers_without_gpu_fails_clearly(index_dir, capsys):
    pytest.importorskip("diffusers")
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the no-GPU error")
    rc = main(["query", str(index_dir / "index"), "--text", "a red dog", "--backfill", "diffusers",
               "--threshold", "1.0", "--out", str(index_dir / "out")])
    assert rc == 1 and "needs a CUDA GPU" in capsys.readouterr().err
