"""Fixtures shared by the generation tests."""

import numpy as np
import pandas as pd
import pytest

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder, pool_frames
from embeddings.video.decode import sample_frames
from embeddings.video.samples import make_sample_catalog


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny random-weight encoder, 4 rendered clips, their per-frame shots and pooled video embeddings."""
    folder = tmp_path_factory.mktemp("catalog")
    catalog = make_sample_catalog(folder, n_clips=4, seed=0, size=(32, 32), n_frames=16, fps=8)
    encoder = load_encoder(TINY_MODEL, "none", device="cpu")
    shots, shot_emb, video_emb = [], [], []
    for row in catalog.itertuples():
        sampled = sample_frames(row.path, n_frames=4)
        frame_emb = encoder.encode_images(sampled.frames)
        shot_emb.append(frame_emb)
        video_emb.append(pool_frames(frame_emb))
        shots += [{"video_id": row.video_id, "path": str(row.path), "timestamp_s": float(t)}
                  for t in sampled.timestamps_s]
    return {"encoder": encoder, "catalog": catalog, "shots": pd.DataFrame(shots),
            "shot_emb": np.vstack(shot_emb).astype(np.float32),
            "video_emb": np.stack(video_emb).astype(np.float32)}
