"""``recsys data list`` and ``recsys data download NAME [--root DIR]``.

Registered in :mod:`recsys.cli` by :func:`add_parser`; the work is done by
:func:`recsys.data.datasets.download` (verified, atomic) and this module only parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "cmd_data_list", "cmd_data_download", "dataset_rows"]

_LOCAL_ONLY = {
    "tiktok-mmssl": "no official download: the TikTok split of github.com/HKUDS/MMSSL (train.tsv, "
                    "val.tsv, image_feat.npy, audio_feat.npy) in one folder",
}


def _json(args, payload) -> None:
    out = getattr(args, "json_stdout", None) or sys.stdout  # main() sends other prints to stderr
    json.dump(payload, out, indent=2)
    out.write("\n")


def dataset_rows() -> list[dict]:
    """One row per known dataset: ``name``, ``url``, ``checksum`` (how it is verified), ``folder``."""
    from recsys.data.datasets import SOURCES

    rows = []
    for name, src in sorted(SOURCES.items()):
        check = (f"md5 {src.md5}" if src.md5 else "md5 published at " + src.md5_url if src.md5_url
                 else f"md5 from Zenodo record {src.zenodo_record}" if src.zenodo_record
                 else "none published: pass --sha256")
        rows.append({"name": name, "url": src.url, "checksum": check, "folder": src.folder})
    for name, how in _LOCAL_ONLY.items():
        rows.append({"name": name, "url": None, "checksum": how, "folder": name})
    return rows


def cmd_data_list(args) -> int:
    rows = dataset_rows()
    if args.json:
        _json(args, rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        sys.stdout.write(f"{r['name']:<{width}}  {r['url'] or '(local only)'}\n"
                         f"{'':<{width}}  checksum: {r['checksum']}\n")
    return 0


def cmd_data_download(args) -> int:
    from recsys.cli import UsageError
    from recsys.data.datasets import SOURCES, download

    if args.name in _LOCAL_ONLY:
        raise UsageError(f"{args.name} has no official download ({_LOCAL_ONLY[args.name]}); "
                         f"load it with recsys.data.datasets.load_dataset({args.name!r}, FOLDER)")
    if args.name not in SOURCES:
        raise UsageError(f"unknown dataset {args.name!r}; `recsys data list` shows the "
                         f"{len(SOURCES) + len(_LOCAL_ONLY)} known names")
    folder = download(args.name, args.root, md5=args.md5, sha256=args.sha256)
    payload = {"name": args.name, "folder": str(folder)}
    if args.json:
        _json(args, payload)
    else:
        sys.stdout.write(f"{args.name}: verified and unpacked in {folder}\n")
    return 0


def add_parser(sub, parents=()) -> None:
    """Add ``data list`` and ``data download`` to the ``recsys`` subcommands ``sub``."""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("data", help="List and download public datasets (verified by checksum).",
                       description="List and download public datasets (verified by checksum).",
                       epilog="Example:\n  recsys data list\n  recsys data download ml-100k "
                              "--root data", formatter_class=fmt)
    dsub = s.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = dsub.add_parser("list", help="Known datasets, their official URL and checksum.",
                        parents=list(parents), formatter_class=fmt,
                        epilog="Example:\n  recsys data list --json")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=cmd_data_list)
    p = dsub.add_parser("download", help="Download, verify and unpack one dataset.",
                        parents=list(parents), formatter_class=fmt,
                        epilog="Example:\n  recsys data download ml-100k --root data\n"
                               "Offline: fetch the URL of `recsys data list` by hand, put the file "
                               "in --root and rerun: it is verified and unpacked from there.")
    p.add_argument("name", metavar="NAME", help="a name from `recsys data list`")
    p.add_argument("--root", default="data", help="folder for the archive and the unpacked data "
                   "(default %(default)s)")
    p.add_argument("--md5", metavar="HEX", help="expected md5 (overrides the published one)")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 (needed where none is published)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=cmd_data_download)
