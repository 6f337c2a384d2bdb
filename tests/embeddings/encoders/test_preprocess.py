"""FrameTransform: the encoder's preprocessing in reader threads, bit-equal, without torch ops."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from embeddings.encoders.open_clip import TINY_MODEL, load_encoder
from embeddings.encoders.preprocess import FrameTransform


def _frames(n=3, h=50, w=90, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _reference(transform, frames):
    return torch.stack([transform(Image.fromarray(f)) for f in frames])


@pytest.mark.parametrize("size,shape", [(224, (3, 50, 90)), (224, (2, 300, 200)), (32, (4, 17, 33))])
def test_equals_open_clip_transform_bit_for_bit(size, shape):
    transform = open_clip.image_transform(size, is_train=False)
    ft = FrameTransform(transform)
    assert ft.numpy_tensor_steps
    frames = _frames(*shape)
    got = ft(frames)
    assert got.dtype == torch.float32 and got.shape == (shape[0], 3, size, size) and got.is_contiguous()
    assert torch.equal(got, _reference(transform, frames))


def test_equals_encoder_preprocess():
    enc = load_encoder(TINY_MODEL, "none", device="cpu")
    frames = _frames(5, 40, 64, seed=1)
    assert torch.equal(FrameTransform(enc.transform)(frames), enc.preprocess(frames))


def test_runs_no_torch_op_on_the_calling_thread():
    """Torch ops from a reader thread start an OpenMP team that competes with the encoder."""
    ft = FrameTransform(open_clip.image_transform(64, is_train=False))
    frames = _frames()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ft(frames)
    ops = {e.name for e in prof.events()} - {"aten::lift_fresh"}  # from_numpy's wrapper, no compute
    assert not ops, ops


def test_other_transforms_run_as_given_with_a_warning(caplog):
    def transform(im):
        return torch.from_numpy(np.asarray(im, np.float32)).permute(2, 0, 1) / 7.0

    with caplog.at_level(logging.WARNING, logger="embeddings.encoders.preprocess"):
        ft = FrameTransform(transform)
    assert not ft.numpy_tensor_steps
    assert "image by image" in caplog.text
    frames = _frames()
    assert torch.equal(ft(frames), _reference(transform, frames))


def test_picklable_for_process_readers():
    ft = FrameTransform(open_clip.image_transform(32, is_train=False))
    again = pickle.loads(pickle.dumps(ft))
    frames = _frames()
    assert torch.equal(again(frames), ft(frames))


def test_bad_frames_are_refused():
    ft = FrameTransform(open_clip.image_transform(32, is_train=False))
    with pytest.raises(ValueError, match="uint8"):
        ft(np.zeros((2, 8, 8, 3), np.float32))
