"""The ``recsys`` command line: parses arguments and calls library functions, nothing more.

Exit status: 0 on success, 2 on bad usage (wrong arguments, missing input paths, empty query),
1 on failure (a stage that could not complete). ``--json`` prints one JSON document on stdout;
logs and progress bars go to stderr.

One module per command group (run, embed, index, bench, search, train, evaluate); each adds its subcommands in
``add_commands`` next to their handlers, and helpers shared by them live in ``_common``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import textwrap

from recsys.cli import bench, data, embed, evaluate, index, run, search, serve, train
from recsys.cli._common import UsageError, _is_input_error

EPILOG = textwrap.dedent("""\
    Start here:
      recsys quickstart                       # the whole pipeline on a generated sample, offline, ~1 min
      recsys run examples/shared_data.toml    # the same on real clips + MovieLens 100K
    Every subcommand has --help with an example.""")


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

    for group in (run, embed, index, bench, search, train, evaluate):
        group.add_commands(sub, add, common, fmt)
    serve.add_parser(sub, common, fmt)  # recsys serve
    data.add_parser(sub, parents=[common])  # recsys data list|download
    return p


class _OwnInfoFilter(logging.Filter):
    """On the console, INFO from this project only; libraries (open_clip, faiss's loader) from WARNING up."""

    OWN = ("recsys", "embeddings", "generation")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in self.OWN


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


