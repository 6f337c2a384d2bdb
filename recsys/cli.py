"""The ``recsys`` command line: parses arguments and calls library functions, nothing more.

Exit status: 0 on success, 2 on bad usage (wrong arguments, missing input paths, empty query),
1 on failure (a stage that could not complete). ``--json`` prints one JSON document on stdout;
logs and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import textwrap
from pathlib import Path

log = logging.getLogger("recsys")

EPILOG = textwrap.dedent("""\
    Start here:
      recsys quickstart                       # the whole pipeline on a generated sample, offline, ~1 min
      recsys run examples/shared_data.toml    # the same on real clips + MovieLens 100K
    Every subcommand has --help with an example.""")


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


# ----------------------------------------------------------------------------- commands


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="run on this machine (local) or on a Ray cluster (ray; needs the 'distributed' extra)")
    p.add_argument("--address", metavar="ADDR", default=None,
                   help="--engine ray: address of a running cluster (`ray start --head` prints it); "
                        "default: a local Ray for this command")


def cmd_quickstart(args) -> int:
    from recsys.quickstart import run_quickstart

    res = run_quickstart(args.out, model=args.model, pretrained=args.pretrained, progress=not args.quiet)
    note = ("NOTE: the encoder has random weights (no pretrained weights were asked for), so retrieval "
            "scores are not meaningful; pass --model/--pretrained to use real weights.\n"
            if res.random_weights else "")
    _emit(args, {"out_dir": str(res.out_dir), "report": str(res.report), "seconds": res.seconds,
                 "counts": res.counts, "random_weights": res.random_weights},
          f"{note}Quickstart finished in {sum(res.seconds.values()):.1f} s.\nReport: {res.report}\n"
          f"Outputs: {res.out_dir}")
    return 0


def cmd_run(args) -> int:
    from embeddings.store import EmbeddingFolderError
    from recsys.config import load_pipeline, to_toml
    from recsys.pipeline import check_rerun, run_pipeline

    path = _existing(args.pipeline, "pipeline file", folder=False)
    cfg = load_pipeline(path)
    out = Path(args.out) if args.out else Path("runs") / path.stem
    try:
        check_rerun(cfg, out)  # a refused rerun changes nothing; run_pipeline checks it too
    except EmbeddingFolderError as e:
        raise UsageError(str(e)) from None
    sys.stderr.write(f"Resolved settings (saved to {out / 'settings.toml'}):\n{to_toml(cfg)}\n")
    res = run_pipeline(cfg, out, strict=args.strict, progress=not args.quiet)
    note = "NOTE: random-weight encoder: retrieval numbers are not meaningful.\n" if res.random_weights else ""
    skipped = f"{res.n_errors} input(s) skipped, see {out / 'errors.csv'}\n" if res.n_errors else ""
    _emit(args, {"out_dir": str(out), "report": str(res.report), "seconds": res.seconds, "counts": res.counts,
                 "n_errors": res.n_errors, "random_weights": res.random_weights},
          f"{note}{skipped}Report: {res.report}")
    return 0


def cmd_embed(args) -> int:
    from recsys import stages

    _existing(args.video_dir, "video folder", folder=True)
    if args.captions:
        _existing(args.captions, "captions file", folder=False)
    from embeddings.video.sampling import FrameSampler

    try:
        sampler = FrameSampler(args.sampling, n_frames=args.frames, fps=args.fps, max_frames=args.max_frames,
                               shot_threshold=args.shot_threshold)
    except ValueError as e:
        raise UsageError(str(e)) from e
    _, summary = stages.embed_catalog(
        args.video_dir, args.out, captions=args.captions, model=args.model, pretrained=args.pretrained,
        device=args.device, precision=args.precision, sampler=sampler, batch_size=args.batch_size,
        shard_size=args.shard_size, num_workers=args.workers, max_side=args.max_side, progress=not args.quiet,
        executor=args.executor, storage_dtype=args.storage_dtype, engine=args.engine, address=args.address,
        num_encoders=args.num_encoders, text_tower=args.text_tower)
    s = summary
    human = (f"Embedded {s.n_embedded} of {s.n_inputs} inputs into {args.out} "
             f"({s.n_shards_skipped} shard(s) already done); {s.n_failed} skipped"
             + (f" {s.skipped_reasons()}" if len(s.errors) else "") + f"; batch size {s.batch_size}.\n"
             f"Seconds: read {s.seconds['read']:.2f} (summed over workers), waiting for readers "
             f"{s.seconds['read_wait']:.2f}, encode {s.seconds['encode']:.2f}, "
             f"write {s.seconds['write']:.2f}, total {s.seconds['total']:.2f}")
    if len(s.errors):
        human += "\nSkipped:\n" + "\n".join(f"  {r.path}: {r.error}" for r in s.errors.itertuples())
    _emit(args, s.to_dict(), human)
    if s.n_embedded + s.n_shards_skipped == 0 and s.n_inputs:
        log.error("nothing could be embedded")
        return 1
    return 1 if (args.strict and len(s.errors)) else 0


def cmd_index_build(args) -> int:
    from recsys import stages

    _emb_dir(args.emb_dir)
    from recsys.config import ON_DISK

    on_disk = ON_DISK[args.on_disk]
    explicit = args.factory not in (None, "auto")
    if args.workers is not None and (args.engine != "local" or not explicit):
        raise UsageError("--workers needs --engine local and an explicit IVF --factory (e.g. 'IVF1024,SQ8'); "
                         "--factory auto tunes in memory, --engine ray runs Ray tasks")
    if args.engine == "local" and explicit and (args.workers is not None or on_disk is not None or args.max_memory) \
            and args.frames_out:
        raise UsageError("--frames-out is built by the default path: drop --workers/--on-disk/--max-memory "
                         "or build the frame index separately")
    index = stages.build_index(args.emb_dir, args.out, factory=args.factory, metric=args.metric,
                               max_memory=args.max_memory, latency_ms=args.latency_ms,
                               min_recall=args.min_recall, frames_out=args.frames_out, engine=args.engine,
                               address=args.address, on_disk=on_disk, n_workers=args.workers,
                               progress=not args.quiet)
    build = getattr(index, "build_info", None)
    tu = index.tuning or {}
    tuned = f"; {_tuned(tu)}" if tu else ""
    _emit(args, {"out": str(args.out), "factory_string": index.factory_string, "ntotal": index.ntotal,
                 "dim": index.dim, "metric": index.metric, "frames_out": args.frames_out,
                 "tuning": {k: v for k, v in tu.items() if k != "curve"} or None, "build": build},
          f"Built {index.factory_string} ({index.metric}) over {index.ntotal} vectors of dim {index.dim}: "
          f"{args.out}{tuned}")
    return 0


def cmd_index_info(args) -> int:
    import json as _json

    folder = _index_folder(args.index_dir)
    manifest = _json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    tu = manifest.get("tuning") or {}
    human = (f"{manifest['factory_string']} ({manifest['metric']}), {manifest['ntotal']} vectors of dim "
             f"{manifest['dim']}, encoder {(manifest.get('encoder') or {}).get('model')}"
             + (f"\ntuning: {_tuned(tu)}, on {tu.get('n_queries')} held-out queries"
                if tu else "\ntuning: none (factory given explicitly)"))
    _emit(args, manifest, human)
    return 0


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


def cmd_search(args) -> int:
    index_dir = _index_folder(args.index_dir)  # every input checked before faiss/torch/open_clip load
    frames_dir = _index_folder(args.frames_index, "frame index folder") if args.frames_index else None
    from embeddings.index import VideoIndex
    from recsys import stages

    index = VideoIndex.load(index_dir, device=args.device)
    encoder = stages.open_encoder_for_index(index, device=args.device)
    if frames_dir is not None:
        from embeddings.index.frames import FrameIndex

        fi = FrameIndex.load(frames_dir, expected_encoder=index.encoder)
        res = fi.search(encoder.encode_text([args.text]), k=args.k)
        rows = [{"rank": r + 1, "video_id": v, "score": float(s), "timestamp_s": float(t)}
                for r, (v, s, t) in enumerate(zip(res.ids[0], res.scores[0], res.timestamps_s[0],
                                                  strict=True)) if v is not None]
        _emit(args, [{"query": args.text, "level": "frame", "results": rows}],
              f"query: {args.text} (frame level: best frame per video)\n" + "\n".join(
                  f"  {r['rank']:>3}. {r['video_id']}  {r['score']:.4f}  @ {r['timestamp_s']:.2f}s"
                  for r in rows))
        return 0
    outcomes = stages.run_queries([args.text], index, encoder, k=args.k, backfill="none",
                                  max_synthetic=args.max_synthetic, exclude_synthetic=args.exclude_synthetic)
    human = _print_results(outcomes)
    if any(r.get("synthetic") for o in outcomes for r in o.results):
        human += ("\n(synthetic: clips that `recsys query --backfill` added to this index; "
                  "--exclude-synthetic or --max-synthetic N leaves them out)")
    _emit(args, [o.to_dict() for o in outcomes], human)
    return 0


def cmd_query(args) -> int:
    from embeddings.index.video_index import VideoIndex
    from generation.cache import GenerationBudget
    from generation.calibration import load_calibration, preserve_calibration
    from recsys import stages

    index_dir = _index_folder(args.index_dir)
    if args.ranker:
        _hybrid_ranker(args.ranker)
    index = VideoIndex.load(index_dir, device=args.device)
    emb_dir = stages.embeddings_of_index(index, index_dir, args.embeddings)
    if args.backfill == "montage" and not emb_dir.is_dir():
        raise UsageError(f"the montage backend cuts shots from the catalog's frame embeddings; {emb_dir} does not "
                         "exist (moved since `recsys index build`?): pass --embeddings EMB_DIR (the folder "
                         "`recsys embed` wrote)")
    encoder = stages.open_encoder_for_index(index, device=args.device)
    out_dir = Path(args.out) if args.out else index_dir.parent
    calibration = None if args.no_calibration else load_calibration(index_dir)
    ranker = None
    if args.ranker:
        from recsys.artifacts import load_trained

        ranker = load_trained(_existing(args.ranker, "ranker folder", folder=True))
    backend_options = {}
    if args.backfill == "diffusers":
        backend_options = {"pipeline": args.pipeline, "model": args.model, "device": args.device,
                           "cpu_offload": args.cpu_offload}
    generate_kwargs = {"num_frames": args.num_frames, "height": args.height, "width": args.width,
                       "fps": args.fps, "seed": args.seed}
    if args.steps is not None:
        generate_kwargs["num_inference_steps"] = args.steps
    if args.guidance is not None:
        generate_kwargs["guidance_scale"] = args.guidance
    budget = GenerationBudget(max_per_run=args.max_per_run, timeout_s=args.timeout, on_exceeded="skip")
    outcomes = stages.run_queries([args.text], index, encoder, k=args.k, backfill=args.backfill,
                                  threshold=args.threshold, out_dir=out_dir, emb_dir=emb_dir,
                                  n_generate=args.n_generate, generate_kwargs=generate_kwargs,
                                  calibration=calibration, max_synthetic=args.max_synthetic,
                                  exclude_synthetic=args.exclude_synthetic, ranker=ranker,
                                  user_id=args.user, backend_options=backend_options, budget=budget)
    added = [sid for o in outcomes for sid in o.generated]
    human = _print_results(outcomes)
    if added:
        with preserve_calibration(index_dir):
            index.save(index_dir)
        human += (f"\nAdded {len(added)} synthetic clip(s) to the index {index_dir} (saved; clips under "
                  f"{Path(out_dir).resolve() / 'synthetic'}): later searches return them too, marked "
                  "[synthetic]; `recsys search --exclude-synthetic` leaves them out.")
        log.info("backfill added %d synthetic clip(s) to %s", len(added), index_dir)
    _emit(args, [o.to_dict() for o in outcomes], human)
    return 0


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


def cmd_calibrate(args) -> int:
    import pandas as pd

    from embeddings.index.video_index import VideoIndex
    from generation.calibration import (
        calibrate,
        collect_features,
        labelled_queries,
        plot_risk_coverage,
        save_calibration,
    )
    from recsys import stages

    index_dir = _index_folder(args.index_dir)
    pairs = pd.read_csv(_existing(args.captions, "captions CSV", folder=False))
    index = VideoIndex.load(index_dir, device=args.device)
    encoder = stages.open_encoder_for_index(index, device=args.device)
    feats, labels, info = collect_features(index, encoder, labelled_queries(pairs), k=args.k,
                                           progress=not args.quiet)
    result = calibrate(feats, labels, method=args.method, alpha=args.alpha, holdout=args.holdout,
                       seed=args.seed)
    plot = plot_risk_coverage(result.curve, Path(args.plot) if args.plot else index_dir / "risk_coverage.png",
                              threshold=result.threshold,
                              random_weights=bool((index.encoder or {}).get("random_weights")))
    path = save_calibration(index_dir, result, extra={"collect": {**info, "k": args.k},
                                                      "encoder": index.encoder, "plot": str(plot)})
    m = result.metrics
    summary = {"calibration": str(path), "plot": str(plot), "threshold": result.threshold,
               "threshold_source": result.threshold_source, **m, **info}
    _emit(args, summary,
          f"Calibrated ({args.method}) on {m['n_fit']} queries, evaluated on {m['n_heldout']} held out "
          f"({info['n_synthetic_excluded']} synthetic items excluded):\n"
          f"  AUROC top-1 cosine {m['auroc_top1']:.3f}, calibrated {m['auroc_calibrated']:.3f}\n"
          f"  threshold {result.threshold:.4f} ({result.threshold_source}): held-out trigger rate "
          f"{m['heldout_trigger_rate']:.2f}\n  saved {path}; risk-coverage plot {plot}")
    return 0


def cmd_train(args) -> int:
    from recsys import stages
    from recsys.artifacts import save_trained
    from recsys.data import load_interactions
    from recsys.models.sequential import is_sequence_file, read_sequence_file

    _model_names([args.model], "--model")
    path = _existing(args.interactions, "interaction file", folder=False)
    # one user per line (`user<TAB>item item ...`, MicroLens): positions become the timestamps
    df = read_sequence_file(path) if is_sequence_file(path) else load_interactions(path, sep=args.sep)
    options, dataset = {}, None
    if args.embeddings:
        from recsys.data import build_dataset
        from recsys.training import load_item_embeddings

        dataset = build_dataset(df)
        options["item_embeddings"] = load_item_embeddings(
            _existing(args.embeddings, "embedding folder", folder=True), dataset.item_ids)
    if args.validation or args.item_features or args.item_text:
        from recsys.data import build_dataset
        from recsys.side_cmd import side_options

        dataset = dataset or build_dataset(df)
        options.update(side_options(args, dataset, sep=args.sep))
    if args.tune:
        options["tune"] = True
        options["progress"] = not args.quiet
    if args.two_stage:
        options["two_stage"] = True
    tm = stages.train_model(df, args.model, _params(args.param), dataset=dataset, source=str(path), **options)
    save_trained(args.out, tm)
    tu = tm.info.get("tuning")
    tuned = (f"Tuned on a validation split in {tu['seconds']:.2f} s ({len(tu['table'])} grid points, best "
             f"{tu['metric']} {tu['best_score']:.4f}): chosen {tu['best_params']}\n" if tu else "")
    _emit(args, {"out": str(args.out), **tm.info},
          f"{tuned}Trained {args.model} on {tm.info['n_interactions']} interactions ({tm.info['n_users']} users x "
          f"{tm.info['n_items']} items) in {tm.info['fit_seconds']:.2f} s: {args.out}")
    return 0


def cmd_recommend(args) -> int:
    from embeddings._io import write_parquet
    from recsys import stages
    from recsys.artifacts import load_trained

    tm = load_trained(_existing(args.model_dir, "model folder", folder=True))
    users = None if args.all_users else [args.user]
    try:
        recs = stages.recommend_users(tm, users, k=args.k, two_stage=True if args.two_stage else None)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if args.out:
        out = Path(args.out)
        if out.suffix == ".parquet":
            write_parquet(out, recs)
        else:
            from embeddings._io import atomic_path

            with atomic_path(out) as tmp:
                recs.to_csv(tmp, index=False, sep="\t" if out.suffix in (".tsv", ".txt") else ",")
    payload = recs.to_dict("records") if not args.all_users or not args.out else {"out": str(args.out),
                                                                                  "n_rows": len(recs)}
    human = (f"Wrote {len(recs)} rows for {recs['user_id'].nunique()} users to {args.out}" if args.out else
             recs.to_string(index=False))
    if "fallback" in recs and recs["fallback"].notna().any() and not args.all_users:
        human = (f"NOTE: user {args.user!r} is not in the model's training data: these are the popularity "
                 f"fallback (the items most training users interacted with), marked in the fallback column.\n"
                 + human)
    _emit(args, payload, human)
    return 0


def cmd_evaluate(args) -> int:
    import numpy as np

    from recsys.data import load_interactions
    from recsys.evaluate_report import write_evaluation

    models = _model_names([m.strip() for m in args.models.split(",") if m.strip()], "--models")
    path = _existing(args.interactions, "interaction file", folder=False)
    if args.protocol == "cold_items":  # items held out whole: recsys/coldstart.py
        from recsys.coldstart import cold_start_cli
        return cold_start_cli(args, models, path, _emit)
    if (args.protocol == "predefined") != bool(args.test):
        raise UsageError("--protocol predefined needs --test TEST, and --test needs --protocol predefined")
    df = load_interactions(path, sep=args.sep)
    test_df = test_path = None
    if args.test:
        test_path = _existing(args.test, "test file", folder=False)
        test_df = load_interactions(test_path, sep=args.sep)
    emb = None
    if args.item_embeddings:
        emb = np.load(_existing(args.item_embeddings, "item embedding file", folder=False), allow_pickle=False)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    try:
        ks = [int(x) for x in args.ks.split(",") if x.strip()]
    except ValueError as exc:
        raise UsageError(f"--ks {args.ks!r}: expected comma-separated integers, e.g. 1,5,10") from exc
    if args.engine == "local" and (args.address or args.num_actors is not None):
        raise UsageError("--address and --num-actors need --engine ray")
    evaluator, session = None, contextlib.nullcontext()
    if args.engine == "ray":  # one Ray connection for every model and fold; user blocks in actors
        from functools import partial

        from embeddings.ray_engine.cluster import ray_session
        from recsys.distributed import evaluate_ray

        evaluator = partial(evaluate_ray, num_actors=args.num_actors or 2)
        session = ray_session(args.address)
    with session:
        res = write_evaluation(df, models, args.out, protocol=args.protocol, k=args.k, test_ratio=args.test_ratio,
                               seed=args.seed, source=str(path), test_df=test_df,
                               test_source=str(test_path) if test_path else None, n_folds=args.folds,
                               n_negatives=args.negatives, metrics=metrics, ks=ks, item_embeddings=emb,
                               n_resamples=args.bootstrap, evaluator=evaluator, progress=not args.quiet,
                               users=args.users, drop_test_only_items=args.drop_test_only_items)
    summary = res["summary"]
    cols = ["model"] + [c for c in summary.columns if c.endswith(f"@{args.k}")] + ["n_users"]
    _emit(args, {"out": str(args.out), "protocol": res["protocol"], "models": summary.to_dict("records")},
          f"Ranking: {res['protocol']['ranking']}\n" + summary[cols].to_string(index=False)
          + f"\n\nReport: {Path(args.out) / 'report.md'}")
    return 0


def cmd_bench_retrieval(args) -> int:
    from recsys.bench import bench_retrieval

    if bool(args.videos) == bool(args.embeddings):
        raise UsageError("pass exactly one of --videos VIDEO_DIR and --embeddings EMB_DIR")
    if args.videos:
        _existing(args.videos, "video folder", folder=True)
        if not args.encoder:
            raise UsageError("--videos needs at least one --encoder MODEL:PRETRAINED, e.g. tiny-clip:none")
    else:
        _emb_dir(args.embeddings)
        if args.encoder:
            raise UsageError("--embeddings uses the encoder its manifest records; drop --encoder")
    if args.captions:
        _existing(args.captions, "captions file", folder=False)
    elif args.split:
        raise UsageError("--split needs --captions CSV with a split column")
    res = bench_retrieval(args.out, args.encoder, videos=args.videos, captions=args.captions,
                          embeddings=args.embeddings, split=args.split, frames=args.frames, device=args.device,
                          precision=args.precision, seed=args.seed, ties=args.ties, progress=not args.quiet)
    cols = ["encoder", "level", "direction", "recall_1", "recall_5", "recall_10", "median_rank", "mean_rank",
            "n_queries", "n_candidates"]
    summary = res["summary"]
    note = ("NOTE: random-weight encoder(s): numbers should sit at chance level.\n"
            if summary["random_weights"].any() else "")
    _emit(args, {"out": str(args.out), "summary": summary[cols + ["random_weights"]].to_dict("records"),
                 "settings": res["settings"]},
          f"{note}{summary[cols].to_string(index=False)}\n\nTables, plot and ranks: {args.out}")
    return 0


def cmd_bench_index(args) -> int:
    from recsys.bench_index import bench_index

    _emb_dir(args.emb_dir)
    if args.queries:
        _existing(args.queries, "queries file", folder=False)
    factories = [f for item in args.factory for f in item.split(";") if f.strip()]
    res = bench_index(args.emb_dir, args.out, factories, holdout=args.holdout, queries=args.queries,
                      seed=args.seed, k=args.k, metric=args.metric, threads=args.threads, n_single=args.single,
                      repeats=args.repeats, target_recall=args.target_recall, level=args.level)
    lines = [f"{res['settings']['n_collection']} vectors, {res['settings']['n_queries']} queries, "
             f"{args.threads} thread(s), {args.k}-recall@{args.k}",
             "Pareto front (batch QPS):", f"  {'factory':<24} {'params':<14} {'recall':>7} {'QPS batch':>10} "
             f"{'QPS single':>10}"]
    for p in res["pareto_front"]:
        lines.append(f"  {p['factory_string']:<24} {str(p['search_params'] or '-'):<14} {p['recall']:>7.3f} "
                     f"{p['qps_batch']:>10.0f} {p['qps_single']:>10.0f}")
    c = res["choice"]
    lines.append(f"For recall >= {args.target_recall}: " + (
        f"{c['factory_string']} with {c['search_params'] or 'default search parameters'} (recall {c['recall']:.3f})"
        if c else "no setting reaches it; raise nprobe/efSearch or use Flat"))
    lines.append(f"Curves: {Path(args.out) / 'curves.json'}, {Path(args.out) / 'curves.png'}")
    _emit(args, {k: v for k, v in res.items() if not k.startswith("_")}, "\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- parser


#: every name of recsys.models.MODELS (a test keeps them equal; importing the registry here would slow --help)
MODEL_NAMES_HELP = ("popularity, trending (needs timestamps), ease, itemknn, als, bpr, content, hybrid "
                    "(content and hybrid need item embeddings), ease-content (EASE with item side "
                    "information: --item-features/--item-text), or ltr: a learned second stage (LightGBM "
                    "LambdaRank) over the candidates of several models, saved as one folder with them "
                    "inside (--param sources=ease,itemknn,popularity, --param label=graded); sequential next-item models "
                    "sasrec, gru4rec (PyTorch) and lastitem (kNN of the last items), which read histories in time "
                    "order (timestamps, or positions for a sequence-per-line file)")

_SEARCH_DEVICE_HELP = ("where the query encoder runs and the index is searched (a GPU copy of it): "
                       "auto, cpu, cuda or cuda:N (default auto: the GPU when one is visible)")


def _synthetic_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-synthetic", type=int, help="at most N synthetic items in the results")
    p.add_argument("--exclude-synthetic", action="store_true",
                   help="no synthetic items (clips added by `recsys query --backfill`) in the results")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and documentation)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="recsys", description="Short-video retrieval and recommendation engine.",
                                epilog=EPILOG, formatter_class=fmt)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    # the same flags after the subcommand (`recsys embed ... -q`); SUPPRESS keeps the top-level value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging and full tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings only, no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, help_, example, **kw):
        sp = sub.add_parser(name, help=help_, description=help_, epilog="Example:\n  " + example,
                            formatter_class=fmt, parents=[common], **kw)
        sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return sp

    s = add("quickstart", "Run the whole pipeline on a generated sample (offline, random-weight tiny encoder).",
            "recsys quickstart --out recsys-quickstart")
    s.add_argument("--out", default="recsys-quickstart", help="output folder (default %(default)s)")
    s.add_argument("--model", default="tiny-clip", help="open_clip model (default %(default)s: tiny, random)")
    s.add_argument("--pretrained", default="none", help="pretrained tag or checkpoint path (default none)")
    s.set_defaults(func=cmd_quickstart)

    s = add("run", "Run a pipeline file: catalog -> encode -> index -> rank -> evaluate -> query/backfill -> report.",
            "recsys run examples/shared_data.toml --out runs/shared")
    s.add_argument("pipeline", metavar="PIPELINE.toml")
    s.add_argument("--out", help="output folder (default runs/<file stem>)")
    s.add_argument("--strict", action="store_true", help="fail if any input is skipped")
    s.set_defaults(func=cmd_run)

    s = add("embed", "Embed every video/image of a folder into an embedding folder (resumable: rerun to resume).",
            "recsys embed ../shared/data/videos --out emb --captions ../shared/data/videos/manifest.csv "
            "--pretrained none")
    s.add_argument("video_dir", metavar="VIDEO_DIR")
    s.add_argument("--out", required=True, metavar="EMB_DIR")
    s.add_argument("--captions", metavar="CSV", help="video_id,path,caption[,extra columns]")
    _encoder_args(s)
    s.add_argument("--sampling", default="uniform", choices=["uniform", "fps", "keyframes", "shots"],
                   help="frame sampling: uniform N frames, fixed --fps, coded keyframes, or one frame per "
                        "detected shot (default uniform)")
    s.add_argument("--frames", type=_positive_int, default=8, help="frames per clip for --sampling uniform (default 8)")
    s.add_argument("--fps", type=float, default=1.0, help="frames per second for --sampling fps (default 1)")
    s.add_argument("--max-frames", type=_positive_int, default=None,
                   help="cap on frames per clip for fps/keyframes/shots (evenly thinned; default no cap)")
    s.add_argument("--shot-threshold", type=float, default=0.4,
                   help="colour-histogram distance in (0,1) that starts a new shot (default 0.4)")
    s.add_argument("--batch-size", type=_positive_int, default=None,
                   help="frames per encoder call (default: chosen to fit free memory)")
    s.add_argument("--workers", type=_positive_int, default=2, help="decoding workers (default 2)")
    s.add_argument("--executor", default="thread", choices=["thread", "process"],
                   help="reader workers as threads or processes (default thread)")
    s.add_argument("--storage-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the stored .npy shards (default float32)")
    s.add_argument("--shard-size", type=_positive_int, default=256, help="videos per shard (default 256)")
    s.add_argument("--max-side", type=_positive_int, default=256, help="decode-time downscale of the longer side, pixels (default 256); it stops where the shorter side reaches the encoder's input size (224 for ViT-B-32), so frames are never upscaled before encoding")
    s.add_argument("--strict", action="store_true", help="exit 1 if any input is skipped")
    _engine_args(s)
    s.add_argument("--num-encoders", type=_positive_int, default=1,
                   help="--engine ray: encoder actors, one GPU each where the cluster has GPUs (default 1)")
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("index", help="Build FAISS indexes.", description="Build FAISS indexes.",
                       formatter_class=fmt,
                       epilog="Examples:\n  recsys index build emb --out idx --factory auto\n"
                              "  recsys index info idx")
    isub = s.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="Build an index over an embedding folder.", parents=[common],
                        description="Build a FAISS index over the video embeddings of EMB_DIR.",
                        epilog="Example:\n  recsys index build emb --out idx --factory 'HNSW32,Flat'",
                        formatter_class=fmt)
    b.add_argument("emb_dir", metavar="EMB_DIR")
    b.add_argument("--out", required=True, metavar="INDEX_DIR")
    b.add_argument("--factory", default="Flat", help="faiss factory string, or 'auto' (default %(default)s)")
    b.add_argument("--metric", default="ip", choices=["ip", "l2"])
    b.add_argument("--max-memory", metavar="SIZE",
                   help="memory budget, e.g. 4G: picks the index for --factory auto; with an explicit factory the "
                        "build follows it (training sample, batch size, in memory or inverted lists streamed to "
                        "disk) and is refused when nothing fits")
    b.add_argument("--latency-ms", type=float, default=10.0,
                   help="single-query latency target for --factory auto (default %(default)s)")
    b.add_argument("--min-recall", type=float, default=0.95,
                   help="Recall@10 target for --factory auto, measured on held-out vectors (default %(default)s)")
    b.add_argument("--frames-out", metavar="DIR", help="also build a frame-level index (one vector per frame)")
    _engine_args(b)
    b.add_argument("--on-disk", default="auto", choices=["auto", "yes", "no"],
                   help="IVF factories: merge the inverted lists into INDEX_DIR/index.ivfdata (memory-mapped) "
                        "instead of memory; auto decides by size against --max-memory (default auto)")
    b.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="--engine local, IVF factory: add shards in N worker processes, then merge (in memory, "
                        "or on disk by --on-disk / --max-memory)")
    b.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    b.set_defaults(func=cmd_index_build)
    b = isub.add_parser("info", help="Show an index manifest (factory, count, measured tuning).",
                        parents=[common], formatter_class=fmt,
                        description="Show the manifest of an index folder, with its measured Recall@10.",
                        epilog="Example:\n  recsys index info idx --json")
    b.add_argument("index_dir", metavar="INDEX_DIR")
    b.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    b.set_defaults(func=cmd_index_info)

    s = sub.add_parser("bench", help="Retrieval benchmarks on your own data.",
                       description="Retrieval benchmarks on your own data: text-video quality and index speed.",
                       formatter_class=fmt,
                       epilog="Examples:\n  recsys bench retrieval --embeddings emb --out bench/ret\n"
                              "  recsys bench index emb --factory Flat --factory 'HNSW32,Flat' --out bench/idx")
    bsub = s.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    b = bsub.add_parser("retrieval", parents=[common], formatter_class=fmt,
                        help="R@1/5/10, median and mean rank, text-to-video and video-to-text, per encoder.",
                        description="Text-to-video and video-to-text retrieval (R@1, R@5, R@10, median rank, mean "
                                    "rank; ranks 1-based, ties pessimistic) at video level (mean-pooled) and frame "
                                    "level (max over frames); every caption is a query.",
                        epilog="Example:\n  recsys bench retrieval --videos ../shared/data/videos --captions "
                               "../shared/data/videos/manifest.csv --encoder tiny-clip:none --out bench/ret")
    b.add_argument("--videos", metavar="VIDEO_DIR", help="catalog folder (embedded per encoder, cached in --out)")
    b.add_argument("--embeddings", metavar="EMB_DIR", help="or an embedding folder made by `recsys embed`")
    b.add_argument("--captions", metavar="CSV", help="video_id,caption[,path,split] (a video may repeat) or "
                   "video_id,captions (a JSON list); default: the captions stored in the embedding folder")
    b.add_argument("--encoder", action="append", metavar="MODEL:PRETRAINED",
                   help="repeatable: e.g. ViT-B-32:openai, ViT-B-32:/path/ckpt.bin, tiny-clip:none (random weights)")
    b.add_argument("--split", metavar="NAME", help="evaluate only this value of the captions' split column")
    b.add_argument("--frames", type=_positive_int, default=8, help="frames per clip, uniform (default 8)")
    b.add_argument("--device", default="auto")
    b.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    b.add_argument("--seed", type=int, default=0, help="seed of random weights (pretrained none)")
    b.add_argument("--ties", default="pessimistic", choices=["pessimistic", "optimistic"])
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    b.set_defaults(func=cmd_bench_retrieval)
    b = bsub.add_parser("index", parents=[common], formatter_class=fmt,
                        help="Recall@K and QPS of factory strings over an nprobe/efSearch sweep.",
                        description="Recall@K (against exact search, cached) and QPS, batch and single-query, of "
                                    "faiss factory strings over a sweep of nprobe/efSearch; prints the Pareto front.",
                        epilog="Example:\n  recsys bench index emb --factory 'HNSW32,Flat' --factory auto "
                               "--holdout 200 --threads 2 --target-recall 0.95 --out bench/idx")
    b.add_argument("emb_dir", metavar="EMB_DIR")
    b.add_argument("--factory", action="append", required=True,
                   help="faiss factory string or 'auto' (repeatable; ';' separates several)")
    b.add_argument("--holdout", type=_positive_int, default=100, help="vectors held out as queries (default 100)")
    b.add_argument("--queries", metavar="NPY", help="queries as a float .npy (n, d) instead of a holdout")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("-k", type=_positive_int, default=10)
    b.add_argument("--metric", default="ip", choices=["ip", "l2"])
    b.add_argument("--threads", type=_positive_int, default=1, help="faiss.omp_set_num_threads (default 1)")
    b.add_argument("--single", type=int, default=100, help="queries timed one at a time (default 100)")
    b.add_argument("--repeats", type=_positive_int, default=3,
                   help="timings are the fastest of this many runs (default 3)")
    b.add_argument("--level", default="video", choices=["video", "frame"],
                   help="pooled video embeddings (default) or every frame embedding")
    b.add_argument("--target-recall", type=_fraction, default=0.95)
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    b.set_defaults(func=cmd_bench_index)

    s = add("search", "Text-to-video search over an index.", "recsys search idx --text 'a dog barking' -k 5")
    s.add_argument("index_dir", metavar="INDEX_DIR")
    s.add_argument("--text", required=True, type=_query_text)
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--device", default="auto", help=_SEARCH_DEVICE_HELP)
    s.add_argument("--frames-index", metavar="DIR",
                   help="frame-level index (index build --frames-out): videos ranked by their best frame, "
                        "with its timestamp")
    _synthetic_args(s)
    s.set_defaults(func=cmd_search)

    s = add("query", "Search with a confidence score; synthesise clips when confidence is low (backfill). "
            "Backfill ADDS the clips to INDEX_DIR on disk: later searches return them (marked synthetic) "
            "unless given --exclude-synthetic.",
            "recsys query runs/qs/index --text 'a red circle' --backfill montage --threshold 1.0")
    s.add_argument("index_dir", metavar="INDEX_DIR")
    s.add_argument("--text", required=True, type=_query_text)
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--backfill", default="none",
                   help="backend for low-confidence queries: montage, diffusers, or none; generated clips are "
                        "ADDED to INDEX_DIR (saved) and returned by later searches")
    s.add_argument("--threshold", type=_fraction, help="confidence gate: 1.0 always generates, 0.0 never")
    s.add_argument("--n-generate", type=_positive_int, default=1, help="clips per triggered query")
    s.add_argument("--embeddings", metavar="EMB_DIR", help="embedding folder (montage shots); default: the "
                   "folder the index was built from (recorded in its manifest), else INDEX_DIR/../embeddings")
    s.add_argument("--out", metavar="DIR", help="where generated clips go (default INDEX_DIR/..)")
    s.add_argument("--num-frames", type=_positive_int, default=24)
    s.add_argument("--height", type=_positive_int, default=128)
    s.add_argument("--width", type=_positive_int, default=128)
    s.add_argument("--fps", type=_positive_int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=_positive_int, help="denoising steps (diffusers backend)")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale (diffusers backend)")
    s.add_argument("--pipeline", default="wan", choices=["wan", "ltx", "cogvideox"],
                   help="diffusers pipeline family (default wan: Wan 2.1 T2V 1.3B)")
    s.add_argument("--model", help="diffusers weights: hub name or local folder (default: the family's)")
    s.add_argument("--cpu-offload", action="store_true", help="diffusers model CPU offload (still needs a GPU)")
    s.add_argument("--max-per-run", type=int, help="most clips generated by this call")
    s.add_argument("--timeout", type=float, help="seconds allowed per generation")
    _synthetic_args(s)
    s.add_argument("--no-calibration", action="store_true",
                   help="ignore INDEX_DIR/calibration.json (raw top-1 cosine as confidence)")
    s.add_argument("--ranker", metavar="MODEL_DIR", help="hybrid cold-start model (recsys train --model "
                   "hybrid): adds a collaborative score to every result, synthetic ones included")
    s.add_argument("--user", metavar="USER_ID", help="user for --ranker scores (default: mean user)")
    s.add_argument("--device", default="auto", help=_SEARCH_DEVICE_HELP)
    s.set_defaults(func=cmd_query)

    s = add("calibrate", "Fit the backfill gate on labelled queries: calibrated probability, optional "
            "conformal threshold, AUROC and a risk-coverage plot, saved with the index.",
            "recsys calibrate runs/qs/index --captions ../shared/data/videos/manifest.csv --alpha 0.1")
    s.add_argument("index_dir", metavar="INDEX_DIR")
    s.add_argument("--captions", required=True, metavar="CSV",
                   help="labelled pairs: video_id and query (or caption) columns")
    s.add_argument("--method", default="isotonic", choices=["isotonic", "logistic"])
    s.add_argument("--alpha", type=_fraction, help="error rate for a split-conformal threshold "
                   "(default: probability 0.5)")
    s.add_argument("-k", type=_positive_int, default=10, help="list length for the features (>= 2)")
    s.add_argument("--holdout", type=_fraction, default=0.5, help="held-out fraction (default 0.5)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--plot", metavar="PNG", help="risk-coverage plot (default INDEX_DIR/risk_coverage.png)")
    s.add_argument("--device", default="auto", help=_SEARCH_DEVICE_HELP)
    s.set_defaults(func=cmd_calibrate)

    s = add("train", "Train a ranker on an interaction log (CSV/TSV/Parquet/MovieLens u.data, or one "
            "`user<TAB>item item ...` sequence per line).",
            "recsys train ../shared/data/ml-100k/u.data --model ease --out models/ease --param l2=500")
    s.add_argument("interactions", metavar="INTERACTIONS")
    s.add_argument("--model", required=True, help=MODEL_NAMES_HELP)
    s.add_argument("--out", required=True, metavar="MODEL_DIR")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="model parameter (repeatable)")
    s.add_argument("--sep", help="column separator (default: sniffed)")
    s.add_argument("--tune", action="store_true",
                   help="choose hyperparameters on a validation split carved from the training data "
                        "(recorded in MODEL_DIR/model.json); --param values stay fixed; with --model ltr: "
                        "every source tuned, the ranker trained and early-stopped on that validation split")
    s.add_argument("--embeddings", metavar="EMB_DIR",
                   help="embedding folder of the items (video_id = item_id): needed by content and hybrid, "
                        "enables the content source of --two-stage")
    s.add_argument("--two-stage", action="store_true",
                   help="serve through candidates (collaborative, content, popularity) -> fusion -> ranking")
    from recsys.side_cmd import add_side_arguments

    add_side_arguments(s)
    s.set_defaults(func=cmd_train)

    s = add("recommend", "Top-k unseen items for one user or all users.",
            "recsys recommend models/ease --user 196 -k 10")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID")
    who.add_argument("--all-users", action="store_true")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--out", metavar="FILE", help="write .parquet, .csv or .tsv")
    s.add_argument("--two-stage", action="store_true",
                   help="two-stage results with their sources (default: as the model was trained)")
    s.set_defaults(func=cmd_recommend)

    s = add("evaluate", "Offline ranking evaluation of several models under a split protocol.",
            "recsys evaluate ../shared/data/ml-100k/u.data --protocol stratified --models ease,popularity "
            "-k 10 --out reports/ml100k\n  recsys evaluate ml-100k/u1.base --protocol predefined --test "
            "ml-100k/u1.test --models ease --out reports/u1")
    s.add_argument("interactions", metavar="INTERACTIONS", help="interaction log (the TRAIN file with predefined)")
    s.add_argument("--protocol", required=True,
                   choices=["random_holdout", "leave_last_out", "stratified", "temporal", "kfold", "predefined",
                            "cold_items"],
                   help="cold_items: --test-ratio of the items held out whole (plus that share of the "
                        "other rows), cold/warm/all and popularity-bucket tables")
    s.add_argument("--test", metavar="TEST", help="test file for --protocol predefined (e.g. MovieLens u1.test)")
    s.add_argument("--folds", type=_positive_int, default=5, help="folds for --protocol kfold (default %(default)s)")
    s.add_argument("--models", required=True, help=f"comma-separated, from: {MODEL_NAMES_HELP}; "
                   "content and hybrid fit on --item-embeddings")
    s.add_argument("-k", type=_positive_int, default=10)
    s.add_argument("--ks", default="1,5,10,20,50", help="cut-offs of the metric-vs-K curves (default %(default)s)")
    s.add_argument("--metrics", help="comma-separated names or name@k (default: precision,recall,ndcg,map,mrr,"
                   "hit_rate,coverage,novelty; diversity with --item-embeddings)")
    s.add_argument("--item-embeddings", metavar="NPY",
                   help=".npy (n_items, d) in the dataset's item index order: intra-list diversity, and the "
                        "item vectors content and hybrid fit on")
    s.add_argument("--negatives", type=_positive_int, metavar="N",
                   help="SAMPLED ranking: test items + N random unseen items per user (papers use 100); "
                        "default is full ranking; labelled in every output")
    s.add_argument("--bootstrap", type=_positive_int, default=1000, help="bootstrap resamples for the 95%% CIs")
    s.add_argument("--test-ratio", type=_fraction, default=None,
                   help="test share (default 0.25 for stratified = Recommenders' benchmark split "
                        "python_stratified_split(ratio=0.75, filter_by='item', seed=42); 0.2 otherwise)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--users", choices=["all", "common"], default="all",
                   help="averaging: all = every user with test items, no list counts 0 (implicit, trec_eval -c); "
                        "common = Microsoft Recommenders (nDCG over all, P/R/MAP over users in truth and predictions)")
    s.add_argument("--drop-test-only-items", action="store_true",
                   help="--protocol predefined: drop test rows of items absent from the train file "
                        "(default: keep them in the catalogue, counted as misses)")
    s.add_argument("--sep", help="column separator (default: sniffed)")
    s.add_argument("--out", required=True, metavar="REPORT_DIR")
    _engine_args(s)
    s.add_argument("--num-actors", type=_positive_int, default=None,
                   help="--engine ray: evaluation actors, each holding the model and matrices (default 2)")
    s.set_defaults(func=cmd_evaluate)

    from recsys import serve_cmd  # recsys serve: its own module

    serve_cmd.add_parser(sub, common, fmt)
    from recsys import data_cmd

    data_cmd.add_parser(sub, parents=[common])
    return p


class _OwnInfoFilter(logging.Filter):
    """On the console, INFO from this project only; libraries (open_clip, faiss's loader) from WARNING up."""

    OWN = ("recsys", "embeddings", "generation")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in self.OWN


def _is_input_error(e: BaseException) -> bool:
    """Whether ``e`` says that an input the user named cannot be used (a catalog folder with no clips,
    a missing captions file): bad usage, exit 2. Checked by class without importing the module."""
    catalog = sys.modules.get("embeddings.video.catalog")
    return catalog is not None and isinstance(e, catalog.CatalogError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recsys`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # a run's log file may lower the root level, not the console's
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)
            if not args.verbose:
                handler.addFilter(_OwnInfoFilter())
    for noisy in ("matplotlib", "PIL"):  # font-manager and image-plugin DEBUG lines would drown -v
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if getattr(args, "json", False):
            # stdout carries only the JSON document: anything else a library prints while the
            # command runs (Ray's driver relays task-retry notices with print) goes to stderr
            args.json_stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except UsageError as e:
        sys.stderr.write(f"recsys {args.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; rerun the same command to resume\n")
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI reports every failure as one line, exit 1
        if _is_input_error(e):  # input paths found unusable after parsing are bad usage too (exit 2)
            sys.stderr.write(f"recsys {args.command}: error: {e}\n")
            return 2
        if args.verbose:
            raise
        msg = getattr(e, "cli_message", None) or f"{type(e).__name__}: {e}"  # CLI syntax where the error has it
        sys.stderr.write(f"recsys {args.command}: {msg}\n(rerun with -v for the traceback)\n")
        return 1
    return 0
