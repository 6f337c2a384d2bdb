"""open_clip image and text encoders that return float32, L2-normalised numpy embeddings.

One entry point, :func:`load_encoder`, builds an open_clip model from

* an open_clip architecture name plus a pretrained tag (``"ViT-B-32"``, ``"openai"``),
* a Hugging Face repository (``"hf-hub:org/name"``; the weights come from the repository),
* an architecture name plus a local checkpoint file (``.pt``/``.pth``/``.bin``/``.safetensors``,
  read with ``torch.load(weights_only=True)`` or safetensors, loaded strictly),
* an architecture name plus ``pretrained="none"``: seeded random weights, identical on every run.

Multilingual models (a Hugging Face text tower such as XLM-RoBERTa: ``xlm-roberta-base-ViT-B-32``,
``nllb-clip-base``, ...) take ``text_tower=`` a local folder with that tower's ``config.json`` and
tokenizer files, so they build offline (see :mod:`embeddings.encoders.text_towers`); without it the names in
the open_clip config are fetched from the Hugging Face hub (or its cache).

open_clip's two known traps are closed here: weights that cannot be obtained raise
:class:`PretrainedWeightsUnavailable` (open_clip's hf-hub path falls back to random weights with
only a log line), and features are always normalised.

``TINY_MODEL`` (``"tiny-clip"``, ``configs/tiny-clip.json``) is registered with
``open_clip.add_model_config`` on import: embed_dim 64, 32x32 images, two layers per tower; fast
on a CPU, for tests and the quickstart (with ``pretrained="none"``).

Offline note: ``huggingface_hub`` retries an unreachable hub for about a minute before giving up.
:func:`load_encoder` therefore checks once per process, with a short TCP connection to the hub's
endpoint (3 s at most), whether the hub can be reached; when it cannot, the downloads run in
``huggingface_hub``'s offline mode (the local cache only), so weights missing from the cache raise
:class:`PretrainedWeightsUnavailable` within seconds. ``HF_HUB_OFFLINE=1`` skips the check.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import logging
import os
import pickle
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.pretrained import (
    download_pretrained,
    download_pretrained_from_hf,
    get_pretrained_cfg,
)
from PIL import Image

from embeddings.encoders.text_towers import (
    check_tower_tokenizer,
    download_hint,
    hf_text_model_name,
    load_tower_tokenizer,
    require_transformers,
    resolve_text_tower,
    text_cfg_for_tower,
    trim_padding,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TINY_MODEL",
    "PRECISIONS",
    "CHECKPOINT_SUFFIXES",
    "PretrainedWeightsUnavailable",
    "ClipEncoder",
    "load_encoder",
    "pool_frames",
]

TINY_MODEL = "tiny-clip"
PRECISIONS = ("fp32", "fp16", "bf16")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
_HF_HUB_PREFIX = "hf-hub:"
_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_LOCAL_FILE_HINT = "--pretrained /path/to/open_clip_pytorch_model.bin"


def _register_tiny_model() -> None:
    if TINY_MODEL in open_clip.list_models():
        return
    path = _CONFIG_DIR / f"{TINY_MODEL}.json"
    if not path.is_file():  # open_clip would silently register nothing
        raise FileNotFoundError(f"{path} is missing: the package was installed without its "
                                "package data (embeddings/encoders/configs/*.json); reinstall it.")
    open_clip.add_model_config(path)


_register_tiny_model()


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights (or the files that describe them) could not be obtained, e.g. offline.

    Attributes ``model``, ``pretrained``, ``reason`` and ``source`` (where they would come from).
    """

    def __init__(self, model: str, pretrained: str | None, reason: str, source: str = ""):
        self.model, self.pretrained, self.reason, self.source = model, pretrained, reason, source
        super().__init__(self._message(
            f"load_encoder({model!r}, pretrained='/path/to/open_clip_pytorch_model.bin')",
            "pretrained='none'"))

    def _message(self, local_file: str, random_weights: str) -> str:
        # the fix first and short; the underlying error last (it can be long)
        where = f" from {self.source}" if self.source else ""
        return (f"Pretrained weights for model {self.model!r} (pretrained={self.pretrained!r}) could not be "
                f"obtained{where}. Download the checkpoint on a connected machine and pass the file: "
                f"{local_file}; or {random_weights} for seeded random weights (meaningless outputs, "
                f"tests only). Cause: {self.reason}")

    @property
    def cli_message(self) -> str:
        """The same message with command-line syntax (``--pretrained FILE``), for the ``recsys`` CLI."""
        return self._message(_LOCAL_FILE_HINT, "--pretrained none")

    def __reduce__(self):  # picklable across worker processes despite the custom __init__
        return (type(self), (self.model, self.pretrained, self.reason, self.source))


@dataclass(eq=False)
class ClipEncoder:
    """An open_clip model in eval mode with its own preprocessing and tokenizer.

    Built by :func:`load_encoder`; the fields are what :meth:`describe` reports
    (``text_tower``: the local Hugging Face text-tower folder, None when not given).
    ``model``, ``transform`` and ``tokenizer`` expose the underlying open_clip objects.
    """

    model_name: str
    pretrained: str
    device: str
    precision: str
    embed_dim: int
    random_weights: bool
    seed: int | None = None
    image_size: tuple[int, int] = (224, 224)
    text_tower: str | None = None
    _model: Any = field(default=None, repr=False)
    _transform: Callable | None = field(default=None, repr=False)
    _tokenizer: Callable | None = field(default=None, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def transform(self) -> Callable:
        return self._transform

    @property
    def tokenizer(self) -> Callable:
        return self._tokenizer

    def preprocess(self, frames: np.ndarray | Sequence[Image.Image]) -> torch.Tensor:
        """Turn frames into the model's input batch with open_clip's own inference transform.

        Pure CPU work and no model access, so it is safe to call from reader threads.

        Parameters
        ----------
        frames : np.ndarray or list of PIL.Image.Image
            uint8 RGB array of shape (N, H, W, 3), or a non-empty list of PIL images
            (any mode; open_clip converts to RGB).

        Returns
        -------
        torch.Tensor
            float32, shape (N, 3, S, S) on the CPU, S = ``image_size`` (resized, centre-cropped and
            normalised exactly as open_clip's ``preprocess_val``).

        Raises
        ------
        ValueError
            On an empty input, a wrong dtype or shape, or a list item that is not a PIL image.
        """
        images = _as_pil_images(frames)
        return torch.stack([self._transform(image) for image in images])

    def encode_preprocessed(self, batch: torch.Tensor) -> np.ndarray:
        """Encode a batch produced by :meth:`preprocess`.

        Parameters
        ----------
        batch : torch.Tensor
            float, shape (N, 3, S, S), N >= 1, S = ``image_size``.

        Returns
        -------
        np.ndarray
            float32 (N, embed_dim), each row L2-normalised (in float32, whatever the precision).

        Raises
        ------
        ValueError
            If ``batch`` is not a floating tensor of that shape.
        FloatingPointError
            If the model produced non-finite values (fp16 overflow: use fp32 or bf16).
        """
        expected = (3, *self.image_size)
        if (not isinstance(batch, torch.Tensor) or batch.ndim != 4
                or tuple(batch.shape[1:]) != expected or batch.shape[0] == 0
                or not batch.is_floating_point()):
            got = (f"{type(batch).__name__} {tuple(batch.shape)} {batch.dtype}"
                   if isinstance(batch, torch.Tensor) else type(batch).__name__)
            raise ValueError(
                f"batch must be a floating torch.Tensor of shape (N>=1, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) for model {self.model_name!r}; got {got}. "
                "Build it with ClipEncoder.preprocess(frames)."
            )
        with torch.inference_mode():
            x = batch.to(device=self.device, dtype=_DTYPES[self.precision])
            features = self._model.encode_image(x)
        return self._finish(features, "image")

    def encode_images(self, frames: np.ndarray | Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Preprocess and encode images or video frames in batches.

        Parameters
        ----------
        frames : np.ndarray or list of PIL.Image.Image
            uint8 (N, H, W, 3) RGB or a list of PIL images, N >= 1.
        batch_size : int
            Images per forward pass (memory, not results, depends on it).

        Returns
        -------
        np.ndarray
            float32 (N, embed_dim), L2-normalised rows, in input order.

        Raises
        ------
        ValueError
            On bad ``frames`` (see :meth:`preprocess`) or ``batch_size`` < 1.
        FloatingPointError
            On non-finite model outputs.
        """
        _check_batch_size(batch_size)
        images = _as_pil_images(frames)  # validate everything before any work
        parts = [
            self.encode_preprocessed(torch.stack([self._transform(im) for im in images[i:i + batch_size]]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def encode_text(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Tokenize (``open_clip.get_tokenizer(model)``) and encode texts in batches.

        Texts longer than the model's context length (77 tokens for CLIP) are truncated by the
        tokenizer, as in open_clip and OpenAI CLIP.

        Fast path (exact): for open_clip ``CLIP`` models with a causal text mask and argmax
        (end-of-text) pooling, the token sequence is cut after the last end-of-text position
        of the batch before the transformer runs (see :func:`_encode_text_truncated`). With a
        causal mask no position attends to later ones, so the pooled end-of-text features are
        unchanged; for a short query this runs ~8 positions instead of 77.

        Hugging Face text towers (multilingual models) skip that path; their token columns that
        are padding in every row of the batch are dropped instead
        (:func:`embeddings.encoders.text_towers.trim_padding`: padding is masked out of attention and
        pooling, so the result equals ``model.encode_text`` on the full 77 columns up to float
        rounding). Unknown characters become the tokenizer's unknown token.

        Parameters
        ----------
        texts : list of str
            Non-empty list; every item a string with at least one non-whitespace character.
        batch_size : int
            Texts per forward pass.

        Returns
        -------
        np.ndarray
            float32 (len(texts), embed_dim), L2-normalised rows, in input order.

        Raises
        ------
        ValueError
            If ``texts`` is a bare string, empty, or holds a non-string or an empty/whitespace-only
            string (the message names the index), or ``batch_size`` < 1.
        FloatingPointError
            On non-finite model outputs.
        """
        _check_texts(texts)
        _check_batch_size(batch_size)
        texts = list(texts)
        parts = []
        for i in range(0, len(texts), batch_size):
            tokens = self._tokenizer(texts[i:i + batch_size]).to(self.device)
            with torch.inference_mode():
                if _can_truncate_text(self._model, tokens):
                    features = _encode_text_truncated(self._model, tokens)
                else:
                    features = self._model.encode_text(trim_padding(self._model, tokens))
            parts.append(self._finish(features, "text"))
        return np.concatenate(parts, axis=0)

    def describe(self) -> dict:
        """Identity of the embedding space, for manifests and compatibility checks.

        Returns
        -------
        dict
            ``{"model", "pretrained", "device", "precision", "embed_dim", "random_weights", "seed"}``;
            ``seed`` is None unless ``random_weights``; plus ``"text_tower"`` (absolute folder
            path) when one was given, so a reader can rebuild the same encoder.
        """
        extra = {"text_tower": self.text_tower} if self.text_tower is not None else {}
        return {
            "model": self.model_name,
            "pretrained": self.pretrained,
            "device": self.device,
            "precision": self.precision,
            "embed_dim": int(self.embed_dim),
            "random_weights": bool(self.random_weights),
            "seed": self.seed if self.random_weights else None,
            **extra,
        }

    def _finish(self, features: torch.Tensor, what: str) -> np.ndarray:
        out = F.normalize(features.float(), dim=-1).cpu().numpy()
        if not np.isfinite(out).all():
            raise FloatingPointError(
                f"model {self.model_name!r} produced non-finite {what} embeddings at "
                f"precision={self.precision!r}; use precision='fp32' (or 'bf16')."
            )
        return np.ascontiguousarray(out, dtype=np.float32)


def load_encoder(
    model: str = "ViT-B-32",
    pretrained: str | os.PathLike | None = "openai",
    *,
    device: str = "auto",
    precision: str = "fp32",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    text_tower: str | os.PathLike | None = None,
) -> ClipEncoder:
    """Build an open_clip encoder; never silently falls back to random weights or the CPU.

    Parameters
    ----------
    model : str
        An open_clip architecture (``open_clip.list_models()``, e.g. ``"ViT-B-32"``, or
        ``TINY_MODEL``), or ``"hf-hub:org/name"`` for a Hugging Face open_clip repository.
    pretrained : str, path-like or None
        For an architecture name: an open_clip tag (``open_clip.list_pretrained_tags_by_model``,
        matched case-insensitively as open_clip does), a local checkpoint file (suffix in
        ``CHECKPOINT_SUFFIXES``; loaded with weights_only / safetensors and ``strict=True``), or
        ``"none"`` for seeded random weights. For ``"hf-hub:"`` models: None (or ``""``), the
        repository's own weights. When a tag was trained with QuickGELU and the architecture
        config lacks it (e.g. ``ViT-B-32`` + ``openai``), QuickGELU is enabled so the weights run
        with the activation they were trained with (logged).
    device : str
        ``"auto"`` (cuda if ``torch.cuda.is_available()`` else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    precision : str
        ``"fp32"``, ``"fp16"`` (CUDA only) or ``"bf16"``; open_clip's mixed precision (layer norms
        stay float32). Outputs are float32 in every case.
    seed : int
        Seed for the random initialisation, 0 <= seed < 2**63. The caller's torch RNG state is
        saved and restored around model creation, so loading does not disturb it.
    cache_dir : path-like, optional
        Download cache passed to open_clip.
    text_tower : path-like, optional
        For models with a Hugging Face text tower (``text_cfg.hf_model_name`` in the open_clip
        config: ``xlm-roberta-base-ViT-B-32``, ``xlm-roberta-large-ViT-H-14``, ``nllb-clip-*``,
        ``mt5-*``, or such an ``hf-hub:`` model): a local folder with that tower's ``config.json``
        and tokenizer files, used instead of the hub names in the config. The offline route:
        on a connected machine ``hf download FacebookAI/xlm-roberta-base config.json tokenizer.json
        tokenizer_config.json sentencepiece.bpe.model --local-dir DIR`` (14 MB; the tower's own
        weights are never read) and ``hf download`` the CLIP checkpoint, then
        ``load_encoder("xlm-roberta-base-ViT-B-32", "/path/open_clip_pytorch_model.bin",
        text_tower=DIR)``. None (default): the names are looked up on the hub or in the Hugging
        Face cache (``HF_HOME``, with ``HF_HUB_OFFLINE=1`` offline). Requires ``transformers``.

    Returns
    -------
    ClipEncoder
        In eval mode on ``device``.

    Raises
    ------
    ValueError
        Unknown architecture (closest names listed), unknown tag (valid tags listed), bad
        ``device``/``precision``/``seed``, fp16 on the CPU, a checkpoint that does not fit the
        architecture or is not a plain tensor state dict; a ``text_tower`` for a model without a
        Hugging Face text tower, a folder without ``config.json`` or a loadable tokenizer, or a
        tokenizer whose pad id, vocabulary or length does not fit the text model.
    FileNotFoundError
        ``pretrained`` looks like a path (has a separator or checkpoint suffix) but is no file,
        or ``text_tower`` is not a folder.
    ImportError
        The model has a Hugging Face text tower and ``transformers`` is not installed.
    RuntimeError
        CUDA requested but unavailable (or index out of range); there is no CPU fallback.
    PretrainedWeightsUnavailable
        Weights, hub config or tokenizer files could not be downloaded (e.g. offline); for a
        Hugging Face text tower the message names it and says how to pass ``text_tower``.
    """
    resolved_device = _resolve_device(device)
    _check_precision(precision, resolved_device, device)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63); got {seed!r}. Pass e.g. seed=0.")
    seed = int(seed)
    cache = None if cache_dir is None else os.fspath(cache_dir)
    is_hub = _check_model_name(model)
    kind, value = _classify_pretrained(model, pretrained, is_hub)
    if not is_hub:  # check the text tower before any download
        model_cfg = open_clip.get_model_config(model)
        tower = _check_text_tower(model, model_cfg, text_tower)

    create_kwargs: dict[str, Any] = {
        "precision": precision, "device": "cpu", "cache_dir": cache, "weights_only": True,
        "pretrained_text": False,
    }
    if kind == "tag":
        cfg = get_pretrained_cfg(model, value)
        _download(model, value, lambda: download_pretrained(cfg, cache_dir=cache),
                  source=_tag_source(cfg))
        arch_quick_gelu = bool(open_clip.get_model_config(model).get("quick_gelu", False))
        if cfg.get("quick_gelu", False) and not arch_quick_gelu:
            logger.info("pretrained tag %r for %s was trained with QuickGELU; enabling it", value, model)
            create_kwargs["force_quick_gelu"] = True
    elif kind == "hub":
        repo = model[len(_HF_HUB_PREFIX):]
        source = f"https://huggingface.co/{repo}"
        config_path = _download(model, None, lambda: download_pretrained_from_hf(
            repo, filename="open_clip_config.json", cache_dir=cache), source=source)
        _download(model, None, lambda: download_pretrained_from_hf(repo, cache_dir=cache), source=source)
        model_cfg = _read_json(config_path)["model_cfg"]
        tower = _check_text_tower(model, model_cfg, text_tower)
    embed_dim = model_cfg["embed_dim"]
    hf_name = hf_text_model_name(model_cfg)
    if tower is not None:  # open_clip builds the tower from these (the rest of model_cfg is kept)
        create_kwargs["text_cfg"] = text_cfg_for_tower(model_cfg["text_cfg"], tower)

    rng_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        oc_pretrained = None if kind in ("random", "hub") else value
        try:
            with _offline_if_hub_unreachable(bool(hf_name) and tower is None):  # HF text tower config
                clip_model, _, transform = open_clip.create_model_and_transforms(
                    model, pretrained=oc_pretrained, **create_kwargs)
        except (RuntimeError, pickle.UnpicklingError) as e:
            if kind != "file":
                raise
            raise ValueError(
                f"pretrained={value!r} could not be loaded into architecture {model!r} "
                f"(weights_only=True, strict=True): {e}. Pass a plain state_dict of tensors saved "
                f"from this architecture (torch.save(model.state_dict(), path) or safetensors)."
            ) from e
        except OSError as e:  # a Hugging Face text tower (e.g. XLM-R) fetches its config from the hub
            if not hf_name:
                raise
            if tower is not None:
                raise ValueError(f"text_tower={str(tower)!r}: transformers could not build the text model "
                                 f"from its config.json ({type(e).__name__}: {e}).") from e
            raise _tower_unavailable(model, pretrained, hf_name, e) from e
    if tower is not None:
        tokenizer = load_tower_tokenizer(tower, model_cfg["text_cfg"])
    else:
        try:
            tokenizer = open_clip.get_tokenizer(model, cache_dir=cache)
        except Exception as e:  # any download failure means "unavailable"
            if hf_name:
                raise _tower_unavailable(model, pretrained, hf_name, e) from e
            raise PretrainedWeightsUnavailable(model, pretrained, f"{type(e).__name__}: {e}",
                                               source="the tokenizer files") from e
    if hf_name:
        where = f"text_tower={str(tower)!r}" if tower is not None else f"text tower {hf_name!r}"
        check_tower_tokenizer(clip_model.text, tokenizer, where)
    clip_model = clip_model.to(resolved_device).eval().requires_grad_(False)
    size = clip_model.visual.preprocess_cfg["size"]
    image_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if kind == "random":
        logger.warning(
            "model %s uses seeded RANDOM weights (pretrained='none', seed=%d): embeddings are "
            "meaningless; use only for tests and plumbing", model, seed)
    return ClipEncoder(
        model_name=model, pretrained=value, device=resolved_device, precision=precision,
        embed_dim=int(embed_dim), random_weights=kind == "random",
        seed=seed if kind == "random" else None, image_size=image_size,
        text_tower=None if tower is None else str(tower),
        _model=clip_model, _transform=transform, _tokenizer=tokenizer,
    )


def pool_frames(frame_embeddings: np.ndarray) -> np.ndarray:
    """Pool frame embeddings into one video embedding: mean, then L2-normalise.

    Parameters
    ----------
    frame_embeddings : np.ndarray
        Real-valued, shape (n_frames, d), n_frames >= 1, all finite.

    Returns
    -------
    np.ndarray
        float32 (d,), unit L2 norm (mean computed in float64).

    Raises
    ------
    ValueError
        On a non-2-D or empty array, non-finite values, or a mean of (near) zero norm (the frames
        cancel out, so no direction exists).
    """
    x = np.asarray(frame_embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(
            f"frame_embeddings must be a numeric array of shape (n_frames>=1, d>=1); got shape "
            f"{x.shape} dtype {x.dtype}. Pass ClipEncoder.encode_images(frames) output."
        )
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(f"frame_embeddings has non-finite values in rows {bad[:10].tolist()} "
                         f"({bad.size} of {x.shape[0]}); drop or re-encode those frames.")
    mean = x.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-12:
        raise ValueError("frame_embeddings average to a zero vector (norm < 1e-12), so the pooled "
                         "embedding has no direction; check the frames are real embeddings.")
    return (mean / norm).astype(np.float32)


# ---------------------------------------------------------------------------- text fast path


def _can_truncate_text(model: Any, tokens: torch.Tensor) -> bool:
    """True when :func:`_encode_text_truncated` gives exactly ``model.encode_text(tokens)``.

    Conditions: ``model`` is an ``open_clip.CLIP`` (the class whose ``encode_text`` the fast
    path re-states; ``CustomTextCLIP`` towers are left alone), pools the end-of-text token by
    ``argmax`` of the token ids, and has a causal attention mask (strictly upper triangle
    ``-inf``, the rest 0), so no position sees a later one.
    """
    if type(model) is not open_clip.CLIP or getattr(model, "text_pool_type", None) != "argmax":
        return False
    mask = getattr(model, "attn_mask", None)
    if mask is None or tokens.ndim != 2 or mask.shape != (tokens.shape[1], tokens.shape[1]):
        return False
    cached = getattr(model, "_sv_causal_mask_ok", None)
    if cached is None:
        upper = torch.triu(torch.ones_like(mask, dtype=torch.bool), diagonal=1)
        cached = bool(torch.isneginf(mask[upper]).all() and (mask[~upper] == 0).all())
        model._sv_causal_mask_ok = cached  # the mask is a fixed buffer: check it once
    return cached


def _encode_text_truncated(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``open_clip.CLIP.encode_text(tokens)`` computed on the first L positions only.

    L = 1 + the largest end-of-text position in the batch (``tokens.argmax(-1)``, the index
    ``text_global_pool(..., "argmax")`` reads). The positional embedding is sliced to
    ``[:L]`` and the causal mask to ``[:L, :L]`` so both stay aligned with the tokens; every
    other step is open_clip 3.x ``CLIP.encode_text`` verbatim. Exactness: under a causal mask
    the outputs at positions < L do not depend on positions >= L (Radford et al. 2021, CLIP,
    Sec. 2.4: "masked self-attention"), and the pooled index is < L.

    Parameters
    ----------
    model : open_clip.CLIP
        Checked by :func:`_can_truncate_text`.
    tokens : torch.Tensor
        int64 (n, context_length) token ids on the model's device.

    Returns
    -------
    torch.Tensor
        (n, embed_dim) unnormalised text features, like ``model.encode_text(tokens)``.
    """
    from open_clip.transformer import text_global_pool

    length = int(tokens.argmax(dim=-1).max()) + 1
    text = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        if isinstance(model.text_projection, torch.nn.Linear):
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return x


# ---------------------------------------------------------------------------- helpers


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if isinstance(device, str) and re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} was requested but CUDA is not available "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); there is no silent "
                "CPU fallback. Pass device='cpu' or device='auto'."
            )
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r} but only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible; pass 'cuda:0' or 'auto'.")
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")


def _check_precision(precision: str, resolved_device: str, device: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}.")
    if precision == "fp16" and resolved_device == "cpu":
        via = "" if device == "cpu" else f" (resolved from device={device!r})"
        raise ValueError(
            f"precision='fp16' on device 'cpu'{via}: half-precision matmuls on the CPU are slow or "
            "unsupported. Use precision='bf16' or 'fp32' on the CPU, or fp16 on a CUDA device."
        )


def _check_model_name(model: str) -> bool:
    """Return True for an ``hf-hub:`` name; raise ValueError for an unknown architecture."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty str; got {model!r}.")
    if model.startswith(_HF_HUB_PREFIX):
        repo = model[len(_HF_HUB_PREFIX):]
        parts = repo.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"model={model!r}: expected 'hf-hub:org/name' (e.g. "
                             "'hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K').")
        return True
    known = open_clip.list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5, cutoff=0.5)
        hint = f"Closest names: {close}. " if close else ""
        raise ValueError(
            f"model={model!r} is not an open_clip architecture. {hint}Pass one of "
            f"open_clip.list_models() ({len(known)} names), 'hf-hub:org/name', or "
            f"TINY_MODEL={TINY_MODEL!r} for the tiny test model."
        )
    return False


def _classify_pretrained(model: str, pretrained, is_hub: bool) -> tuple[str, str]:
    """Return (kind, value): kind in 'random', 'file', 'tag', 'hub'."""
    if pretrained is None or (is_hub and pretrained == ""):
        if is_hub:
            return "hub", "hf-hub"
        raise ValueError(
            f"pretrained=None for model {model!r}: say which weights. Pass a tag "
            f"{open_clip.list_pretrained_tags_by_model(model)}, a checkpoint path, or 'none' for "
            "seeded random weights."
        )
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f"pretrained must be a str, a path or None; got {type(pretrained).__name__}.")
    text = os.fspath(pretrained)
    if is_hub:
        raise ValueError(
            f"pretrained={text!r} with model={model!r}: hf-hub models load the weights stored in "
            "the repository. Pass pretrained=None, or use the architecture name with a tag, a "
            "local checkpoint path or 'none'."
        )
    if text.lower() == "none":
        return "random", "none"
    suffix = Path(text).suffix.lower()
    looks_like_path = isinstance(pretrained, os.PathLike) or "/" in text or os.sep in text \
        or suffix in CHECKPOINT_SUFFIXES
    if os.path.isfile(text) or looks_like_path:
        if not os.path.isfile(text):
            raise FileNotFoundError(f"pretrained={text!r} looks like a checkpoint path but no such "
                                    "file exists; check the path.")
        if suffix not in CHECKPOINT_SUFFIXES:
            raise ValueError(f"pretrained={text!r}: checkpoint suffix {suffix!r} is not one of "
                             f"{CHECKPOINT_SUFFIXES}; save with torch.save or safetensors.")
        return "file", str(Path(text).resolve())
    tags = open_clip.list_pretrained_tags_by_model(model)
    canonical = {tag.lower().replace("-", "_"): tag for tag in tags}
    key = text.lower().replace("-", "_")  # open_clip's own tag normalisation (_clean_tag)
    if key not in canonical:
        valid = f"Valid tags: {tags}" if tags else "open_clip has no published weights for it"
        raise ValueError(
            f"pretrained={text!r} is not a known tag for model {model!r}. {valid}; or pass a "
            f"local checkpoint path ({_LOCAL_FILE_HINT}) or 'none' for seeded random weights."
        )
    return "tag", canonical[key]


def _check_text_tower(model: str, model_cfg: dict, text_tower):
    """Validated text-tower folder (or None); ImportError early when transformers is missing."""
    hf_name = hf_text_model_name(model_cfg)
    tower = None if text_tower is None else resolve_text_tower(text_tower, model, hf_name)
    if hf_name:
        require_transformers(model, hf_name)
    return tower


def _tower_unavailable(model: str, pretrained, hf_name: str, e: Exception) -> PretrainedWeightsUnavailable:
    return PretrainedWeightsUnavailable(
        model, pretrained, f"its text tower is the Hugging Face model {hf_name!r}, whose config "
        f"and tokenizer are fetched from the hub even for random weights ({type(e).__name__}: {e}). "
        f"Fetch them on a connected machine with {download_hint(hf_name)} and pass "
        f"text_tower='DIR' (CLI: --text-tower DIR), or fill the Hugging Face cache there "
        f"(`hf download {hf_name}`) and copy it here",
        source=f"https://huggingface.co/{hf_name}")


def _tag_source(cfg: dict) -> str:
    if cfg.get("hf_hub"):
        return "https://huggingface.co/" + cfg["hf_hub"].rstrip("/")
    return cfg.get("url", "")


def _download(model: str, pretrained, fetch: Callable[[], Any], *, source: str):
    from_hub = "huggingface" in source
    try:
        with _offline_if_hub_unreachable(from_hub):
            return fetch()
    except Exception as e:  # any download failure means "unavailable"
        reason = f"{type(e).__name__}: {e}"
        if from_hub and _hub_unreachable():
            reason = (f"the Hugging Face hub ({_hub_endpoint()[0]}) cannot be reached from here and the "
                      f"files are not in the local cache ({type(e).__name__})")
        raise PretrainedWeightsUnavailable(model, pretrained, reason, source=source) from e


def _hub_endpoint() -> tuple[str, int]:
    """(host, port) of the Hugging Face endpoint (``HF_ENDPOINT``, default https://huggingface.co)."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def _hub_unreachable() -> bool:
    """True when the hub endpoint cannot be reached (:func:`_probe_hub`, run once per process).

    False, without a probe, when offline mode is already on (nothing to speed up) or an HTTP(S)
    proxy is configured (the proxy decides).
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in (
            "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return False
    return _probe_hub()


@functools.lru_cache(maxsize=1)
def _probe_hub(timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to the hub endpoint fails or takes over ``timeout_s``.

    The name lookup runs in a daemon thread, since ``getaddrinfo`` has no timeout of its own.
    """
    ok: list[bool] = []

    def connect():
        try:
            socket.create_connection(_hub_endpoint(), timeout=timeout_s).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(timeout_s)
    if not ok:
        logger.debug("the Hugging Face hub (%s) cannot be reached; using the local cache only",
                       _hub_endpoint()[0])
    return not ok


@contextlib.contextmanager
def _offline_if_hub_unreachable(needed: bool):
    """Run the block in ``huggingface_hub`` offline mode (cache only, no retries) when the hub is down."""
    if not needed or not _hub_unreachable():
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _read_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}.")


def _check_texts(texts) -> None:
    if isinstance(texts, str):
        raise ValueError(f"texts must be a list of str, got a single str {texts[:40]!r}; wrap it: [text].")
    if not isinstance(texts, (list, tuple)):
        raise ValueError(f"texts must be a list of str; got {type(texts).__name__}.")
    if not texts:
        raise ValueError("texts is empty; pass at least one non-empty string.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a str; got {type(text).__name__} ({text!r:.40}).")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or whitespace-only ({text!r}); CLIP would embed "
                             "it as noise. Remove it or supply a caption.")


def _as_pil_images(frames) -> list[Image.Image]:
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise ValueError(
                f"frames must be uint8 RGB of shape (N>=1, H, W, 3); got shape {frames.shape} dtype "
                f"{frames.dtype}. For one image add a leading axis (image[None]); convert floats "
                "in [0, 1] with (x * 255).round().astype(np.uint8)."
            )
        return [Image.fromarray(np.ascontiguousarray(frame)) for frame in frames]
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("frames is an empty list; pass at least one image.")
        for i, image in enumerate(frames):
            if not isinstance(image, Image.Image):
                raise ValueError(f"frames[{i}] must be a PIL.Image.Image; got {type(image).__name__}. "
                                 "Pass a uint8 (N, H, W, 3) array or a list of PIL images.")
        return list(frames)
    raise ValueError(f"frames must be a uint8 (N, H, W, 3) numpy array or a list of PIL images; "
                     f"got {type(frames).__name__}.")
