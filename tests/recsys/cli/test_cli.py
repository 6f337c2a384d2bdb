"""The `recsys` command line: help everywhere, exit codes, JSON output, every stage end to end."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recsys.cli import build_parser, main

SUBCOMMANDS = [["quickstart"], ["run"], ["embed"], ["index"], ["index", "build"], ["search"], ["query"],
               ["train"], ["recommend"], ["evaluate"]]


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: recsys" in out
    if cmd != ["index"]:
        assert "Example" in out


def test_python_dash_m_recsys_works():
    r = subprocess.run([sys.executable, "-m", "recsys", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "quickstart" in r.stdout


def test_bad_usage_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "x.csv"])  # --model and --out missing
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["search", str(tmp_path), "--text", "   "])
    assert e.value.code == 2
    assert "query is empty" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.csv"), "--model", "ease", "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        group = u % 2
        items = rng.choice(np.arange(group * 10, group * 10 + 10), size=6, replace=False)
        rows += [(f"u{u}", f"i{i}", 1.0, 1000 + t) for t, i in enumerate(items)]
    path = tmp_path_factory.mktemp("log") / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(path, index=False)
    return path


def test_train_recommend_evaluate(log_file, tmp_path, capsys):
    assert main(["train", str(log_file), "--model", "ease", "--out", str(tmp_path / "m"),
                 "--param", "l2=1.0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_users"] == 40 and info["params"]["l2"] == 1.0
    assert main(["recommend", str(tmp_path / "m"), "--user", "u0", "-k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in recs] == [1, 2, 3]
    seen = set(pd.read_csv(log_file).query("user_id == 'u0'")["item_id"])
    assert all(r["item_id"] not in seen for r in recs)
    assert all(int(r["item_id"][1:]) < 10 for r in recs)  # u0's group is items 0-9
    assert main(["recommend", str(tmp_path / "m"), "--all-users", "--out", str(tmp_path / "r.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "r.parquet")["user_id"].nunique() == 40
    capsys.readouterr()
    # an unknown user gets the popularity fallback, marked as such, in --json too
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m"), "--user", "nobody", "-k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    counts = pd.read_csv(log_file).groupby("item_id")["user_id"].nunique()
    # the most-interacted items, score = their number of training users (ties in any order)
    assert [r["score"] for r in recs] == list(counts.sort_values(ascending=False).values[:3].astype(float))
    assert all(counts[r["item_id"]] == r["score"] for r in recs) and [r["rank"] for r in recs] == [1, 2, 3]
    assert all(r["user_id"] == "nobody" and r["fallback"].startswith("popularity") for r in recs)
    assert main(["recommend", str(tmp_path / "m"), "--user", "nobody", "-k", "3"]) == 0
    assert "popularity fallback" in capsys.readouterr().out

    assert main(["evaluate", str(log_file), "--protocol", "leave_last_out", "--models", "ease,popularity",
                 "-k", "5", "--out", str(tmp_path / "rep"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    by = {m["model"]: m for m in res["models"]}
    assert by["ease"]["hit_rate@5"] > by["popularity"]["hit_rate@5"]
    for f in ("metrics.md", "metrics.csv", "metrics.json", "per_user.parquet", "metrics.png", "report.md"):
        assert (tmp_path / "rep" / f).is_file()


def test_malformed_interaction_file_fails_with_line_number(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,rating\nu1,i1,1\nu2,i2,oops\n")
    assert main(["train", str(bad), "--model", "ease", "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 3" in err


def test_embed_index_search_query_end_to_end(tmp_path, capsys):
    from embeddings.video.samples import make_sample_catalog

    clips = tmp_path / "clips"
    make_sample_catalog(clips, n_clips=4, size=(32, 32), n_frames=12, fps=6)
    (clips / "broken.mp4").write_bytes(b"")
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    assert main(["embed", str(clips), "--out", str(emb), "--captions", str(clips / "captions.csv"),
                 "--model", "tiny-clip", "--pretrained", "none", "--frames", "2", "--json", "-q"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_embedded"] == 4 and [e["video_id"] for e in s["errors"]] == ["broken"]
    assert main(["embed", str(clips), "--out", str(emb), "--model", "tiny-clip", "--pretrained", "none",
                 "--frames", "2", "--captions", str(clips / "captions.csv"), "--strict", "-q"]) == 1
    capsys.readouterr()
    assert main(["index", "build", str(emb), "--out", str(idx), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ntotal"] == 4
    assert main(["search", str(idx), "--text", "a red circle", "-k", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]
    assert len(res["results"]) == 4  # k > catalog: the padding is not shown as results
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)
    assert main(["query", str(idx), "--text", "a red circle", "-k", "3", "--backfill", "montage",
                 "--threshold", "1.0", "--embeddings", str(emb), "--out", str(tmp_path / "bf"),
                 "--num-frames", "8", "--height", "32", "--width", "32", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)[0]
    assert res["backfill_triggered"] and len(res["generated"]) == 1
    from embeddings.index.video_index import VideoIndex

    reloaded = VideoIndex.load(idx)
    assert reloaded.ntotal == 5
    syn = reloaded.metadata[reloaded.metadata["synthetic"].astype(bool)]
    assert list(syn["video_id"]) == res["generated"] and syn["prompt"].iloc[0] == "a red circle"


def test_parser_documents_command_shapes():
    text = build_parser().format_help()
    for cmd in ("quickstart", "run", "embed", "index", "search", "query", "train", "recommend", "evaluate"):
        assert cmd in text


def test_json_stdout_holds_only_the_document_even_if_a_library_prints(tmp_path, capsys, monkeypatch):
    """Ray's driver relays worker notices with print(); with --json they must not reach stdout."""
    import json

    import recsys.cli as cli

    log_file = tmp_path / "log.csv"
    log_file.write_text("user_id,item_id\n" + "".join(f"u{u},i{(u + j) % 7}\n" for u in range(6) for j in range(3)))
    parser = cli.build_parser()
    args = parser.parse_args(["train", str(log_file), "--model", "popularity", "--out", str(tmp_path / "m"),
                              "--json"])
    real = args.func

    def noisy(a):
        print("(raylet) Task _map_task failed, will be retried")  # what Ray printed in bench_ray
        return real(a)

    monkeypatch.setattr(cli, "build_parser", lambda: _Patched(parser, noisy))
    assert cli.main(["train", str(log_file), "--model", "popularity", "--out", str(tmp_path / "m"), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the whole of stdout parses
    assert "raylet" in captured.err


class _Patched:
    def __init__(self, parser, func):
        self.parser, self.func = parser, func

    def parse_args(self, argv):
        args = self.parser.parse_args(argv)
        args.func = self.func
        return args
