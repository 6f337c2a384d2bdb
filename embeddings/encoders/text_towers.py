"""Hugging Face text towers of open_clip models (multilingual CLIP: XLM-RoBERTa, mT5, NLLB).

open_clip builds these towers from ``text_cfg.hf_model_name`` (``open_clip.hf_model.HFTextEncoder``:
``AutoConfig.from_pretrained`` then ``AutoModel``) and tokenizes with ``text_cfg.hf_tokenizer_name``
(``open_clip.tokenizer.HFTokenizer``: ``AutoTokenizer.from_pretrained``, padded to the context
length, 77 unless the config says otherwise). Both names are Hugging Face hub ids, so even random
weights need the hub (or a filled Hugging Face cache). This module lets :func:`embeddings.encoders.open_clip.load_encoder`
point both at a LOCAL folder instead (its ``text_tower=`` argument), and holds the text fast path
for these towers.

A text-tower folder holds the Hugging Face model's ``config.json`` and its tokenizer files
(``tokenizer.json`` and/or ``sentencepiece.bpe.model``, ``tokenizer_config.json``), as written by
``hf download FacebookAI/xlm-roberta-base config.json tokenizer.json tokenizer_config.json
sentencepiece.bpe.model --local-dir DIR`` on a connected machine (about 14 MB) or by
``save_pretrained``. The tower's weights in the folder are never read: the CLIP checkpoint holds the
trained text tower, and ``pretrained="none"`` means seeded random weights for every tower.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "TOKENIZER_FILES",
    "hf_text_model_name",
    "require_transformers",
    "resolve_text_tower",
    "text_cfg_for_tower",
    "load_tower_tokenizer",
    "check_tower_tokenizer",
    "trim_padding",
    "download_hint",
]

# Pad-masked poolers whose output does not depend on trailing all-padding columns. open_clip's
# MaxPooler is left out: it fills the *real* tokens with -inf (masked_fill on the attention mask),
# so its output depends on the padding.
_TRIM_SAFE_POOLERS = ("MeanPooler", "ClsPooler", "ClsLastHiddenStatePooler")
# RoBERTa-style embeddings number positions from pad_token_id + 1 (transformers
# create_position_ids_from_input_ids), so L tokens need pad_token_id + 1 + L position rows.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")
# Vocabulary files of Hugging Face tokenizers. Without one, transformers 5 builds a tokenizer that
# knows only its special tokens (every word becomes <unk>) instead of failing.
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
                   "sentencepiece.model", "vocab.txt", "vocab.json")


def hf_text_model_name(model_cfg: dict | None) -> str | None:
    """The Hugging Face model behind an open_clip config's text tower, or None for open_clip's own.

    Parameters
    ----------
    model_cfg : dict or None
        An open_clip model config (``open_clip.get_model_config(name)`` or the ``model_cfg`` of an
        ``open_clip_config.json``).

    Returns
    -------
    str or None
        ``text_cfg["hf_model_name"]`` (e.g. ``"xlm-roberta-base"``), None when absent.
    """
    return ((model_cfg or {}).get("text_cfg") or {}).get("hf_model_name") or None


def download_hint(hf_name: str) -> str:
    """The command that fetches what a text-tower folder needs (no weights), for error messages."""
    return (f"`hf download {hf_name} config.json tokenizer.json tokenizer_config.json "
            f"sentencepiece.bpe.model --local-dir DIR` (keep the files that exist for that model)")


def require_transformers(model: str, hf_name: str) -> None:
    """Raise ImportError unless ``transformers`` is importable (Hugging Face text towers need it).

    Raises
    ------
    ImportError
        Naming the model, its text tower and the install command.
    """
    if importlib.util.find_spec("transformers") is None:
        raise ImportError(
            f"model {model!r} has a Hugging Face text tower ({hf_name!r}), which needs the "
            "`transformers` package: pip install transformers (the project's [generation] extra "
            "includes it).")


def resolve_text_tower(text_tower: str | os.PathLike, model: str, hf_name: str | None) -> Path:
    """Check a text-tower folder and return its absolute path.

    Parameters
    ----------
    text_tower : path-like
        Folder with the Hugging Face model's ``config.json`` and tokenizer files.
    model : str
        The open_clip model it is for (named in errors).
    hf_name : str or None
        The model's Hugging Face text tower (:func:`hf_text_model_name`); None when the model
        uses open_clip's own text transformer.

    Returns
    -------
    pathlib.Path
        The resolved folder.

    Raises
    ------
    ValueError
        If ``text_tower`` is not a path, the model has no Hugging Face text tower, ``config.json``
        is missing or unreadable, its ``model_type`` is one open_clip cannot wrap, or no
        tokenizer vocabulary file (``TOKENIZER_FILES``) is there.
    FileNotFoundError
        If the folder does not exist.
    """
    if not isinstance(text_tower, (str, os.PathLike)) or not os.fspath(text_tower):
        raise ValueError(f"text_tower must be a folder path (str or os.PathLike); got {text_tower!r}.")
    if hf_name is None:
        raise ValueError(
            f"text_tower={os.fspath(text_tower)!r} was given but model {model!r} uses open_clip's own "
            "text transformer, not a Hugging Face one; text_tower applies to models whose config has "
            "text_cfg.hf_model_name (e.g. 'xlm-roberta-base-ViT-B-32', 'nllb-clip-base'). Drop "
            "text_tower for this model.")
    path = Path(text_tower).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text_tower={os.fspath(text_tower)!r} is not a folder. Fetch the text tower of {model!r} "
            f"on a connected machine with {download_hint(hf_name)} and pass DIR.")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(
            f"text_tower={str(path)!r} has no config.json (the Hugging Face model config of "
            f"{hf_name!r}); fetch it with {download_hint(hf_name)}.")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as e:
        raise ValueError(f"text_tower={str(path)!r}: config.json is not readable JSON ({e}); "
                         f"fetch it again with {download_hint(hf_name)}.") from e
    from open_clip.hf_configs import arch_dict

    if model_type not in arch_dict:
        raise ValueError(
            f"text_tower={str(path)!r}: config.json has model_type={model_type!r}; open_clip wraps "
            f"only {sorted(arch_dict)}. Pass the folder of {hf_name!r} itself.")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"text_tower={str(path)!r} has no tokenizer vocabulary (none of {list(TOKENIZER_FILES)}); "
            f"fetch the tokenizer files with {download_hint(hf_name)}.")
    return path


def text_cfg_for_tower(text_cfg: dict, text_tower: Path) -> dict:
    """An open_clip ``text_cfg`` whose Hugging Face model and tokenizer are read from a local folder.

    ``hf_model_pretrained`` is False: the tower is built from ``config.json`` alone
    (``AutoModel.from_config``) and gets its weights from the CLIP checkpoint, or stays seeded
    random with ``pretrained="none"``.

    Parameters
    ----------
    text_cfg : dict
        The model config's ``text_cfg`` (not modified).
    text_tower : pathlib.Path
        From :func:`resolve_text_tower`.

    Returns
    -------
    dict
        A copy with ``hf_model_name`` and ``hf_tokenizer_name`` set to the folder.
    """
    return {**text_cfg, "hf_model_name": str(text_tower), "hf_tokenizer_name": str(text_tower),
            "hf_model_pretrained": False}


def load_tower_tokenizer(text_tower: Path, text_cfg: dict):
    """open_clip's ``HFTokenizer`` over the folder, configured as ``open_clip.get_tokenizer`` would.

    Context length from ``text_cfg["context_length"]`` (open_clip's default 77 when absent),
    ``tokenizer_mode`` and ``tokenizer_kwargs`` from ``text_cfg``.

    Returns
    -------
    open_clip.tokenizer.HFTokenizer
        Callable ``list[str] -> torch.LongTensor (n, context_length)``, padded with the
        tokenizer's pad id.

    Raises
    ------
    ValueError
        If transformers cannot load a tokenizer from the folder.
    """
    from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer

    try:
        return HFTokenizer(str(text_tower), context_length=text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH),
                           tokenizer_mode=text_cfg.get("tokenizer_mode"),
                           **dict(text_cfg.get("tokenizer_kwargs") or {}))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"text_tower={str(text_tower)!r}: no tokenizer could be loaded from it "
            f"({type(e).__name__}: {e}). It needs tokenizer.json (or sentencepiece.bpe.model with the "
            "sentencepiece package) and tokenizer_config.json next to config.json.") from e


def check_tower_tokenizer(text_module: Any, tokenizer: Any, where: str) -> None:
    """Check that a tokenizer's ids fit a Hugging Face text tower.

    ``HFTextEncoder`` builds its attention mask as ``tokens != config.pad_token_id``, so a
    tokenizer that pads with another id would attend to its padding; ids at or past
    ``vocab_size`` would index past the embedding table; a context longer than the position
    table would fail inside the model.

    Parameters
    ----------
    text_module : open_clip.hf_model.HFTextEncoder
        ``model.text`` of a ``CustomTextCLIP``.
    tokenizer : open_clip.tokenizer.HFTokenizer
    where : str
        Where the files came from (for the message), e.g. ``"text_tower='/models/xlmr'"``.

    Raises
    ------
    ValueError
        On a missing or different pad id, a vocabulary of special tokens only, a vocabulary
        larger than the model's, or a context length the position embeddings cannot hold.
    """
    config = text_module.config
    hf_tok = tokenizer.tokenizer
    if len(hf_tok) <= len(set(hf_tok.all_special_ids)):
        raise ValueError(
            f"{where}: the tokenizer knows only its {len(hf_tok)} special tokens, so every word would "
            "become the unknown token; its vocabulary file is missing or unreadable. Use the "
            "tokenizer files saved with that model.")
    pad_model, pad_tok = getattr(config, "pad_token_id", None), hf_tok.pad_token_id
    if pad_tok is None or pad_tok != pad_model:
        raise ValueError(
            f"{where}: the tokenizer pads with id {pad_tok!r} but the text model masks id "
            f"{pad_model!r} (config.json pad_token_id); the model would attend to padding. Use the "
            "tokenizer files saved with that model.")
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(hf_tok) > vocab:
        raise ValueError(
            f"{where}: the tokenizer has {len(hf_tok)} tokens but the model's embedding table has "
            f"vocab_size={vocab}; ids >= {vocab} would fail. Use the tokenizer files saved with that model.")
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos:
        need = tokenizer.context_length + (pad_model + 1 if config.model_type in _OFFSET_POSITIONS else 0)
        if need > max_pos:
            raise ValueError(
                f"{where}: context length {tokenizer.context_length} needs {need} position embeddings "
                f"but config.json has max_position_embeddings={max_pos}.")


def trim_padding(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Drop the trailing token columns that are padding in every row, where that is exact.

    For a ``CustomTextCLIP`` whose text tower is an ``HFTextEncoder`` with a pad-masked pooler
    (mean or CLS), padding positions are masked out of attention (``attention_mask = tokens !=
    pad_token_id``) and out of the pooled mean, and positions are numbered from the start
    (RoBERTa counts only non-pad tokens), so the features of the remaining columns are the same
    (up to float rounding: masked softmax weights underflow to exactly 0). A caption of 20
    tokens then runs 20 positions instead of 77. Anything else is returned unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        The open_clip model.
    tokens : torch.Tensor
        int64 (n, context_length) from the model's tokenizer.

    Returns
    -------
    torch.Tensor
        ``tokens[:, :L]``, L = 1 + the last column holding a non-pad token in any row (a view).
    """
    from open_clip.hf_model import HFTextEncoder

    text = getattr(model, "text", None)
    if (type(model).__name__ != "CustomTextCLIP" or not isinstance(text, HFTextEncoder)
            or type(text.pooler).__name__ not in _TRIM_SAFE_POOLERS or tokens.ndim != 2):
        return tokens
    pad = getattr(text.config, "pad_token_id", None)
    if pad is None:
        return tokens
    used = (tokens != pad).any(dim=0).nonzero()
    if used.numel() == 0:
        return tokens
    return tokens[:, : int(used.max()) + 1]
