"""Montage backend on solid-colour clips rendered by the test (the right answer is the colour)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from generation.backends import MontageBackend, get_backend, split_phrases

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}
AXIS = {"red": 0, "green": 1, "blue": 2}


def fake_encode_text(texts):
    """Phrase -> one-hot on the first colour word it contains (dim 3 = no colour)."""
    out = np.zeros((len(texts), 4), dtype=np.float32)
    for i, t in enumerate(texts):
        hit = [AXIS[c] for c in AXIS if c in t.lower()]
        out[i, hit[0] if hit else 3] = 1.0
    return out


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Three 2-second solid-colour videos, two shots each (t=0.5 s strong, t=1.5 s weaker)."""
    from embeddings.video.write import write_video

    folder = tmp_path_factory.mktemp("montage")
    rows, emb = [], []
    for name, rgb in COLOURS.items():
        path = folder / f"{name}.mp4"
        write_video(path, np.broadcast_to(np.array(rgb, np.uint8), (16, 32, 32, 3)).copy(), 8)
        for ts, strength in ((0.5, 1.0), (1.5, 0.8)):
            rows.append({"video_id": name, "path": str(path), "timestamp_s": ts})
            v = np.full(4, 0.05, np.float32)
            v[AXIS[name]] = strength
            emb.append(_unit(v))
    broken = folder / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 50)
    return folder, pd.DataFrame(rows), np.stack(emb), broken


def _dominant(frames):
    """Index of the dominant RGB channel of each frame."""
    return frames.reshape(len(frames), -1, 3).mean(axis=1).argmax(axis=1)


def test_split_phrases_rule():
    assert split_phrases("a red circle, then a blue square and a green star") == [
        "a red circle", "a blue square", "a green star"]
    assert split_phrases("dog; cat. Bird followed by fish") == ["dog", "cat", "Bird", "fish"]
    assert split_phrases("a dog with a red ball") == ["a dog with a red ball"]
    assert split_phrases("sandy beach") == ["sandy beach"]  # 'and' only as a whole word
    assert split_phrases(" , and ") == [", and"]
    with pytest.raises(ValueError, match="prompt=''"):
        split_phrases("")


def test_picks_expected_shots_in_phrase_order(library):
    _, shots, emb, _ = library
    backend = MontageBackend(shots, emb, fake_encode_text, shot_seconds=1.0)
    clip = backend.generate("blue sky, red car then green field", num_frames=12, height=32,
                            width=32, fps=8, seed=0)
    assert clip.frames.shape == (12, 32, 32, 3) and clip.frames.dtype == np.uint8
    src = clip.provenance["source_shots"]
    assert [s["video_id"] for s in src] == ["blue", "red", "green"]
    assert all(s["timestamp_s"] == 0.5 for s in src)  # the stronger shot of each video
    assert [s["phrase"] for s in src] == ["blue sky", "red car", "green field"]
    assert src[0]["similarity"] == pytest.approx(float(emb[4] @ _unit([0, 0, 1, 0])))
    np.testing.assert_array_equal(_dominant(clip.frames), [2] * 4 + [0] * 4 + [1] * 4)
    prov = clip.provenance
    assert prov["backend"] == "montage" and prov["prompt"].startswith("blue sky")
    assert prov["phrases"] == ["blue sky", "red car", "green field"] and prov["seed"] == 0
    assert prov["settings"]["num_frames"] == 12


def test_resize_trim_loop_and_determinism(library):
    _, shots, emb, _ = library
    backend = MontageBackend(shots, emb, fake_encode_text, shot_seconds=0.25)  # 2 frames at 8 fps
    a = backend.generate("red, green", num_frames=7, height=16, width=24, fps=8, seed=5)
    b = backend.generate("red, green", num_frames=7, height=16, width=24, fps=8, seed=5)
    assert a.frames.shape == (7, 16, 24, 3)
    np.testing.assert_array_equal(_dominant(a.frames), [0, 0, 0, 0, 1, 1, 1])  # 4 + 3, looped
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.provenance == b.provenance


def test_no_shot_reused_and_no_same_video_twice_in_a_row(library):
    _, shots, emb, _ = library
    backend = MontageBackend(shots, emb, fake_encode_text)
    src = backend.generate("red, red, red", num_frames=6, height=32, width=32, fps=8)
    ids = [(s["video_id"], s["timestamp_s"]) for s in src.provenance["source_shots"]]
    assert len(set(ids)) == 3
    assert ids[0] == ("red", 0.5) and ids[1][0] != "red"  # another video exists: take it
    assert ids[2] == ("red", 1.5)


def test_broken_file_is_skipped_with_warning(library, caplog):
    _, shots, emb, broken = library
    shots2 = pd.concat([shots, pd.DataFrame([{"video_id": "broken", "path": str(broken),
                                               "timestamp_s": 0.5}])], ignore_index=True)
    emb2 = np.vstack([emb, _unit([1, 0, 0, 0])])  # the best match for "red", but unreadable
    backend = MontageBackend(shots2, emb2, fake_encode_text)
    with caplog.at_level(logging.WARNING, logger="generation.backends.montage"):
        clip = backend.generate("red", num_frames=4, height=32, width=32, fps=8)
    assert clip.provenance["source_shots"][0]["video_id"] == "red"
    assert "broken.mp4" in caplog.text
    assert (_dominant(clip.frames) == 0).all()


def test_montage_checks(library):
    _, shots, emb, _ = library
    backend = MontageBackend(shots, emb, fake_encode_text)
    with pytest.raises(ValueError, match=r"num_frames=2 .*3 phrases"):
        backend.generate("red, green, blue", num_frames=2, height=32, width=32)
    with pytest.raises(ValueError, match="width=33"):
        backend.generate("red", width=33)
    with pytest.raises(ValueError, match="norm"):
        MontageBackend(shots, emb * 2, fake_encode_text)
    with pytest.raises(ValueError, match="missing columns"):
        MontageBackend(shots.drop(columns="path"), emb, fake_encode_text)
    with pytest.raises(ValueError, match="shot_embeddings has shape"):
        MontageBackend(shots, emb[:2], fake_encode_text)
    with pytest.raises(ValueError, match=r"encode_text returned shape \(1, 3\)"):
        MontageBackend(shots, emb, lambda t: np.ones((len(t), 3))).generate(
            "red", num_frames=2, height=32, width=32)


def test_registered_as_montage(library):
    _, shots, emb, _ = library
    backend = get_backend("montage", shots=shots, shot_embeddings=emb, encode_text=fake_encode_text)
    assert isinstance(backend, MontageBackend) and backend.name == "montage"
    fp = backend.fingerprint()
    assert fp != MontageBackend(shots, emb, fake_encode_text, shot_seconds=2.0).fingerprint()


def test_timestamp_past_end_is_skipped(library, caplog):
    _, shots, emb, _ = library
    late = shots.iloc[[0]].assign(timestamp_s=10.0)  # red.mp4 lasts 2 s
    backend = MontageBackend(pd.concat([late, shots], ignore_index=True),
                             np.vstack([_unit([1, 0, 0, 0]), emb]), fake_encode_text)
    with caplog.at_level(logging.WARNING, logger="generation.backends.montage"):
        clip = backend.generate("red", num_frames=2, height=32, width=32, fps=8)
    assert clip.provenance["source_shots"][0]["timestamp_s"] == 0.5
    assert "skipping shot 0" in caplog.text


def test_seed_only_breaks_exact_ties(library):
    _, shots, emb, _ = library
    tied = np.tile(_unit([0, 0, 0, 1]), (len(shots), 1))  # every shot equally good
    backend = MontageBackend(shots, tied, fake_encode_text)
    picks = {seed: backend.generate("grey", num_frames=1, height=32, width=32, seed=seed)
             .provenance["source_shots"][0]["shot_index"] for seed in range(8)}
    assert len(set(picks.values())) > 1  # the seed decides among ties
    again = backend.generate("grey", num_frames=1, height=32, width=32, seed=3)
    assert again.provenance["source_shots"][0]["shot_index"] == picks[3]
    # no tie: the seed changes nothing
    strict = MontageBackend(shots, emb, fake_encode_text)
    assert {strict.generate("red", num_frames=1, height=32, width=32, seed=s)
            .provenance["source_shots"][0]["timestamp_s"] for s in range(4)} == {0.5}
