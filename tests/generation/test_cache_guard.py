"""Per-generation timeout, one-generation-per-device lock, budget with timeout, the split cache module."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from generation.backends import Backend, Clip
from generation.cache import (
    GenerationBudget,
    GenerationCache,
    GenerationTimeout,
    check_deadline,
    device_lock,
    run_generation,
)

GEN = dict(num_frames=2, height=4, width=4, fps=4, num_inference_steps=5)


class SteppingBackend(Backend):
    """Sleeps ``step_s`` per inference step and checks the deadline after each, like diffusers."""

    name = "stepping"

    def __init__(self, step_s: float):
        self.step_s = step_s
        self.steps_run = 0

    def _generate(self, prompt, *, num_frames, height, width, fps, num_inference_steps, seed, **_):
        for _ in range(num_inference_steps):
            time.sleep(self.step_s)
            self.steps_run += 1
            check_deadline()
        return Clip(np.zeros((num_frames, height, width, 3), np.uint8), fps, {"backend": self.name})


def test_timeout_stops_between_steps_and_no_timeout_runs_all():
    slow = SteppingBackend(0.05)
    with pytest.raises(GenerationTimeout, match="timeout_s=0.08"):
        run_generation(slow, "p", timeout_s=0.08, **GEN)
    assert slow.steps_run == 2  # stopped after the step that crossed 0.08 s, not after all 5
    fast = SteppingBackend(0.0)
    clip = run_generation(fast, "p", timeout_s=10, **GEN)
    assert clip.frames.shape == (2, 4, 4, 3) and fast.steps_run == 5
    check_deadline()  # outside run_generation: no deadline, no error


def test_bad_timeout_is_rejected():
    with pytest.raises(ValueError, match="timeout_s=0"):
        run_generation(SteppingBackend(0), "p", timeout_s=0, **GEN)
    with pytest.raises(ValueError, match="timeout_s=-1"):
        GenerationBudget(timeout_s=-1)


def test_cache_with_budget_timeout_skips_charges_and_does_not_store(tmp_path):
    cache = GenerationCache(tmp_path)
    budget = GenerationBudget(max_per_run=5, timeout_s=0.02, on_exceeded="skip")
    out = cache.get_or_generate(SteppingBackend(0.03), "p", budget=budget, **GEN)
    assert out.clip is None and "timeout_s" in out.skipped_reason and budget.n_run == 1
    assert out.key not in cache
    raising = GenerationBudget(timeout_s=0.02)
    with pytest.raises(GenerationTimeout):
        cache.get_or_generate(SteppingBackend(0.03), "p", budget=raising, **GEN)


def test_device_lock_serialises_generations_on_one_device():
    inside, overlap = [], []

    def work(dev):
        with device_lock(dev):
            inside.append(dev)
            if len(inside) > 1:
                overlap.append(tuple(inside))
            time.sleep(0.05)
            inside.remove(dev)

    threads = [threading.Thread(target=work, args=("cuda",)) for _ in range(3)]
    threads.append(threading.Thread(target=work, args=("cuda:0",)))  # the same GPU
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == []
    # different devices do not wait on each other
    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(d,)) for d in ("cuda:5", "cuda:6")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert time.perf_counter() - t0 < 0.095
