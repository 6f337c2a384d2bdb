"""Diffusion text-to-video backend over maintained diffusers pipelines: Wan 2.1, LTX-Video, CogVideoX.

``DiffusersBackend(pipeline="wan")`` (the default) loads ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``
on first use; ``pipeline="ltx"`` and ``"cogvideox"`` select the others; ``model=`` takes another
hub name or a local folder written by ``save_pretrained`` / ``huggingface-cli download``.

Where it runs, never silently changed:

- real weights need a CUDA GPU (``device="auto"`` or ``"cuda[:N]"``; bf16 by default). Without
  one the constructor raises: a 1.3B model on a CPU takes tens of minutes per clip, which is
  a broken service, not a fallback. ``allow_cpu=True`` lifts this for a local folder the caller
  knows to be small.
- a pipeline object built in code (``pipe=``, e.g. :func:`generation.backends.diffusers_tiny.tiny_pipeline`)
  runs where it is (CPU allowed, float32 by default): that is the tested path.
- ``cpu_offload=True`` uses diffusers' ``enable_model_cpu_offload`` (whole models moved to the GPU
  in turn: less GPU memory, slower); it still needs a GPU.

Every generation holds :func:`generation.cache.device_lock` (one generation at a time per GPU)
and checks :func:`generation.cache.check_deadline` after every denoising step (the timeout).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import check_deadline, device_lock
from .base import Backend, Clip, register_backend

__all__ = ["DiffusersBackend", "DiffusersUnavailable", "PIPELINES"]

logger = logging.getLogger(__name__)

#: Pipeline families: diffusers class, default hub weights, spatial multiple that the pipeline's
#: ``check_inputs`` demands, the VAE's temporal compression (frames must be ``t * k + 1``; Wan
#: otherwise rounds silently), and the native frame rate (model cards).
PIPELINES: dict[str, dict[str, Any]] = {
    "wan": {"class": "WanPipeline", "model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            "multiple": 16, "temporal": 4, "fps": 16},
    "ltx": {"class": "LTXPipeline", "model": "Lightricks/LTX-Video",
            "multiple": 32, "temporal": 8, "fps": 24},
    "cogvideox": {"class": "CogVideoXPipeline", "model": "THUDM/CogVideoX-2b",
                  "multiple": 8, "temporal": 4, "fps": 8},
}
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class DiffusersUnavailable(RuntimeError):
    """diffusers is not installed, or the pipeline's weights could not be loaded (offline, no files)."""


def _import_diffusers():
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise DiffusersUnavailable(
            f"the diffusers backend needs diffusers, transformers and accelerate ({exc}); "
            "install them with: pip install -e '.[generation]'") from exc


class DiffusersBackend(Backend):
    """Text-to-video with a diffusers pipeline (Wan 2.1 by default).

    Parameters
    ----------
    pipeline : {"wan", "ltx", "cogvideox"}
        Pipeline family (:data:`PIPELINES`).
    model : str or path-like or None
        Hub repository (``"Wan-AI/Wan2.1-T2V-1.3B-Diffusers"``, the family default when None) or
        a local pipeline folder (must hold ``model_index.json``). Ignored with ``pipe``.
    device : str
        ``"auto"`` (CUDA required for weights loaded from ``model``), ``"cuda"``, ``"cuda:N"``,
        ``"cpu"`` (only with ``pipe`` or ``allow_cpu=True``).
    precision : {"bf16", "fp16", "fp32"} or None
        Weights dtype; None: bf16 on a GPU, float32 for ``pipe``. For Wan the VAE stays float32
        (diffusers' recommendation for decoding quality).
    cpu_offload : bool
        ``enable_model_cpu_offload`` instead of moving the whole pipeline to the GPU.
    pipe : diffusers.DiffusionPipeline or None
        A ready pipeline of the family's class (e.g. ``tiny_pipeline("wan")``), used as is.
    allow_cpu : bool
        Permit ``device="cpu"`` for weights loaded from ``model`` (a small local pipeline).
    local_files_only : bool
        Never contact the hub; with a hub name the weights must be in the local HF cache.
    max_sequence_length : int or None
        Text tokens passed to the pipeline (None: the pipeline's default).

    Raises
    ------
    ValueError
        Unknown ``pipeline``/``precision``/``device``, ``pipe`` of another class, fp16 on a CPU,
        CPU without ``pipe`` or ``allow_cpu``.
    FileNotFoundError
        ``model`` looks like a local path but has no ``model_index.json``.
    RuntimeError
        A CUDA device was asked for (or ``"auto"`` with real weights) and none is available.
    DiffusersUnavailable
        diffusers is not installed (raised here) or weights cannot be loaded (raised on first
        :meth:`generate`, when they are loaded).
    """

    name = "diffusers"

    def __init__(self, pipeline: str = "wan", *, model: str | os.PathLike | None = None,
                 device: str = "auto", precision: str | None = None, cpu_offload: bool = False,
                 pipe: Any = None, allow_cpu: bool = False, local_files_only: bool = False,
                 max_sequence_length: int | None = None):
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline={pipeline!r}: expected one of {sorted(PIPELINES)} "
                             "(Wan 2.1, LTX-Video, CogVideoX)")
        _import_diffusers()
        import torch

        spec = PIPELINES[pipeline]
        if pipe is not None and type(pipe).__name__ != spec["class"]:
            raise ValueError(f"pipe is a {type(pipe).__name__}; pipeline={pipeline!r} expects a "
                             f"{spec['class']} (pass pipeline= matching the object)")
        self.pipeline, self.spec, self._pipe = pipeline, spec, pipe
        self.device = self._resolve_device(device, torch, built=pipe is not None, allow_cpu=allow_cpu)
        on_gpu = self.device.startswith("cuda")
        if precision is None:
            precision = "bf16" if on_gpu else "fp32"
        if precision not in _DTYPES:
            raise ValueError(f"precision={precision!r}: expected one of {sorted(_DTYPES)}")
        if precision == "fp16" and not on_gpu:
            raise ValueError("precision='fp16' on the CPU is unsupported or very slow; use 'fp32' or 'bf16'")
        if cpu_offload and not on_gpu:
            raise ValueError("cpu_offload=True moves models to a GPU in turn; it needs device='cuda'")
        self.precision, self.cpu_offload = precision, bool(cpu_offload)
        self.local_files_only = bool(local_files_only)
        self.max_sequence_length = max_sequence_length
        if pipe is not None:
            self.model = f"<in-memory {spec['class']}>"
            for comp in pipe.components.values():  # modules built in code start in train mode
                if isinstance(comp, torch.nn.Module):  # (dropout on: not reproducible)
                    comp.eval()
            pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
        else:
            self.model = str(model) if model is not None else spec["model"]
            if _looks_like_path(self.model) and not (Path(self.model) / "model_index.json").is_file():
                raise FileNotFoundError(
                    f"model={self.model!r} looks like a local pipeline folder but has no "
                    "model_index.json; pass the folder written by save_pretrained or by "
                    f"`huggingface-cli download {spec['model']}`, or a hub name")
        self._fingerprint: dict | None = None

    @staticmethod
    def _resolve_device(device: str, torch, *, built: bool, allow_cpu: bool) -> str:
        if device == "auto":
            if torch.cuda.is_available():
                return "cuda"
            if built:
                return "cpu"
            raise RuntimeError(
                "the diffusers backend loads a full text-to-video model (Wan 2.1 1.3B by default) and "
                "needs a CUDA GPU; none is available (torch.cuda.is_available() is False). There is no "
                "CPU fallback: use --backfill montage on a CPU, or pass a tiny in-code pipeline (pipe=)")
        if device == "cpu":
            if not (built or allow_cpu):
                raise ValueError(
                    "device='cpu' with weights loaded by name: a 1.3B+ video model on a CPU takes tens "
                    "of minutes per clip. Use a GPU, pass allow_cpu=True for a small local pipeline, or "
                    "pass pipe=tiny_pipeline(...) for tests")
            return "cpu"
        if isinstance(device, str) and re.fullmatch(r"cuda(:\d+)?", device):
            if not torch.cuda.is_available():
                raise RuntimeError(f"device={device!r} but CUDA is not available; no CPU fallback. "
                                   "Use a GPU machine or --backfill montage")
            return device
        raise ValueError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")

    # ------------------------------------------------------------------ loading
    def load(self):
        """Load the pipeline now (otherwise on the first :meth:`generate`); return it.

        Raises
        ------
        DiffusersUnavailable
            When the weights cannot be read or downloaded.
        """
        if self._pipe is not None:
            return self._pipe
        import diffusers
        import torch

        cls = getattr(diffusers, self.spec["class"])
        dtype = getattr(torch, _DTYPES[self.precision])
        kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": self.local_files_only}
        try:
            if self.pipeline == "wan":
                kwargs["vae"] = diffusers.AutoencoderKLWan.from_pretrained(
                    self.model, subfolder="vae", torch_dtype=torch.float32,
                    local_files_only=self.local_files_only)
            pipe = cls.from_pretrained(self.model, **kwargs)
        except (OSError, ValueError) as exc:  # huggingface_hub errors subclass OSError/ValueError
            raise DiffusersUnavailable(
                f"could not load {self.spec['class']} weights from {self.model!r}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Without hub "
                f"access, download the repository on a connected machine (`huggingface-cli download "
                f"{self.spec['model']} --local-dir DIR`) and pass model='DIR'") from exc
        if self.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        return pipe

    def fingerprint(self) -> dict:
        """Name, family, model, precision; for an in-memory pipeline a SHA-256 of its weights."""
        if self._fingerprint is None:
            fp = {"name": self.name, "pipeline": self.pipeline, "model": self.model,
                  "precision": self.precision, "max_sequence_length": self.max_sequence_length}
            if self.model.startswith("<in-memory"):
                h = hashlib.sha256()
                for comp_name, comp in sorted(self._pipe.components.items()):
                    if hasattr(comp, "state_dict"):
                        for key, tensor in sorted(comp.state_dict().items()):
                            h.update(f"{comp_name}.{key}".encode())
                            h.update(tensor.detach().float().cpu().numpy().tobytes())
                fp["weights_sha256"] = h.hexdigest()
            self._fingerprint = fp
        return self._fingerprint

    def _temporal(self) -> int:
        pipe = self._pipe
        for attr in ("vae_scale_factor_temporal", "vae_temporal_compression_ratio"):
            if pipe is not None and isinstance(getattr(pipe, attr, None), int):
                return int(getattr(pipe, attr))
        return int(self.spec["temporal"])

    def check_inputs(self, prompt, **kwargs) -> None:
        """Base checks, plus the pipeline's own size rules, checked before any work.

        ``height`` and ``width`` must be multiples of the family's spatial multiple (Wan 16,
        LTX 32, CogVideoX 8) and ``num_frames`` of the form ``t * k + 1`` (t: the VAE's temporal
        compression, e.g. 4 for Wan: 9, 17, ..., 81), because the pipelines otherwise raise late
        or round the frame count silently.
        """
        super().check_inputs(prompt, **kwargs)
        m = self.spec["multiple"]
        for arg in ("height", "width"):
            v = kwargs[arg]
            if v % m:
                raise ValueError(f"{arg}={v}: the {self.spec['class']} needs a multiple of {m}; "
                                 f"pass {arg}={max(m, round(v / m) * m)}")
        t, n = self._temporal(), kwargs["num_frames"]
        if (n - 1) % t:
            lo = (n - 1) // t * t + 1
            raise ValueError(f"num_frames={n}: the {self.spec['class']} makes {t}*k+1 frames; pass "
                             f"num_frames={lo} or {lo + t}")

    def _generate(self, prompt, *, negative_prompt, num_frames, height, width, fps,
                  num_inference_steps, guidance_scale, seed) -> Clip:
        import torch

        pipe = self.load()

        def on_step_end(_pipe, step, timestep, callback_kwargs):
            check_deadline()  # GenerationTimeout between denoising steps
            return callback_kwargs

        kwargs: dict[str, Any] = dict(
            prompt=prompt, negative_prompt=negative_prompt, num_frames=int(num_frames),
            height=int(height), width=int(width), num_inference_steps=int(num_inference_steps),
            guidance_scale=float(guidance_scale), output_type="np",
            # a CPU generator: the same seed gives the same initial noise on every device
            generator=torch.Generator(device="cpu").manual_seed(int(seed)),
            callback_on_step_end=on_step_end)
        if self.pipeline == "ltx":
            kwargs["frame_rate"] = int(round(fps))
        if self.max_sequence_length is not None:
            kwargs["max_sequence_length"] = int(self.max_sequence_length)
        with device_lock(self.device), torch.inference_mode():
            out = pipe(**kwargs)
        frames = np.asarray(out.frames[0], dtype=np.float32)  # (F, H, W, 3) in [0, 1]
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        provenance = {
            "backend": self.name, "pipeline": self.spec["class"], "model": self.model,
            "prompt": prompt, "seed": int(seed), "device": self.device, "precision": self.precision,
            "settings": {"negative_prompt": negative_prompt, "num_frames": int(num_frames),
                         "height": int(height), "width": int(width), "fps": float(fps),
                         "num_inference_steps": int(num_inference_steps),
                         "guidance_scale": float(guidance_scale)},
            "source_shots": [],
        }
        return Clip(frames=np.ascontiguousarray(frames), fps=float(fps), provenance=provenance)


def _looks_like_path(model: str) -> bool:
    return os.path.isabs(model) or model.startswith((".", "~")) or os.path.exists(model) \
        or model.count("/") != 1


register_backend("diffusers", DiffusersBackend)
