"""Backend interface: argument checks, output checks, registry, cache, budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generation.backends import (
    BACKENDS,
    Backend,
    BudgetExceeded,
    Clip,
    GenerationBudget,
    GenerationCache,
    cache_key,
    get_backend,
    register_backend,
)


class CountingBackend(Backend):
    """Solid-colour clips whose colour depends on the seed; counts real generations."""

    name = "counting"

    def __init__(self, shape_bug: bool = False):
        self.calls = 0
        self.shape_bug = shape_bug

    def _generate(self, prompt, *, negative_prompt, num_frames, height, width, fps,
                  num_inference_steps, guidance_scale, seed):
        self.calls += 1
        colour = np.array([(40 * seed) % 256, 200, 30], dtype=np.uint8)
        frames = np.broadcast_to(colour, (num_frames, height, width, 3)).copy()
        if self.shape_bug:
            frames = frames[:, :-2]
        return Clip(frames=frames, fps=float(fps),
                    provenance={"backend": self.name, "prompt": prompt, "seed": seed})


@pytest.fixture
def registry():
    saved = dict(BACKENDS)
    yield BACKENDS
    BACKENDS.clear()
    BACKENDS.update(saved)


SMALL = dict(num_frames=4, height=16, width=16, fps=4)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"prompt": ""}, "prompt=''"),
        ({"prompt": "   "}, "prompt='   '"),
        ({"prompt": None}, "prompt=None"),
        ({"negative_prompt": 3}, "negative_prompt=3"),
        ({"num_frames": 0}, "num_frames=0"),
        ({"num_frames": 2.0}, "num_frames=2.0"),
        ({"height": 255}, "height=255"),
        ({"height": 0}, "height=0"),
        ({"width": -4}, "width=-4"),
        ({"width": 15}, "width=15"),
        ({"fps": 0}, "fps=0"),
        ({"fps": float("nan")}, "fps=nan"),
        ({"num_inference_steps": 0}, "num_inference_steps=0"),
        ({"guidance_scale": -1.0}, "guidance_scale=-1.0"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"seed": True}, "seed=True"),
    ],
)
def test_generate_rejects_bad_arguments_naming_them(kwargs, needle):
    backend = CountingBackend()
    args = {"prompt": "a red circle", **SMALL, **kwargs}
    prompt = args.pop("prompt")
    with pytest.raises(ValueError) as err:
        backend.generate(prompt, **args)
    assert needle in str(err.value)
    assert "expected" in str(err.value)
    assert backend.calls == 0  # validated before any work


def test_odd_size_error_suggests_the_fix():
    with pytest.raises(ValueError, match=r"height=255.*pass height=256"):
        CountingBackend().generate("x", height=255, width=16, num_frames=1)


def test_generate_returns_checked_clip():
    clip = CountingBackend().generate("a red circle", **SMALL, seed=2)
    assert clip.frames.shape == (4, 16, 16, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 4.0 and clip.duration_s == 1.0
    assert clip.provenance["seed"] == 2


def test_backend_output_of_wrong_shape_is_caught():
    with pytest.raises(RuntimeError, match=r"shape .*expected \(4, 16, 16, 3\)"):
        CountingBackend(shape_bug=True).generate("x", **SMALL)


def test_registry(registry):
    register_backend("counting", CountingBackend)
    backend = get_backend("counting", shape_bug=False)
    assert isinstance(backend, CountingBackend)
    assert "montage" in BACKENDS  # registered on import
    with pytest.raises(ValueError, match=r"nope.*counting.*montage"):
        get_backend("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_backend("counting", lambda: CountingBackend())
    register_backend("counting", lambda: CountingBackend(), overwrite=True)
    with pytest.raises(ValueError, match="name=''"):
        register_backend("", CountingBackend)


def test_cache_key_identity():
    b = CountingBackend()
    k = cache_key("p", b, {"num_frames": 4}, 0)
    assert len(k) == 64 and int(k, 16) >= 0
    assert k == cache_key("p", b, {"num_frames": 4, "seed": 0}, 0)
    assert k != cache_key("p", b, {"num_frames": 4}, 1)
    assert k != cache_key("q", b, {"num_frames": 4}, 0)
    assert k != cache_key("p", b, {"num_frames": 5}, 0)
    assert k != cache_key("p", "other", {"num_frames": 4}, 0)
    # omitted settings are filled with generate()'s defaults
    assert cache_key("p", b, {}, 0) == cache_key("p", b, {"num_frames": 16, "height": 256}, 0)
    with pytest.raises(ValueError, match="unknown keys"):
        cache_key("p", b, {"num_frame": 4}, 0)


def test_cache_hit_avoids_second_generation(tmp_path):
    backend = CountingBackend()
    cache = GenerationCache(tmp_path / "cache")
    first = cache.get_or_generate(backend, "a green square", **SMALL, seed=3)
    second = cache.get_or_generate(backend, "a green square", **SMALL, seed=3)
    assert backend.calls == 1
    assert not first.hit and second.hit and first.key == second.key
    assert first.path.is_file() and first.path.suffix == ".mp4"
    meta = json.loads(first.path.with_suffix(".json").read_text())
    assert meta["provenance"] == {"backend": "counting", "prompt": "a green square", "seed": 3}
    assert second.clip.frames.shape == first.clip.frames.shape
    # lossy H.264, solid colour: within a few levels
    diff = np.abs(second.clip.frames.astype(int) - first.clip.frames.astype(int))
    assert diff.mean() < 6
    # a new cache object on the same folder still hits; another seed does not
    again = GenerationCache(tmp_path / "cache").get_or_generate(backend, "a green square",
                                                                **SMALL, seed=3)
    assert again.hit and backend.calls == 1
    cache.get_or_generate(backend, "a green square", **SMALL, seed=4)
    assert backend.calls == 2


def test_budget_per_query_raises():
    budget = GenerationBudget(max_per_query=2)
    for _ in range(2):
        assert budget.check("q") is None
        budget.charge("q")
    assert budget.check("other") is None
    with pytest.raises(BudgetExceeded) as err:
        budget.check("q")
    assert err.value.limit == "max_per_query" and "max_per_query=2" in str(err.value)


def test_budget_per_run_skip_and_cache_hits_are_free(tmp_path):
    backend = CountingBackend()
    cache = GenerationCache(tmp_path)
    budget = GenerationBudget(max_per_run=1, on_exceeded="skip")
    a = cache.get_or_generate(backend, "x", budget=budget, **SMALL, seed=0)
    hit = cache.get_or_generate(backend, "x", budget=budget, **SMALL, seed=0)
    skipped = cache.get_or_generate(backend, "y", budget=budget, **SMALL, seed=0)
    assert a.clip is not None and hit.hit and budget.n_run == 1
    assert skipped.clip is None and "max_per_run=1" in skipped.skipped_reason
    assert backend.calls == 1


def test_budget_validates():
    with pytest.raises(ValueError, match="max_per_run=-1"):
        GenerationBudget(max_per_run=-1)
    with pytest.raises(ValueError, match="on_exceeded='ignore'"):
        GenerationBudget(on_exceeded="ignore")
