"""A tiny served world: 8 rendered clips + 1 synthetic clip, a random-weight tiny encoder, an
index built from them, an EASE ranker over 6 users, and a frame index."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from embeddings.encoders import TINY_MODEL, load_encoder, pool_frames
from embeddings.index import VideoIndex
from embeddings.index.frames import FrameIndex
from embeddings.video import sample_frames
from embeddings.video.samples import make_sample_catalog
from recsys.app import stages
from recsys.ranking.artifacts import save_trained


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    catalog = make_sample_catalog(root / "clips", n_clips=8, seed=0, size=(64, 64), n_frames=16, fps=8)
    encoder = load_encoder(TINY_MODEL, "none", device="cpu")
    video_emb, frame_emb, frames = [], [], []
    for row in catalog.itertuples():
        s = sample_frames(row.path, n_frames=3)
        f = encoder.encode_images(s.frames)
        frame_emb.append(f)
        video_emb.append(pool_frames(f))
        frames += [{"video_id": row.video_id, "timestamp_s": float(t), "frame_rank": j} for j, t in enumerate(s.timestamps_s)]
    meta = catalog[["video_id", "path", "caption", "color", "shape"]].copy()
    meta["path"] = meta["path"].astype(str)
    meta["synthetic"] = False
    index = VideoIndex.build(np.stack(video_emb).astype(np.float32), meta["video_id"].tolist(),
                             metadata=meta, encoder=encoder.describe(), device="cpu")
    # one synthetic clip: a copy of clip 0 with provenance, as a montage backfill would add it
    syn_path = root / "synthetic" / "syn-0.mp4"
    syn_path.parent.mkdir()
    shutil.copyfile(catalog.path.iloc[0], syn_path)
    index.add(video_emb[0][None].astype(np.float32), ["syn-0"], metadata=pd.DataFrame([{
        "video_id": "syn-0", "path": str(syn_path), "caption": None, "synthetic": True,
        "prompt": catalog.caption.iloc[0], "backend": "montage", "seed": 0,
        "source_shots": json.dumps([{"video_id": catalog.video_id.iloc[1], "timestamp_s": 0.5}])}]))
    index.save(root / "index")
    fi = FrameIndex.build(np.vstack(frame_emb).astype(np.float32), pd.DataFrame(frames),
                          encoder=encoder.describe(), device="cpu")
    fi.save(root / "frames")
    # users 0-2 watch the first four clips, users 3-5 the last four: the obvious next items
    ids = catalog.video_id.tolist()
    rows = [(f"u{u}", ids[i]) for u in range(3) for i in range(4) if i != u] + \
           [(f"u{u}", ids[i]) for u in range(3, 6) for i in range(4, 8) if i != u + 1]
    df = pd.DataFrame(rows, columns=["user_id", "item_id"])
    df["rating"] = 1.0
    save_trained(root / "ranker", stages.train_model(df, "ease", {"l2": 1.0}))
    return {"root": root, "catalog": catalog, "encoder": encoder, "interactions": df,
            "video_emb": np.stack(video_emb).astype(np.float32)}
