"""Offline with a hub tag (the default ``--pretrained openai``): one quick reachability check, then a short
error within seconds instead of a minute of retries (issue 14, item 5). The hub endpoint is pointed at a
closed local port and the Hugging Face cache at an empty folder, in a subprocess (the endpoint is read
at import time)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys, time
    from embeddings.encoders import PretrainedWeightsUnavailable, load_encoder
    from embeddings.samples import make_sample_catalog
    from recsys.cli import main

    t = time.perf_counter()
    try:
        load_encoder("ViT-B-32", "openai", device="cpu")
        python_msg = None
    except PretrainedWeightsUnavailable as e:
        python_msg = str(e)
    python_s = time.perf_counter() - t
    make_sample_catalog(sys.argv[1] + "/clips", n_clips=1, size=(32, 32), n_frames=4, fps=4)
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err):
        rc = main(["embed", sys.argv[1] + "/clips", "--out", sys.argv[1] + "/emb", "-q"])
    print(json.dumps({"python_msg": python_msg, "python_s": python_s, "rc": rc,
                      "cli_s": time.perf_counter() - t, "cli_err": err.getvalue()}))
""")


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_fails_within_seconds_with_the_fix_first(tmp_path):
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and k not in
           ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(REPO), HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
               HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    # before: 2 files x 5 retries (1+2+4+8+8 s) = about a minute
    assert r["python_s"] < 8 and r["cli_s"] < 8, r
    py, cli = r["python_msg"], r["cli_err"]
    assert py is not None and "cannot be reached" in py
    assert "pretrained='/path/to/open_clip_pytorch_model.bin'" in py and "pretrained='none'" in py
    assert "--pretrained" not in py  # Python syntax for Python callers
    assert r["rc"] == 1
    first = cli.strip().splitlines()[0]  # the message comes first, in CLI syntax
    assert first.startswith("recsys embed: Pretrained weights for model 'ViT-B-32'"), cli
    assert "--pretrained /path/to/open_clip_pytorch_model.bin" in first and "--pretrained none" in first
    assert "load_encoder(" not in first and "Retry" not in cli
    assert len(cli.strip().splitlines()) <= 2, cli
