"""`recsys embed`: the batch embedding job over a folder of videos."""

from __future__ import annotations

from recsys.cli._common import (
    UsageError,
    _emit,
    _encoder_args,
    _engine_args,
    _existing,
    _positive_int,
    log,
)


def cmd_embed(args) -> int:
    from recsys.app import stages

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


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
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
