"""`recsys bench retrieval|index`: benchmarks on a user's own data."""

from __future__ import annotations

from pathlib import Path

from recsys.cli._common import UsageError, _emb_dir, _emit, _existing, _fraction, _positive_int


def cmd_bench_retrieval(args) -> int:
    from recsys.bench.retrieval import bench_retrieval

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
    from recsys.bench.index import bench_index

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


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
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
