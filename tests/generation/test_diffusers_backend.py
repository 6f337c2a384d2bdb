"""Diffusers backend: the real Wan / LTX / CogVideoX pipeline classes at toy size, random weights.

Skipped when diffusers is not installed (it is the ``generation`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from generation.backends import DiffusersBackend, get_backend  # noqa: E402
from generation.backends.diffusers_tiny import tiny_pipeline  # noqa: E402
from generation.cache import GenerationTimeout, cache_key, run_generation  # noqa: E402

SMALL = dict(num_frames=9, num_inference_steps=2, guidance_scale=5.0, fps=8)


@pytest.fixture(scope="module")
def wan():
    return DiffusersBackend("wan", pipe=tiny_pipeline("wan"), device="cpu", max_sequence_length=16)


def test_wan_two_steps_16x16_is_seeded_uint8(wan):
    a = wan.generate("a red dog", height=16, width=16, seed=0, **SMALL)
    b = wan.generate("a red dog", height=16, width=16, seed=0, **SMALL)
    assert a.frames.shape == (9, 16, 16, 3) and a.frames.dtype == np.uint8 and a.fps == 8
    assert np.array_equal(a.frames, b.frames)  # same seed, same clip (components in eval mode)
    assert a.frames.std() > 0
    p = a.provenance
    assert p["backend"] == "diffusers" and p["pipeline"] == "WanPipeline" and p["seed"] == 0
    assert p["settings"]["num_inference_steps"] == 2 and p["source_shots"] == []


@pytest.mark.slow
@pytest.mark.parametrize("kind,size,cls", [("wan", 16, "WanPipeline"), ("ltx", 32, "LTXPipeline"),
                                           ("cogvideox", 16, "CogVideoXPipeline")])
def test_every_family_two_steps_and_seed_matters(kind, size, cls):
    """LTX runs at 32x32: LTXPipeline.check_inputs demands multiples of 32."""
    backend = DiffusersBackend(kind, pipe=tiny_pipeline(kind), device="cpu", max_sequence_length=16)
    clip = backend.generate("a blue boat on water", height=size, width=size, seed=3, **SMALL)
    other = backend.generate("a blue boat on water", height=size, width=size, seed=4, **SMALL)
    assert clip.frames.shape == (9, size, size, 3) and clip.frames.dtype == np.uint8
    assert clip.provenance["pipeline"] == cls and not np.array_equal(clip.frames, other.frames)


def test_inputs_checked_before_any_work(wan):
    with pytest.raises(ValueError, match="height=24: the WanPipeline needs a multiple of 16; pass height=32"):
        wan.generate("x", height=24, width=16, seed=0, **SMALL)
    with pytest.raises(ValueError, match="num_frames=10: .* pass num_frames=9 or 13"):
        wan.generate("x", height=16, width=16, seed=0, **{**SMALL, "num_frames": 10})
    with pytest.raises(ValueError, match="guidance_scale"):
        wan.generate("x", height=16, width=16, seed=0, **{**SMALL, "guidance_scale": -1})


def test_timeout_between_denoising_steps(wan):
    with pytest.raises(GenerationTimeout):
        run_generation(wan, "a dog", timeout_s=1e-6, height=16, width=16, seed=0, **SMALL)


def test_cache_key_tells_weights_and_families_apart(wan):
    other = DiffusersBackend("wan", pipe=tiny_pipeline("wan", seed=1), device="cpu", max_sequence_length=16)
    kw = dict(height=16, width=16, **SMALL)
    assert cache_key("p", wan, kw, 0) != cache_key("p", other, kw, 0)
    assert wan.fingerprint()["pipeline"] == "wan" and len(wan.fingerprint()["weights_sha256"]) == 64


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_real_weights_need_a_gpu_no_silent_cpu_run():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        get_backend("diffusers")  # Wan 2.1 1.3B by default, device='auto'
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        DiffusersBackend("ltx", device="cuda")
    with pytest.raises(ValueError, match="device='cpu' with weights loaded by name"):
        DiffusersBackend("wan", device="cpu")


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="pipeline='sora'"):
        DiffusersBackend("sora")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        DiffusersBackend("wan", model=str(tmp_path), device="cpu", allow_cpu=True)
    with pytest.raises(ValueError, match="expects a LTXPipeline"):
        DiffusersBackend("ltx", pipe=tiny_pipeline("cogvideox"), device="cpu")


def test_missing_weights_offline_is_a_clear_error():
    from generation.backends import DiffusersUnavailable

    backend = DiffusersBackend("wan", model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", device="cpu",
                               allow_cpu=True, local_files_only=True)
    with pytest.raises(DiffusersUnavailable, match="huggingface-cli download"):
        backend.load()
