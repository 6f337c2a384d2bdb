"""`recsys index build|info`: FAISS indexes over an embedding folder."""

from __future__ import annotations

from recsys.cli._common import (
    UsageError,
    _emb_dir,
    _emit,
    _engine_args,
    _index_folder,
    _positive_int,
    _tuned,
)


def cmd_index_build(args) -> int:
    from recsys.app import stages

    _emb_dir(args.emb_dir)
    from recsys.app.config import ON_DISK

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


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
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
