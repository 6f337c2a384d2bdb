"""`recsys quickstart` and `recsys run PIPELINE.toml`: the whole pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

from recsys.cli._common import UsageError, _emit, _existing


def cmd_quickstart(args) -> int:
    from recsys.app.quickstart import run_quickstart

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
    from recsys.app.config import load_pipeline, to_toml
    from recsys.app.pipeline import check_rerun, run_pipeline

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


def add_commands(sub, add, common, fmt) -> None:
    """Add this group's subcommands to ``sub`` (``add`` makes a subcommand with --json and an example)."""
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
