"""ClipEncoder.encode_text's truncated (EOT) fast path equals open_clip's full encode_text.

Lives here because the fast path was built for backfill's non-triggering query latency
(issue 7); it tests embeddings.encoders.open_clip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embeddings.encoders import open_clip as encoders
from embeddings.encoders.open_clip import TINY_MODEL, load_encoder

TEXTS = ["a dog", "a red circle moving right and then a blue square, followed by a boat at sunset",
         "x " * 120]  # the last one fills the 77-token context: EOT at the last position


def _reference(enc, texts):
    with torch.inference_mode():
        feats = enc.model.encode_text(enc.tokenizer(texts))
    return F.normalize(feats.float(), dim=-1).numpy()


def _check(enc, monkeypatch):
    calls = []
    real = encoders._encode_text_truncated
    monkeypatch.setattr(encoders, "_encode_text_truncated",
                        lambda m, t: calls.append((t.shape[0], int(t.argmax(-1).max()) + 1)) or real(m, t))
    for texts in (TEXTS[:1], TEXTS[:2], TEXTS):
        fast = enc.encode_text(texts)
        np.testing.assert_allclose(fast, _reference(enc, texts), atol=1e-5, rtol=0)
    # the fast path ran, on cut sequences: 'a dog' is SOT + 2 tokens + EOT = 4 positions of 77
    assert calls[0] == (1, 4) and calls[-1] == (3, 77)


def test_fast_path_equals_open_clip_tiny(monkeypatch):
    _check(load_encoder(TINY_MODEL, "none", device="cpu"), monkeypatch)


@pytest.mark.slow
def test_fast_path_equals_open_clip_vit_b_32_random_weights(monkeypatch):
    _check(load_encoder("ViT-B-32", "none", device="cpu"), monkeypatch)


def test_fast_path_only_for_causal_argmax_clip():
    enc = load_encoder(TINY_MODEL, "none", device="cpu")
    tokens = enc.tokenizer(["a dog"])
    assert encoders._can_truncate_text(enc.model, tokens)
    model = enc.model
    saved = model.text_pool_type
    try:
        model.text_pool_type = "last"  # pooling the last position needs all 77
        assert not encoders._can_truncate_text(model, tokens)
    finally:
        model.text_pool_type = saved
    assert not encoders._can_truncate_text(torch.nn.Linear(2, 2), tokens)
