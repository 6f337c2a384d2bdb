"""Multilingual open_clip architectures (XLM-R text tower) need Hugging Face hub files even for
random weights; offline, load_encoder must say so clearly instead of surfacing a bare OSError."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    from embeddings.encoders import PretrainedWeightsUnavailable, load_encoder
    try:
        enc = load_encoder("xlm-roberta-base-ViT-B-32", "none", device="cpu")
    except PretrainedWeightsUnavailable as e:
        print("UNAVAILABLE", e)
    else:  # the tokenizer was in the HF cache: then Chinese captions must embed
        out = enc.encode_text(["一个人在餐厅里掰手腕", "a dog barking"])
        print("BUILT", out.shape)
""")


@pytest.mark.slow
def test_xlmr_model_builds_or_fails_with_a_clear_offline_error():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    if out.startswith("BUILT"):
        assert "(2, 512)" in out
    else:
        assert out.startswith("UNAVAILABLE")
        assert "'xlm-roberta-base'" in out and "Hugging Face cache" in out
