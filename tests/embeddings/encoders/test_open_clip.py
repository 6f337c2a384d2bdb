"""Tests for embeddings.encoders.open_clip on the tiny open_clip config with seeded random weights."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from embeddings.encoders.open_clip import (
    TINY_MODEL,
    PretrainedWeightsUnavailable,
    load_encoder,
    pool_frames,
)

TEXTS = ["a red circle moving right", "a blue square on a dark background", "green triangle"]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(TINY_MODEL, "none", device="cpu", seed=0)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 48, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(encoder):
    """open_clip's own model, transform and tokenizer, holding the encoder's weights."""
    model, _, transform = open_clip.create_model_and_transforms(TINY_MODEL, pretrained=None)
    model.load_state_dict(encoder.model.state_dict())
    model.eval()
    return model, transform, open_clip.get_tokenizer(TINY_MODEL)


@pytest.fixture
def offline(monkeypatch):
    """Make huggingface_hub fail at once instead of retrying an unreachable hub for ~50 s."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _state_dicts_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ parity with open_clip


def test_image_parity_with_open_clip(encoder, reference, frames):
    model, transform, _ = reference
    pil = [Image.fromarray(f) for f in frames]
    expected_batch = torch.stack([transform(im) for im in pil])
    assert torch.equal(encoder.preprocess(frames), expected_batch)
    with torch.no_grad():
        expected = model.encode_image(expected_batch, normalize=True).numpy()
    got = encoder.encode_images(frames)
    assert got.dtype == np.float32 and got.shape == (5, 64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_images(pil), expected, rtol=0, atol=1e-5)


def test_text_parity_with_open_clip(encoder, reference):
    model, _, tokenizer = reference
    with torch.no_grad():
        expected = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    got = encoder.encode_text(TEXTS)
    assert got.dtype == np.float32 and got.shape == (3, 64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_batching_does_not_change_results(encoder, frames):
    np.testing.assert_allclose(encoder.encode_images(frames, batch_size=2),
                               encoder.encode_images(frames), rtol=0, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_text(TEXTS, batch_size=1),
                               encoder.encode_text(TEXTS), rtol=0, atol=1e-6)


def test_outputs_unit_norm(encoder, frames):
    for out in (encoder.encode_images(frames), encoder.encode_text(TEXTS)):
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_preprocess_from_threads_matches_sequential(encoder, frames):
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = list(pool.map(encoder.preprocess, [frames[:2], frames[2:]]))
    assert torch.equal(torch.cat(batches), encoder.preprocess(frames))


def test_preprocess_rejects_bad_frames(encoder, frames):
    with pytest.raises(ValueError, match="uint8"):
        encoder.preprocess(frames.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"leading axis"):
        encoder.preprocess(frames[0])
    with pytest.raises(ValueError, match="empty"):
        encoder.preprocess([])
    with pytest.raises(ValueError, match=r"frames\[1\]"):
        encoder.preprocess([Image.fromarray(frames[0]), frames[1]])
    with pytest.raises(ValueError, match="preprocess"):
        encoder.encode_preprocessed(torch.zeros(2, 3, 16, 16))


# ------------------------------------------------------------------ seeded random weights


def test_seeded_weights_identical_across_loads_and_differ_by_seed(encoder):
    again = load_encoder(TINY_MODEL, "none", device="cpu", seed=0)
    other = load_encoder(TINY_MODEL, "none", device="cpu", seed=1)
    assert _state_dicts_equal(encoder.model, again.model)
    assert not _state_dicts_equal(encoder.model, other.model)
    assert encoder.describe() == {
        "model": TINY_MODEL, "pretrained": "none", "device": "cpu", "precision": "fp32",
        "embed_dim": 64, "random_weights": True, "seed": 0,
    }


def test_loading_does_not_disturb_caller_rng():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    load_encoder(TINY_MODEL, "none", device="cpu", seed=7)
    assert torch.equal(torch.rand(4), expected)


def test_random_weights_warn(caplog):
    with caplog.at_level("WARNING", logger="embeddings.encoders.open_clip"):
        load_encoder(TINY_MODEL, "none", device="cpu")
    assert any("meaningless" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ text validation


@pytest.mark.parametrize("texts, pattern", [
    ([], "empty"),
    (["ok", ""], r"texts\[1\]"),
    (["ok", "fine", "  \t\n"], r"texts\[2\]"),
    ("a bare string", "wrap it"),
    (["ok", 3], r"texts\[1\]"),
])
def test_encode_text_rejects_bad_texts(encoder, texts, pattern):
    with pytest.raises(ValueError, match=pattern):
        encoder.encode_text(texts)


# ------------------------------------------------------------------ model / tag / weights errors


def test_unknown_model_lists_close_names():
    with pytest.raises(ValueError, match="ViT-B-32") as info:
        load_encoder("ViT-B-33", "none")
    assert "ViT-B-33" in str(info.value)


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(ValueError, match="openai") as info:
        load_encoder("ViT-B-32", "not_a_tag")
    assert "not_a_tag" in str(info.value)


def test_pretrained_none_value_is_not_silently_random():
    with pytest.raises(ValueError, match="'none'"):
        load_encoder(TINY_MODEL, None)


def test_offline_tag_raises_weights_unavailable(offline, tmp_path):
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        load_encoder("ViT-B-32", "openai", device="cpu", cache_dir=tmp_path)
    message = str(info.value)
    assert "'ViT-B-32'" in message and "'openai'" in message
    assert "pretrained='/path/to/open_clip_pytorch_model.bin'" in message and "pretrained='none'" in message
    assert "--pretrained /path/to/open_clip_pytorch_model.bin" in info.value.cli_message
    assert isinstance(info.value, RuntimeError)
    clone = pickle.loads(pickle.dumps(info.value))
    assert str(clone) == message


def test_offline_hf_hub_raises_weights_unavailable(offline, tmp_path):
    name = "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    with pytest.raises(PretrainedWeightsUnavailable, match="laion/CLIP-ViT-B-32"):
        load_encoder(name, None, device="cpu", cache_dir=tmp_path)


def test_local_checkpoint_round_trip(encoder, frames, tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(encoder.model.state_dict(), path)
    loaded = load_encoder(TINY_MODEL, str(path), device="cpu", seed=99)
    assert not loaded.random_weights and loaded.describe()["seed"] is None
    assert loaded.pretrained == str(path.resolve())
    np.testing.assert_array_equal(loaded.encode_images(frames), encoder.encode_images(frames))
    np.testing.assert_array_equal(loaded.encode_text(TEXTS), encoder.encode_text(TEXTS))


def test_pretrained_tag_loads_weights_preprocessing_and_quick_gelu(encoder, frames, tmp_path,
                                                                     monkeypatch):
    # A registry entry with a 'file' key is open_clip's own way to point a tag at a local file,
    # so the whole tag path (tag lookup, "download", preprocess config, QuickGELU) runs offline.
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(encoder.model.state_dict(), path)
    cfg = {"file": str(path), "quick_gelu": True, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_MODEL, {"fake_tag": cfg})
    loaded = load_encoder(TINY_MODEL, "Fake-Tag", device="cpu")  # open_clip tag normalisation
    assert loaded.pretrained == "fake_tag" and not loaded.random_weights
    assert _state_dicts_equal(loaded.model, encoder.model)
    assert any(type(m).__name__ == "QuickGELU" for m in loaded.model.modules())
    assert not any(type(m).__name__ == "QuickGELU" for m in encoder.model.modules())
    # the tag's mean/std 0.5 map pixels into [-1, 1]; OpenAI's default statistics reach about -1.79
    batch = loaded.preprocess(frames)
    assert batch.shape == (5, 3, 32, 32) and float(batch.min()) >= -1.0 - 1e-6
    assert float(encoder.preprocess(frames).min()) < -1.5


def test_local_safetensors_round_trip(encoder, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.model.state_dict().items()}, str(path))
    loaded = load_encoder(TINY_MODEL, path, device="cpu")
    np.testing.assert_array_equal(loaded.encode_text(TEXTS), encoder.encode_text(TEXTS))


class _NotATensor:  # an arbitrary object: weights_only unpickling must refuse it
    pass


def test_checkpoint_with_arbitrary_objects_is_refused(encoder, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": encoder.model.state_dict(), "extra": _NotATensor()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_encoder(TINY_MODEL, str(path), device="cpu")


def test_checkpoint_for_another_architecture_is_refused(encoder, tmp_path):
    state = dict(encoder.model.state_dict())
    state.pop("text_projection")
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="strict"):
        load_encoder(TINY_MODEL, str(path), device="cpu")


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_encoder(TINY_MODEL, str(tmp_path / "missing.pt"))


# ------------------------------------------------------------------ device / precision


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present; the no-fallback error cannot occur")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_raises(device):
    with pytest.raises(RuntimeError, match="no silent CPU fallback"):
        load_encoder(TINY_MODEL, "none", device=device)


def test_bad_device_and_precision():
    with pytest.raises(ValueError, match="device"):
        load_encoder(TINY_MODEL, "none", device="gpu")
    with pytest.raises(ValueError, match="precision"):
        load_encoder(TINY_MODEL, "none", device="cpu", precision="fp64")
    with pytest.raises(ValueError, match="bf16"):
        load_encoder(TINY_MODEL, "none", device="cpu", precision="fp16")


def test_bf16_on_cpu_returns_float32_unit_vectors(encoder, frames):
    low = load_encoder(TINY_MODEL, "none", device="cpu", precision="bf16")
    for got, full in ((low.encode_images(frames), encoder.encode_images(frames)),
                      (low.encode_text(TEXTS), encoder.encode_text(TEXTS))):
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert np.all(np.sum(got * full, axis=1) > 0.95)  # same weights, lower precision


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_matches_cpu(encoder, frames, precision):
    gpu = load_encoder(TINY_MODEL, "none", device="cuda", precision=precision)
    assert _state_dicts_equal(gpu.model.float().cpu(), encoder.model) if precision == "fp32" else True
    atol = 1e-4 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(gpu.encode_images(frames), encoder.encode_images(frames), atol=atol)
    np.testing.assert_allclose(gpu.encode_text(TEXTS), encoder.encode_text(TEXTS), atol=atol)


# ------------------------------------------------------------------ pool_frames


def test_pool_frames_mean_then_normalise():
    pooled = pool_frames(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    assert pooled.dtype == np.float32 and pooled.shape == (2,)
    np.testing.assert_allclose(pooled, [2**-0.5, 2**-0.5], atol=1e-7)
    np.testing.assert_allclose(pool_frames(np.array([[3.0, 4.0]])), [0.6, 0.8], atol=1e-7)


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros((0, 4)), "n_frames>=1"),
    (np.ones(4), "shape"),
    (np.array([[1.0, np.nan], [1.0, 0.0]]), r"non-finite values in rows \[0\]"),
    (np.array([[1.0, 0.0], [-1.0, 0.0]]), "zero vector"),
])
def test_pool_frames_rejects_bad_input(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        pool_frames(bad)
