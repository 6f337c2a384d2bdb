"""Batch size chosen to fit memory: the analytic per-image estimate and the power-of-two choice."""

import pytest

from embeddings.encoders.batch_size import choose_batch_size, per_image_bytes
from embeddings.encoders.open_clip import TINY_MODEL, load_encoder


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(TINY_MODEL, "none", device="cpu")


def test_per_image_estimate_follows_the_vit_formula(encoder):
    v = encoder.model.visual
    t = v.grid_size[0] * v.grid_size[1] + 1
    w, heads = v.transformer.width, v.transformer.resblocks[0].attn.num_heads
    s = encoder.image_size[0]
    assert per_image_bytes(encoder) == 2 * (9 * t * w + 2 * heads * t * t) * 4 + 3 * s * s * 4


def test_largest_power_of_two_that_fits_then_caps(encoder):
    per = per_image_bytes(encoder)
    assert choose_batch_size(encoder, memory_bytes=per * 2 * 20) == 16  # 20 fit in half -> 16
    assert choose_batch_size(encoder, memory_bytes=per) == 1  # never below 1
    assert choose_batch_size(encoder, memory_bytes=10**15) == 64  # CPU cap
    assert choose_batch_size(encoder, memory_bytes=10**15, max_batch=100) == 64
    assert choose_batch_size(encoder, memory_bytes=10**15, max_batch=300) == 256
    assert choose_batch_size(encoder) >= 1  # measures this machine's free memory
    with pytest.raises(ValueError, match="fraction"):
        choose_batch_size(encoder, fraction=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        choose_batch_size(encoder, memory_bytes=0)
