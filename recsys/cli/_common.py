"""Helpers shared by the command modules: argument types, common options, output, usage errors."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("recsys")


class UsageError(Exception):
    """Bad arguments: reported with exit status 2."""


def _existing(path: str, what: str, *, folder: bool | None = None) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {p} does not exist")
    if folder is True and not p.is_dir():
        raise UsageError(f"{what} {p} is not a folder")
    if folder is False and not p.is_file():
        raise UsageError(f"{what} {p} is not a file")
    return p


def _model_names(names: list[str], option: str) -> list[str]:
    """``names`` checked against the model registry before any data is read (bad usage: exit 2)."""
    from recsys.models import MODELS

    unknown = [n for n in names if n.lower() not in MODELS]
    if unknown or not names:
        raise UsageError(f"{option} {','.join(names)!r}: unknown model(s) {unknown}; valid: {', '.join(MODELS)}")
    return names


def _emb_dir(path: str) -> Path:
    """An embedding folder (``recsys embed``) with its manifest, checked before anything loads."""
    folder = _existing(path, "embedding folder", folder=True)
    if not (folder / "manifest.json").is_file():
        raise UsageError(f"{folder} has no manifest.json: it is not an embedding folder, or the `recsys embed` "
                         "job writing it has not finished (rerun that command; it resumes)")
    return folder


def _tuned(tu: dict) -> str:
    """What --factory auto chose, in words (no 'None' for default search parameters)."""
    params = tu.get("search_params") or "default search parameters"
    return (f"{params}: measured recall@10 {tu['recall@10']:.4f} at {tu['ms_per_query']:.3f} ms/query"
            + (f" ({tu['reason']})" if tu.get("reason") else ""))


def _index_folder(path: str, what: str = "index folder") -> Path:
    """Check that ``path`` is a folder written by ``VideoIndex.save`` (a manifest with a factory string).

    Reads only ``manifest.json``, so a wrong folder is reported before faiss, torch or the encoder load.
    """
    p = _existing(path, what, folder=True)
    manifest_path = p / "manifest.json"
    if not manifest_path.is_file():
        raise UsageError(f"{what} {p} has no manifest.json; pass a folder written by `recsys index build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{what} {p}: manifest.json is unreadable ({e}); rebuild it with `recsys index build`") \
            from None
    if not isinstance(manifest, dict) or "factory_string" not in manifest:
        hint = (": it is an embedding folder; build an index from it with `recsys index build "
                f"{p} --out INDEX_DIR`" if (p / "shards").is_dir() or (isinstance(manifest, dict) and "n_videos" in manifest) else "; pass a folder written by "
                "`recsys index build`")
        raise UsageError(f"{what} {p} is not an index folder{hint}")
    return p


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def _query_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the query is empty; give a description, e.g. --text \"a dog on a beach\"")
    return text.strip()


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} must be between 0 and 1")
    return v


def _params(items: list[str] | None) -> dict:
    """Parse ``key=value`` model parameters; values read as JSON when they parse (numbers, true/false)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--param {item!r}: expected key=value, e.g. --param l2=200")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _emit(args, payload, human: str) -> None:
    if getattr(args, "json", False):
        out = getattr(args, "json_stdout", None) or sys.stdout
        from embeddings._io import dumps_strict, json_default

        def fallback(o):  # numpy, paths and dates as json_default writes them; anything else as text
            try:
                return json_default(o)
            except TypeError:
                return str(o)

        out.write(dumps_strict(payload, default=fallback, indent=2, ensure_ascii=False))  # null, never NaN
        out.write("\n")
    else:
        sys.stdout.write(human.rstrip() + "\n")


def _encoder_args(p: argparse.ArgumentParser, *, default_model="ViT-B-32") -> None:
    g = p.add_argument_group("encoder")
    g.add_argument("--model", default=default_model,
                   help="open_clip architecture (ViT-B-32, ViT-L-14, ...), hf-hub:ORG/NAME, or tiny-clip "
                        "(a tiny test model); default %(default)s")
    g.add_argument("--pretrained", default=None,
                   help="open_clip pretrained tag (openai, laion2b_s34b_b79k, ...), a local checkpoint path, "
                        "or 'none' for seeded random weights (outputs marked as such); default: openai for an "
                        "architecture, the repository's own weights for hf-hub:ORG/NAME")
    g.add_argument("--text-tower", default=None, metavar="DIR",
                   help="for models with a Hugging Face text tower (xlm-roberta-base-ViT-B-32, nllb-clip-*): a "
                        "local folder with its config.json and tokenizer files, so it builds offline "
                        "(hf download FacebookAI/xlm-roberta-base config.json tokenizer.json "
                        "tokenizer_config.json sentencepiece.bpe.model --local-dir DIR)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="run on this machine (local) or on a Ray cluster (ray; needs the 'distributed' extra)")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="--engine ray: address of a running cluster (`ray start --head` prints it); "
                        "default: a local Ray for this command")


def _print_results(outcomes) -> str:
    lines = []
    for o in outcomes:
        trig = ""
        if o.threshold is not None:
            trig = f"  backfill: {'TRIGGERED (' + ', '.join(o.generated) + ')' if o.triggered else 'not triggered'}"
        lines.append(f"query: {o.query}\n  confidence: {o.confidence:.4f}"
                     + (f" (threshold {o.threshold:.4f})" if o.threshold is not None else "") + trig)
        for r in o.results:
            tag = " [synthetic]" if r.get("synthetic") else ""
            cap = r.get("caption") if isinstance(r.get("caption"), str) else ""
            if not cap and r.get("synthetic"):
                cap = f"(generated) {(r.get('provenance') or {}).get('prompt') or r.get('prompt') or ''}"
            cap = f"  {cap}" if cap else ""
            collab = f"  collab {r['collab_score']:.4f}" if r.get("collab_score") is not None else ""
            lines.append(f"  {r['rank']:>3}. {r['video_id']}  {r['score']:.4f}{tag}{collab}{cap}")
            prov = r.get("provenance") or {}
            if r.get("synthetic") and prov:
                shots = ", ".join(f"{s.get('video_id')}@{s.get('timestamp_s', 0):.2f}s"
                                  for s in prov.get("source_shots") or [])
                lines.append(f"       provenance: backend={prov.get('backend')} seed={prov.get('seed')} "
                             f"prompt={prov.get('prompt')!r}" + (f" shots=[{shots}]" if shots else "")
                             + f" path={prov.get('path')}")
    return "\n".join(lines)


def _hybrid_ranker(path: str) -> None:
    """--ranker must be a model folder of a hybrid model; checked before the index or encoder loads."""
    import json as _json

    folder = _existing(path, "ranker folder", folder=True)
    try:
        info = _json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"--ranker {folder}: no readable model.json; pass a folder written by "
                         "`recsys train --model hybrid`") from None
    if str(info.get("model")).lower() != "hybrid":
        raise UsageError(f"--ranker {folder} holds a {info.get('model')!r} model, which cannot score new "
                         "(synthetic) clips from their content; train one with `recsys train --model hybrid "
                         "--embeddings EMB_DIR`")


def _side_args(parser: argparse.ArgumentParser, *, tuning: str) -> None:
    """``--validation``, ``--item-features`` (repeatable) and ``--item-text`` (train, evaluate);
    ``tuning`` says in the help what the validation split tunes. Loaded by
    :mod:`recsys.app.side` (``read_log``, ``item_side_matrices``)."""
    parser.add_argument("--validation", metavar="FILE",
                        help=f"predefined validation split (same format as the log) {tuning}")
    parser.add_argument("--item-features", action="append", metavar="FILE",
                        help="item feature matrix: .npy (row = item index: ids 0..n-1), or "
                             ".parquet/.csv with item_id + vector columns (repeatable, one per "
                             "modality); used by models that take item features (ease-content, graph-filter, "
                             "sasrec, gru4rec), "
                             "the others say that they cannot")
    parser.add_argument("--item-text", metavar="FILE",
                        help="item texts (CSV/Parquet: item_id + title/caption/text): TF-IDF "
                             "reduced by truncated SVD, used as one more feature matrix")


def _side_files(args) -> dict:
    """The side-information files named on the command line, each checked to exist (exit 2)."""
    return {"validation": _existing(args.validation, "validation file", folder=False)
            if getattr(args, "validation", None) else None,
            "item_features": [_existing(f, "item feature file", folder=False)
                              for f in getattr(args, "item_features", None) or []],
            "item_text": _existing(args.item_text, "item text file", folder=False)
            if getattr(args, "item_text", None) else None}


#: every name of recsys.models.MODELS (a test keeps them equal; importing the registry here would slow --help)
MODEL_NAMES_HELP = ("popularity, trending (needs timestamps), ease, itemknn, als, bpr, content, hybrid "
                    "(content and hybrid need item embeddings), ease-content (EASE with item side "
                    "information: --item-features/--item-text), graph-filter (training-free LightGCN-style "
                    "propagation over the interaction graph and kNN graphs of --item-features), or ltr: a learned second stage (LightGBM "
                    "ranking trees, XE-NDCG loss) over the candidates of several models, saved as one folder with them "
                    "inside (--param sources=ease,itemknn,popularity, --param label=graded); sequential models "
                    "sasrec, gru4rec (PyTorch), lastitem (kNN of the last items) and windowknn (item-kNN of items "
                    "watched within a few positions of each other, voted by the whole history), which read histories in time "
                    "order (timestamps, or positions for a sequence-per-line file)")


_SEARCH_DEVICE_HELP = ("where the query encoder runs and the index is searched (a GPU copy of it): "
                       "auto, cpu, cuda or cuda:N (default auto: the GPU when one is visible)")


def _synthetic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-synthetic", type=int, help="at most N synthetic items in the results")
    p.add_argument("--exclude-synthetic", action="store_true",
                   help="no synthetic items (clips added by `recsys query --backfill`) in the results")


def _is_input_error(e: BaseException) -> bool:
    """Whether ``e`` says that an input the user named cannot be used (a catalog folder with no clips,
    a missing captions file): bad usage, exit 2. Checked by class without importing the module."""
    catalog = sys.modules.get("embeddings.video.catalog")
    return catalog is not None and isinstance(e, catalog.CatalogError)
