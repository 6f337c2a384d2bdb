"""The encoder's image preprocessing, applied in reader workers without torch threads.

A torch op called from a reader *thread* gets an OpenMP team of its own (``torch.get_num_threads()``
threads, a team per calling thread) whose workers spin-wait between ops. On the 2-core test
machine, open_clip's transform of 128 frames in one thread cost 4.6 CPU-seconds with the default two
OpenMP threads and 0.34 with one: in the embedding job those spinning teams took the cores the
encoder needed (``benchmarks/bench_embed.py``). :class:`FrameTransform` runs the PIL steps of the
transform (resize, crop, mode) with PIL, as the transform itself does, and its tensor steps
(``ToTensor`` and ``Normalize``) as numpy float32 arithmetic, which is single-threaded and gives the
same bits as torch: elementwise IEEE float32 ``x / 255``, ``x - mean``, ``x / std`` in the same order
(a test checks equality with :meth:`embeddings.encoders.open_clip.ClipEncoder.preprocess`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["FrameTransform"]


class FrameTransform:
    """A clip's frames -> the encoder's input batch, with no torch op on the calling thread.

    Parameters
    ----------
    transform : callable
        PIL image -> float32 tensor ``(C, S, S)``, e.g. :attr:`embeddings.encoders.open_clip.ClipEncoder.transform`.
        A torchvision ``Compose`` whose steps after the PIL ones are one ``ToTensor`` (or a subclass
        such as open_clip's ``MaybeToTensor``) and then ``Normalize`` steps runs them in numpy. Any other
        transform runs as given, image by image (torch ops included); this is logged as a warning
        once, when the ``FrameTransform`` is built.

    Attributes
    ----------
    numpy_tensor_steps : bool
        True when the tensor steps run in numpy.
    input_short_side : int or None
        The shorter-side size of the transform's first ``Resize`` step (e.g. 224), or None when
        it has none of that form. Readers decode frames down to no less than this on the shorter
        side (see :func:`embeddings.video.decode.sample_frames` ``min_short``), so that resize only
        shrinks or keeps, never upscales.

    Notes
    -----
    Picklable (the process readers receive it) when ``transform`` is.
    """

    def __init__(self, transform: Callable):
        self.transform = transform
        self._pil: list = []
        self._norms: list[tuple[np.ndarray, np.ndarray]] = []
        self.input_short_side = _resize_short_side(transform)
        self.numpy_tensor_steps = self._split(transform)
        if not self.numpy_tensor_steps:
            log.warning("transform %r is not PIL steps + ToTensor + Normalize: the readers run it image by "
                        "image with torch ops, which compete with the encoder for the cores", transform)

    def _split(self, transform) -> bool:
        import torch
        from torchvision.transforms import Compose, Normalize, ToTensor

        steps = list(getattr(transform, "transforms", None) or [])
        if not isinstance(transform, Compose) or torch.get_default_dtype() != torch.float32:
            return False
        k = next((i for i, s in enumerate(steps) if isinstance(s, ToTensor)), None)
        if k is None or not all(isinstance(s, Normalize) for s in steps[k + 1:]):
            return False
        self._pil = steps[:k]
        # torchvision's F.normalize: mean/std as tensors of the input dtype, then sub_(mean).div_(std)
        self._norms = [(np.asarray(s.mean, np.float32).reshape(1, -1, 1, 1),
                        np.asarray(s.std, np.float32).reshape(1, -1, 1, 1)) for s in steps[k + 1:]]
        for _mean, std in self._norms:
            if (std == 0).any():
                raise ValueError(f"transform {transform!r} has a Normalize with std {std.ravel().tolist()}: "
                                 "a zero std divides by zero; fix the model's preprocessing config")
        return True

    def __call__(self, frames: np.ndarray):
        """Preprocess one clip's frames.

        Parameters
        ----------
        frames : uint8 ndarray (N, H, W, 3)
            RGB frames, N >= 1.

        Returns
        -------
        torch.Tensor
            float32 ``(N, C, S, S)``, equal to ``torch.stack([transform(PIL image) for each frame])``.

        Raises
        ------
        ValueError
            ``frames`` is not uint8 ``(N >= 1, H, W, 3)``.
        """
        import torch

        from embeddings.encoders.open_clip import _as_pil_images

        images = _as_pil_images(frames)
        if not self.numpy_tensor_steps:
            return torch.stack([self.transform(im) for im in images])
        pixels = []
        for im in images:
            for step in self._pil:
                im = step(im)
            pixels.append(np.asarray(im))
        arr = np.stack(pixels)
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise ValueError(f"the PIL steps of {self.transform!r} gave {arr.dtype} {arr.shape}, expected "
                             "uint8 (N, S, S, C) RGB images; pass a transform that ends in RGB PIL images")
        # torchvision's to_tensor on a uint8 image: (C, H, W) float32 divided by 255
        x = arr.transpose(0, 3, 1, 2).astype(np.float32, order="C")
        x /= np.float32(255)
        for mean, std in self._norms:
            x -= mean
            x /= std
        return torch.from_numpy(x)

    def __repr__(self) -> str:
        return f"FrameTransform({self.transform!r}, numpy_tensor_steps={self.numpy_tensor_steps})"


def _resize_short_side(transform) -> int | None:
    """Shorter-side size of the first torchvision ``Resize(int)`` step of a ``Compose``, else None."""
    from torchvision.transforms import Resize

    for step in getattr(transform, "transforms", None) or []:
        if isinstance(step, Resize):
            size = step.size
            if isinstance(size, (list, tuple)) and len(size) == 1:
                size = size[0]
            if isinstance(size, int) and getattr(step, "max_size", None) is None:
                return size
            return None
    return None
