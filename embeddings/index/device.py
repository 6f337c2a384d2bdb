"""Where a :class:`embeddings.index.video_index.VideoIndex` trains and searches: device strings and GPU copies."""

from __future__ import annotations

import faiss

__all__ = ["GPU_MAX_K", "_resolve_device", "_to_gpu"]


def _resolve_device(device: str) -> int | None:
    """Resolve a device string for training and search: None (the CPU), -1 (every GPU faiss
    sees) or a GPU number.

    ``"cpu"`` -> None; ``"auto"`` -> -1 when ``faiss.get_num_gpus() > 0``, else None;
    ``"cuda"`` -> -1; ``"cuda:N"`` -> N.

    Raises
    ------
    RuntimeError
        ``cuda``/``cuda:N`` where faiss sees no such GPU (faiss-cpu build or no CUDA).
    ValueError
        Any other string.
    """
    if device == "cpu":
        return None
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "auto":
        return -1 if n_gpus > 0 else None
    if device == "cuda" or device.startswith("cuda:"):
        number = 0 if device == "cuda" else device.split(":", 1)[1]
        if not str(number).isdigit():
            raise ValueError(f"device: got {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
        if int(number) >= n_gpus:
            raise RuntimeError(
                f"device={device!r} but faiss sees {n_gpus} GPU(s) (faiss-cpu build or no CUDA); "
                "install faiss-gpu or pass device='cpu'"
            )
        return -1 if device == "cuda" else int(number)
    raise ValueError(f"device: got {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


GPU_MAX_K = 2048  # faiss GPU k-selection limit (faiss/gpu/utils/DeviceDefs.cuh GPU_MAX_SELECTION_K)


def _to_gpu(index, gpu: int):
    """Copy a CPU faiss index to the GPU for searching: ``gpu=-1`` to every GPU faiss sees
    (``faiss.index_cpu_to_all_gpus``: replicas), else to device ``gpu``
    (``faiss.index_cpu_to_gpu``). Returns ``(gpu_index, resources to keep alive)``.
    Raises RuntimeError for index types faiss has no GPU version of (HNSW, PQ without IVF)."""
    if gpu == -1:
        return faiss.index_cpu_to_all_gpus(index), None
    res = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(res, gpu, index), res
