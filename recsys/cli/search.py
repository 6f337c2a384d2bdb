"""`recsys search`, `recsys query` (backfill) and `recsys calibrate` (the backfill gate)."""

from __future__ import annotations

from pathlib import Path

from recsys.cli._common import (
    _SEARCH_DEVICE_HELP,
    UsageError,
    _emit,
    _existing,
    _fraction,
    _hybrid_ranker,
    _index_folder,
    _positive_int,
    _print_results,
    _query_text,
    _synthetic_args,
    log,
)


def cmd_search(args) -> int:
    index_dir = _index_folder(args.index_dir)  # every input checked before faiss/torch/open_clip load
    frames_dir = _index_folder(args.frames_index, "frame index folder") if args.frames_index else None
    from embeddings.index import VideoIndex
    from recsys.app import stages

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
    from recsys.app import stages

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
        from recsys.ranking.artifacts import load_trained

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
    from recsys.app import stages

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


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
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
