"""Choose an encoder batch size that fits memory when the caller gives none.

The estimate is analytic, not a trial run (a trial that runs out of memory on a shared GPU is
worse than a conservative guess). For an open_clip ``VisionTransformer`` in inference mode only
one residual block's activations are alive at a time; per image, with ``T`` tokens
(``grid_h * grid_w + 1``), width ``W`` and ``H`` heads, they are about

    T*W (residual) + 3*T*W (q, k, v) + 2*H*T*T (scores, softmax) + 4*T*W (MLP hidden) + T*W (out)

elements, times the element size of the precision (4 bytes fp32, 2 bytes fp16/bf16), plus the
float32 preprocessed input ``3*S*S*4`` bytes held in the batch buffer. A factor of 2 covers
allocator slack and temporary copies. Other vision towers (ModifiedResNet, timm) get a
conservative 64 times the input size per image. The batch is the largest power of two whose
estimate fits ``fraction`` (default half) of the free memory, clamped to ``[1, max_batch]``.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

__all__ = ["choose_batch_size", "per_image_bytes"]

_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def per_image_bytes(encoder) -> int:
    """Estimated peak bytes per image of one forward pass of ``encoder`` (formula in the module doc).

    Parameters
    ----------
    encoder : embeddings.encoders.open_clip.ClipEncoder

    Returns
    -------
    int
        Bytes per image, > 0.
    """
    s_h, s_w = encoder.image_size
    input_bytes = 3 * s_h * s_w * 4
    visual = getattr(encoder.model, "visual", None)
    tr = getattr(visual, "transformer", None)
    grid = getattr(visual, "grid_size", None)
    if tr is not None and grid is not None and hasattr(tr, "width"):
        t = int(grid[0]) * int(grid[1]) + 1
        w = int(tr.width)
        heads = int(getattr(tr.resblocks[0].attn, "num_heads", max(1, w // 64)))
        elems = 9 * t * w + 2 * heads * t * t
        return int(2 * elems * _ELEMENT_BYTES[encoder.precision] + input_bytes)
    return 64 * input_bytes


def free_memory_bytes(device: str) -> int:
    """Free memory of ``device`` in bytes: ``torch.cuda.mem_get_info`` on CUDA, else the host's
    available memory (``psutil.virtual_memory().available``)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    import psutil

    return int(psutil.virtual_memory().available)


def choose_batch_size(encoder, *, memory_bytes: int | None = None, fraction: float = 0.5,
                      max_batch: int | None = None) -> int:
    """Largest power-of-two batch whose estimated memory fits a share of the free memory.

    Parameters
    ----------
    encoder : embeddings.encoders.open_clip.ClipEncoder
        Needs ``model``, ``image_size``, ``precision`` and ``device``.
    memory_bytes : int or None
        Free memory to plan for; None measures it on the encoder's device
        (:func:`free_memory_bytes`).
    fraction : float
        Share of ``memory_bytes`` the batch may use, in (0, 1].
    max_batch : int or None
        Upper bound; None means 512 on CUDA and 64 on the CPU (CPU throughput stops improving
        well below that, and smaller batches keep the pipeline's latency low).

    Returns
    -------
    int
        Batch size in frames, >= 1.

    Raises
    ------
    ValueError
        ``fraction`` outside (0, 1], ``memory_bytes`` or ``max_batch`` below 1.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must lie in (0, 1] (share of free memory)")
    if memory_bytes is not None and memory_bytes < 1:
        raise ValueError(f"memory_bytes={memory_bytes!r} must be >= 1 byte, or None to measure it")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch={max_batch!r} must be >= 1, or None for the device default")
    cap = max_batch if max_batch is not None else (512 if encoder.device.startswith("cuda") else 64)
    free = free_memory_bytes(encoder.device) if memory_bytes is None else int(memory_bytes)
    per = per_image_bytes(encoder)
    fit = int(free * fraction // per)
    batch = 1
    while batch * 2 <= min(fit, cap):
        batch *= 2
    log.info("batch size %d: %.1f MiB per image estimated, %.0f MiB free on %s, cap %d",
             batch, per / 2**20, free / 2**20, encoder.device, cap)
    return batch
