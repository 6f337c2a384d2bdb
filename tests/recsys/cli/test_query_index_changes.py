"""`recsys query --backfill` adds clips to the index on disk: it says so, stores paths that resolve from
anywhere, `search` filters them like `query`, and the index remembers its embedding folder (issue 14, item 3);
`search` checks its inputs before anything heavy is imported (item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.cli import build_parser, main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """4 rendered clips embedded with the tiny random encoder and a Flat index, built from a relative path."""
    from embeddings.video.samples import make_sample_catalog

    root = tmp_path_factory.mktemp("qi")
    make_sample_catalog(root / "clips", n_clips=4, size=(32, 32), n_frames=12, fps=6)
    cwd = os.getcwd()
    os.chdir(root)  # relative paths, as a user types them
    try:
        assert main(["embed", "clips", "--out", "emb", "--model", "tiny-clip", "--pretrained", "none",
                     "--frames", "2", "-q"]) == 0
        assert main(["index", "build", "emb", "--out", "work/idx", "-q"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_index_records_its_embedding_folder_and_query_finds_it(built, tmp_path, capsys, monkeypatch):
    manifest = json.loads((built / "work" / "idx" / "manifest.json").read_text())
    assert manifest["embeddings"] == str((built / "emb").resolve())
    # no --embeddings, and INDEX_DIR/../embeddings does not exist: the recorded folder is used
    monkeypatch.chdir(built)
    capsys.readouterr()
    assert main(["query", "work/idx", "--text", "a red circle", "-k", "3", "--backfill", "montage",
                 "--threshold", "1.0", "--out", "bf", "--num-frames", "8", "--height", "32",
                 "--width", "32"]) == 0
    out = capsys.readouterr().out
    assert "Added 1 synthetic clip(s) to the index" in out and "--exclude-synthetic" in out

    from embeddings.index import VideoIndex

    reloaded = VideoIndex.load(built / "work" / "idx")
    assert reloaded.embeddings_dir == manifest["embeddings"]  # kept when query re-saves the index
    syn = reloaded.metadata[reloaded.metadata["synthetic"].astype(bool)]
    path = Path(syn["path"].iloc[0])
    assert path.is_absolute() and path.is_file()  # resolves from any working folder
    monkeypatch.chdir(tmp_path)
    assert Path(syn["path"].iloc[0]).is_file()

    # a plain search returns the synthetic clip (all 5 items); the filters leave it out
    idx = str(built / "work" / "idx")
    assert main(["search", idx, "--text", "a red circle", "-k", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]["results"]
    assert len(res) == 5 and sum(r["synthetic"] for r in res) == 1
    assert main(["search", idx, "--text", "a red circle", "-k", "10"]) == 0
    assert "--exclude-synthetic" in capsys.readouterr().out  # the note explaining the synthetic rows
    assert main(["search", idx, "--text", "a red circle", "-k", "10", "--exclude-synthetic", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]["results"]
    assert len(res) == 4 and not any(r["synthetic"] for r in res)
    assert main(["search", idx, "--text", "a red circle", "-k", "10", "--max-synthetic", "0", "--json"]) == 0
    assert not any(r["synthetic"] for r in json.loads(capsys.readouterr().out)[0]["results"])


def test_query_help_says_backfill_changes_the_index():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = " ".join(sub.choices["query"].format_help().split())
    assert "ADDS the clips to INDEX_DIR on disk" in text
    search_help = sub.choices["search"].format_help()
    assert "--exclude-synthetic" in search_help and "--max-synthetic" in search_help


def _search_in_subprocess(args: list[str]) -> dict:
    code = ("import json, sys\nfrom recsys.cli import main\nrc = main(sys.argv[1:])\n"
            "print(json.dumps({'rc': rc, 'heavy': sorted(m for m in ('open_clip', 'torch', 'faiss') "
            "if m in sys.modules)}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, "search", *args, "--text", "a dog"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "err": proc.stderr}


def test_search_on_wrong_folders_fails_before_heavy_imports(built, tmp_path):
    (tmp_path / "empty").mkdir()
    cases = {str(tmp_path / "missing"): "does not exist",
             str(tmp_path / "empty"): "has no manifest.json",
             str(built / "emb"): "is an embedding folder"}
    for folder, words in cases.items():
        r = _search_in_subprocess([folder])
        assert r["rc"] == 2 and words in r["err"], r
        assert r["heavy"] == [], r  # neither faiss nor torch/open_clip imported
    # a good index with a wrong --frames-index: still refused before faiss/torch load
    r = _search_in_subprocess([str(built / "work" / "idx"), "--frames-index", str(tmp_path / "empty")])
    assert r["rc"] == 2 and "frame index folder" in r["err"] and r["heavy"] == [], r
