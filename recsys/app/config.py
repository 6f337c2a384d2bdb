"""The pipeline file (``PIPELINE.toml``): schema, defaults, validation and path resolution.

Every table and key is listed in :data:`SCHEMA` with its default; an unknown table or key is
an error that lists the valid ones (no hidden merged defaults: the resolved settings are printed
at the start of a run and saved with its outputs). Paths in the file are relative to the file.

A minimal file::

    [catalog]
    videos = "clips/"                 # folder of videos (and still images)
    captions = "clips/captions.csv"   # optional: video_id,path,caption[,extra columns]

    [interactions]
    path = "ratings.tsv"              # user_id,item_id[,rating,timestamp]; MovieLens u.data accepted

    [query]
    texts = ["a dog on a beach"]

Without a ``[catalog]`` only the recommender stages run (interactions -> train/tune ->
evaluate -> TREC run files and report), e.g. on a log with a predefined validation and test
split and item feature matrices::

    [interactions]
    path = "train.tsv"
    format = "auto"                   # "sequence" (user<TAB>item item ...), "table", or sniffed
    item_features = ["image_feat.npy", "audio_feat.npy"]   # for models that take them
    item_text = "titles.csv"          # optional: item_id,title -> TF-IDF + SVD, one more matrix

    [rank]
    models = ["ease-content", "ease", "popularity"]

    [evaluate]
    validation = "val.tsv"            # every model tuned on it (default grids)
    test = "test.tsv"                 # predefined test split (protocol "predefined")
    k = 20
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["SCHEMA", "PipelineConfigError", "load_pipeline", "resolve_pipeline", "check_input_files",
           "ltr_objectives", "to_toml"]


class PipelineConfigError(ValueError):
    """The pipeline file is malformed: unknown keys, wrong types, missing required values."""


#: ``[index] on_disk`` / ``recsys index build --on-disk`` words -> the ``on_disk`` argument of
#: :func:`recsys.app.stages.build_index` (None: decided by the memory budget).
ON_DISK = {"auto": None, "yes": True, "no": False}

#: table -> key -> default.  ``REQUIRED`` marks keys without a default.
REQUIRED = object()
SCHEMA: dict[str, dict[str, Any]] = {
    "catalog": {
        "videos": REQUIRED,          # folder of media
        "captions": None,            # CSV video_id,path,caption
        "frames": 8,                 # frames sampled uniformly per clip (by seeking)
        "max_side": 256,             # decode-time downscale of the longer side, pixels (the shorter side stays >= the encoder input)
        "shard_size": 256,           # inputs per embedding shard
        "num_workers": 2,            # reader threads
    },
    "encoder": {
        "model": "ViT-B-32",         # open_clip architecture name, or hf-hub:org/name
        "pretrained": None,          # open_clip tag, local checkpoint path, or "none" (seeded random weights);
                                     # unset: "openai" for an architecture, the repository's weights for hf-hub
        "device": "auto",
        "precision": "fp32",
        "batch_size": 64,
        "seed": 0,                   # seed of random weights when pretrained = "none"
        "text_tower": None,          # local folder with a Hugging Face text tower's config.json + tokenizer
                                     # (multilingual models such as xlm-roberta-base-ViT-B-32, offline)
    },
    "index": {
        "factory": "Flat",           # faiss index factory string, or "auto"
        "metric": "ip",
        "max_memory": None,          # memory budget, e.g. "4G": picks the index for "auto", bounds any build
        "on_disk": "auto",           # IVF lists on disk: "auto" (when they do not fit max_memory), "yes", "no"
        "workers": 1,                # processes adding shards (explicit IVF factory strings)
    },
    "interactions": {
        "path": None,                # interaction log; without it the rank/evaluate stages are skipped
        "sep": None,                 # column separator; None sniffs CSV/TSV/u.data
        "format": "auto",            # "sequence" (user<TAB>item item ...), "table", or "auto" (sniffed)
        "item_features": [],         # item feature files (.npy row = item index, Parquet/CSV item_id + vector)
        "item_text": None,           # item titles/captions (CSV/Parquet item_id + text): TF-IDF + SVD features
    },
    "rank": {
        "models": ["ease", "popularity"],
        "k": 10,
        "params": {},                # per-model parameters, e.g. [rank.params.ease] l2 = 500.0
        "n_users": 20,               # users whose top-k lists are written to the report (all go to Parquet)
    },
    "evaluate": {
        "protocol": "random_holdout",  # random_holdout | leave_last_out | stratified | temporal | predefined (with test)
        "test_ratio": 0.2,
        "seed": 42,
        "k": 10,
        "metrics": ["precision", "recall", "ndcg", "map", "mrr", "hit_rate"],
        "validation": None,          # predefined validation split: every model is tuned on it
        "test": None,                # predefined test split (protocol "predefined"; the log is the train split)
    },
    "query": {
        "texts": [],                 # text queries
        "k": 5,
        "backfill": "montage",       # backend for low-confidence queries, or "none"
        "threshold": None,           # confidence gate; None = the encoder's documented default
        "n_generate": 1,             # clips synthesised per low-confidence query
        "num_frames": 24,
        "height": 128,
        "width": 128,
        "fps": 8,
        "seed": 0,
    },
}

PATH_KEYS = {("catalog", "videos"), ("catalog", "captions"), ("interactions", "path"),
             ("interactions", "item_text"), ("evaluate", "validation"), ("evaluate", "test")}
#: files an evaluation reads (checked to exist by :func:`check_input_files`)
INPUT_FILES = (("interactions", "path"), ("interactions", "item_text"), ("evaluate", "validation"),
               ("evaluate", "test"))
PROTOCOLS = ("random_holdout", "leave_last_out", "stratified", "temporal", "predefined")


def _closest(name: str, valid) -> str:
    import difflib

    m = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def resolve_pipeline(raw: dict, base_dir: str | os.PathLike = ".") -> dict:
    """Validate a parsed pipeline dict, fill defaults and resolve relative paths.

    Parameters
    ----------
    raw : dict
        Parsed TOML.
    base_dir : path-like
        Folder that relative paths in the file are relative to (the file's folder).

    Returns
    -------
    dict
        Every table of :data:`SCHEMA` with every key set; paths absolute strings.

    Raises
    ------
    PipelineConfigError
        Unknown table or key (the message lists the valid ones), a value of the wrong type,
        a missing required key, or an unknown evaluation protocol.
    """
    unknown = [t for t in raw if t not in SCHEMA]
    if unknown:
        raise PipelineConfigError(
            f"unknown table(s) {unknown}{_closest(unknown[0], SCHEMA)}; valid tables: {sorted(SCHEMA)}")
    out: dict[str, dict] = {}
    for table, spec in SCHEMA.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise PipelineConfigError(f"[{table}] must be a table, got {type(given).__name__}")
        bad = [k for k in given if k not in spec]
        if bad:
            raise PipelineConfigError(
                f"unknown key(s) {bad} in [{table}]{_closest(bad[0], spec)}; valid keys: {sorted(spec)}")
        resolved = {}
        for key, default in spec.items():
            if key in given:
                value = given[key]
                if default not in (None, REQUIRED) and not isinstance(default, dict):
                    expect = (int, float) if isinstance(default, float) else type(default)
                    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expect):
                        raise PipelineConfigError(
                            f"[{table}] {key} = {value!r}: expected {type(default).__name__} like {default!r}")
                resolved[key] = copy.deepcopy(value)
            elif default is REQUIRED:
                if table in raw:
                    raise PipelineConfigError(f"[{table}] needs `{key} = ...`")
                resolved[key] = None
            else:
                resolved[key] = copy.deepcopy(default)
        out[table] = resolved
    if "catalog" not in raw and "interactions" not in raw:
        raise PipelineConfigError("the pipeline needs at least a [catalog] (videos) or an [interactions] table")
    def absolute(v) -> str:
        p = Path(os.path.expanduser(str(v)))
        return str((Path(base_dir) / p).resolve() if not p.is_absolute() else p)

    for table, key in PATH_KEYS:
        v = out[table].get(key)
        if v is not None:
            if not isinstance(v, str):
                raise PipelineConfigError(f"[{table}] {key} = {v!r}: expected a path (a string)")
            out[table][key] = absolute(v)
    feats = out["interactions"]["item_features"]
    if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
        raise PipelineConfigError(f"[interactions] item_features = {feats!r}: expected a list of paths, "
                                  "e.g. [\"image_feat.npy\", \"audio_feat.npy\"]")
    out["interactions"]["item_features"] = [absolute(f) for f in feats]
    from recsys.app.side import LOG_FORMATS

    if out["interactions"]["format"] not in LOG_FORMATS:
        raise PipelineConfigError(f"[interactions] format = {out['interactions']['format']!r}: expected one "
                                  f"of {list(LOG_FORMATS)}")
    ev = out["evaluate"]
    if ev["test"] is not None and "protocol" not in raw.get("evaluate", {}):
        ev["protocol"] = "predefined"  # a test file means the predefined split
    if ev["protocol"] not in PROTOCOLS:
        raise PipelineConfigError(
            f"[evaluate] protocol = {ev['protocol']!r}: expected one of {list(PROTOCOLS)}")
    if (ev["protocol"] == "predefined") != (ev["test"] is not None):
        raise PipelineConfigError(
            f"[evaluate] protocol = {ev['protocol']!r} with{'' if ev['test'] else 'out'} a test file: "
            "protocol \"predefined\" needs `test = \"FILE\"` and a test file needs protocol \"predefined\" "
            "(leave protocol out to get it)")
    side = [f"[evaluate] {k}" for k in ("validation", "test") if ev[k] is not None] + [
        f"[interactions] {k}" for k in ("item_features", "item_text") if out["interactions"][k]]
    if side and out["interactions"]["path"] is None:
        raise PipelineConfigError(f"{', '.join(side)} need(s) an interaction log: add `[interactions] "
                                  "path = \"FILE\"` (the training split)")
    if out["index"]["on_disk"] not in ON_DISK:
        raise PipelineConfigError(f"[index] on_disk = {out['index']['on_disk']!r}: expected \"auto\", \"yes\" or \"no\"")
    if out["index"]["workers"] < 1:
        raise PipelineConfigError(f"[index] workers = {out['index']['workers']!r}: expected an int >= 1")
    if not isinstance(out["rank"]["models"], list) or not out["rank"]["models"]:
        raise PipelineConfigError("[rank] models must be a non-empty list, e.g. [\"ease\", \"popularity\"]")
    if not isinstance(out["query"]["texts"], list) or not all(isinstance(t, str) for t in out["query"]["texts"]):
        raise PipelineConfigError("[query] texts must be a list of strings")
    ltr_objectives(out)  # a malformed [rank.params.ltr] objectives fails here, before any stage
    return out


def ltr_objectives(cfg: dict) -> list[str] | None:
    """Feedback columns the learned stage's heads need (``[rank.params.ltr] objectives``).

    Parameters
    ----------
    cfg : dict
        Resolved settings (:func:`resolve_pipeline`).

    Returns
    -------
    list of str or None
        The column names, when ``"ltr"`` is among ``[rank] models`` and its parameters name
        objectives (a list, or one comma-separated string); else None. The log (and the
        validation file) is then read with these columns kept
        (:func:`recsys.data.interactions.load_interactions` ``signals``).

    Raises
    ------
    PipelineConfigError
        ``objectives`` is neither a list of names nor a comma-separated string.
    """
    from recsys.ranking.ltr_training import objective_names

    models = [str(m).lower() for m in cfg["rank"]["models"]]
    params = cfg["rank"]["params"] or {}
    ltr = next((v for k, v in params.items() if str(k).lower() == "ltr"), None)
    if "ltr" not in models or not isinstance(ltr, dict):
        return None
    try:
        return objective_names(ltr.get("objectives"))
    except ValueError as exc:
        raise PipelineConfigError(f"[rank.params.ltr] {exc}") from None


def check_input_files(cfg: dict) -> None:
    """Check, before a run starts, that the files an evaluation reads exist.

    Parameters
    ----------
    cfg : dict
        Resolved settings (:func:`resolve_pipeline`; paths absolute).

    Raises
    ------
    PipelineConfigError
        Naming the table, the key and the resolved path of the first missing file, and that
        relative paths are relative to the pipeline file.
    """
    named = [(t, k, cfg[t].get(k)) for t, k in INPUT_FILES] + [
        ("interactions", "item_features", f) for f in cfg["interactions"].get("item_features") or []]
    for table, key, path in named:
        if path is not None and not Path(path).is_file():
            raise PipelineConfigError(
                f"[{table}] {key}: {path} is not a file; fix the path (relative paths are relative "
                "to the pipeline file's folder)")
    signals = ltr_objectives(cfg)
    if signals:  # the heads' columns must be in the header of the log and of the validation file
        for table, key in (("interactions", "path"), ("evaluate", "validation")):
            path = cfg[table].get(key)
            if path is None:
                continue
            header = _header(path, cfg["interactions"].get("sep"))
            missing = [n for n in signals if n not in header]
            if missing:
                raise PipelineConfigError(
                    f"[rank.params.ltr] objectives {missing} are not columns of [{table}] {key} "
                    f"({path}; header: {header}); fix: name columns of its header, or drop them")


def _header(path: str, sep: str | None) -> list[str]:
    """Column names on the first line of a table (separator given, else sniffed among
    comma, tab, semicolon and pipe); [] for an empty file."""
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        line = f.readline().rstrip("\r\n")
    if not line:
        return []
    if sep is None:
        try:
            sep = csv.Sniffer().sniff(line, delimiters=",\t;|").delimiter
        except csv.Error:
            sep = ","
    return [c.strip().strip('"') for c in line.split(sep)]


def load_pipeline(path: str | os.PathLike) -> dict:
    """Read and validate a ``PIPELINE.toml``; see :func:`resolve_pipeline`.

    Raises
    ------
    PipelineConfigError
        If the file is missing or not valid TOML (the message gives TOML's line and column),
        or fails validation.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineConfigError(f"pipeline file {path} does not exist; see examples/ for one to copy")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PipelineConfigError(f"{path} is not valid TOML: {e}") from None
    return resolve_pipeline(raw, path.parent)


def to_toml(cfg: dict) -> str:
    """Render resolved settings back as TOML text (saved beside a run's outputs)."""
    import json

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):  # a parameter holding a mapping (objective_weights, lgb_params)
            return "{" + ", ".join(f"{key(k)} = {val(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")

    def key(k) -> str:
        k = str(k)
        return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else json.dumps(k)

    lines = []
    for table, kv in cfg.items():
        lines.append(f"[{table}]")
        subtables = []
        for k, v in kv.items():
            if v is None:
                lines.append(f"# {k} = (unset)")
            elif isinstance(v, dict):
                subtables.append((k, v))
            else:
                lines.append(f"{k} = {val(v)}")
        for k, v in subtables:
            for name, params in v.items():
                lines.append(f"[{table}.{k}.{key(name)}]")
                lines.extend(f"{pk} = {val(pv)}" for pk, pv in params.items())
        lines.append("")
    return "\n".join(lines)
