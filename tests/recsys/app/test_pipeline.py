"""`recsys run` and `recsys quickstart` end to end: every stage's outputs, errors recorded, resumable."""

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.app.config import load_pipeline
from recsys.cli import main

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data"


def strict_loads(text: str):
    """``json.loads`` raising on NaN / Infinity, as strict parsers (JavaScript's JSON.parse) do."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _check_run_folder(out: Path) -> None:
    for f in ("settings.toml", "run.json", "run.log", "report.md", "metrics.json", "per_user_metrics.parquet",
              "recommendations.parquet", "queries.json", "queries.parquet", "errors.csv",
              "embeddings/manifest.json", "index/manifest.json", "plots/metrics.png",
              "plots/query_confidence.png"):
        assert (out / f).is_file(), f
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not list(out.rglob(".*.tmp"))


def test_quickstart_inputs_resolve_from_a_relative_folder(tmp_path, monkeypatch):
    """A relative --out was joined twice (out/out/inputs/clips): the settings must name the generated files."""
    from recsys.app.config import resolve_pipeline
    from recsys.app.quickstart import make_quickstart_inputs

    monkeypatch.chdir(tmp_path)
    raw = make_quickstart_inputs(Path("recsys-quickstart") / "inputs", n_clips=2, n_users=5)
    cfg = resolve_pipeline(raw, "recsys-quickstart")
    assert Path(cfg["catalog"]["videos"]) == tmp_path / "recsys-quickstart" / "inputs" / "clips"
    assert Path(cfg["catalog"]["videos"]).is_dir() and Path(cfg["interactions"]["path"]).is_file()


def test_quickstart_runs_every_stage(tmp_path, capsys, monkeypatch):
    # README's command, literally: a relative --out from the working folder
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--out", "recsys-quickstart", "-q"]) == 0
    out = tmp_path / "recsys-quickstart"
    printed = capsys.readouterr().out
    assert "random weights" in printed and "report.md" in printed
    _check_run_folder(out)
    report = (out / "report.md").read_text()
    assert "random weights" in report and "![metrics](plots/metrics.png)" in report
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["video_id"]) == ["truncated_upload"]  # the planted bad file, skipped with a reason
    metrics = json.loads((out / "metrics.json").read_text())
    by = {m["model"]: m for m in metrics["models"]}
    # the synthetic log has latent taste groups: EASE must find them, popularity cannot
    assert by["ease"]["ndcg@5"] > by["popularity"]["ndcg@5"]
    queries = json.loads((out / "queries.json").read_text())
    assert all(q["backfill_triggered"] for q in queries)  # quickstart gates at 1.0 to show the loop
    generated = [g for q in queries for g in q["generated"]]
    assert generated and all((out / "synthetic").glob("*.mp4"))
    from embeddings.index.video_index import VideoIndex

    idx = VideoIndex.load(out / "index")
    assert set(generated) <= set(idx.metadata.loc[idx.metadata["synthetic"].astype(bool), "video_id"])
    # strict JSON (JavaScript's JSON.parse): every file written, and --json output with synthetic items
    for path in out.rglob("*.json"):
        strict_loads(path.read_text())
    capsys.readouterr()
    assert main(["search", "recsys-quickstart/index", "--text", "a red circle", "-k", "20", "--json"]) == 0
    doc = strict_loads(capsys.readouterr().out)
    syn = [r for r in doc[0]["results"] if r.get("synthetic")]
    assert syn and all(isinstance(r["seed"], int) and isinstance(r["source_shots"], list) for r in syn)


def test_run_fails_with_exit_1_when_nothing_decodes(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.mp4").write_bytes(b"")
    (clips / "b.mp4").write_text("not a video")
    p = tmp_path / "p.toml"
    p.write_text('[catalog]\nvideos = "clips"\n[encoder]\nmodel = "tiny-clip"\npretrained = "none"\n')
    assert main(["run", str(p), "--out", str(tmp_path / "out"), "-q"]) == 1
    assert "could be decoded" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "out" / "report.md").exists()


def test_unknown_key_in_pipeline_is_exit_1_with_valid_keys(tmp_path, capsys):
    p = tmp_path / "p.toml"
    p.write_text('[catalog]\nvideos = "clips"\nframez = 3\n')
    assert main(["run", str(p)]) == 1
    assert "valid keys" in capsys.readouterr().err


@pytest.mark.realdata
def test_example_pipeline_on_shared_real_data(tmp_path):
    if not (SHARED / "videos" / "manifest.csv").is_file() or not (SHARED / "ml-100k" / "u.data").is_file():
        pytest.skip(f"real data not found at {SHARED}")
    cfg = load_pipeline(REPO / "examples" / "shared_data.toml")
    assert cfg["catalog"]["videos"] == str((SHARED / "videos").resolve())
    out = tmp_path / "shared"
    assert main(["run", str(REPO / "examples" / "shared_data.toml"), "--out", str(out), "-q"]) == 0
    _check_run_folder(out)
    manifest = json.loads((out / "embeddings" / "manifest.json").read_text())
    assert manifest["n_videos"] == 16 and manifest["random_weights"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["n_users"] == 943 and metrics["protocol"]["n_items"] == 1682
    by = {m["model"]: m for m in metrics["models"]}
    assert by["ease"]["ndcg@10"] > by["popularity"]["ndcg@10"] > 0.05


def test_quickstart_reruns_into_its_own_folder_but_never_over_other_data(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "-q"]) == 0
    assert main(["quickstart", "--out", str(out), "-q"]) == 0  # an earlier quickstart is replaced
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert len(list((out / "embeddings" / "shards").glob("*.parquet"))) == 1
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    assert main(["quickstart", "--out", str(other), "-q"]) == 1
    assert (other / "precious.txt").read_text() == "keep me"


def test_refused_rerun_changes_nothing_and_loads_no_model(tmp_path, monkeypatch):
    """A run into a folder embedded with another encoder is refused before the folder or a model is touched."""
    import embeddings.encoders
    from embeddings.store import EmbeddingFolderError
    from recsys.app.config import resolve_pipeline
    from recsys.app.pipeline import run_pipeline
    from recsys.app.quickstart import make_quickstart_inputs

    raw = make_quickstart_inputs(tmp_path / "inputs", n_clips=2, n_users=5)
    cfg = resolve_pipeline(raw, tmp_path)  # tiny-clip / none
    out = tmp_path / "runs" / "shared"
    (out / "embeddings").mkdir(parents=True)
    (out / "embeddings" / "job.json").write_text(json.dumps({
        "encoder": {"model": "ViT-B-32", "pretrained": "openai", "precision": "fp32", "random_weights": False},
        "settings": {"sampling": {"strategy": "uniform", "n_frames": 4}, "shard_size": 256, "max_side": 64},
        "n_inputs": 3, "inputs_sha256": "0" * 64}))
    (out / "report.md").write_text("old report")
    (out / "settings.toml").write_text("old settings")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def no_model(*a, **k):
        raise AssertionError("the model must not load for a refused run")

    monkeypatch.setattr(embeddings.encoders, "load_encoder", no_model)
    with pytest.raises(EmbeddingFolderError, match="encoder.model: 'ViT-B-32' there, 'tiny-clip' asked"):
        run_pipeline(cfg, out, progress=False)
    assert (out / "report.md").read_text() == "old report"
    assert (out / "settings.toml").read_text() == "old settings"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # no run.json, run.log, plots/
    # the command line: bad usage (pass another --out), exit 2, the same nothing changed
    from recsys.app.config import to_toml

    (tmp_path / "other.toml").write_text(to_toml(cfg))
    assert main(["run", str(tmp_path / "other.toml"), "--out", str(out), "-q"]) == 2
    assert (out / "settings.toml").read_text() == "old settings"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def _tiny_split(folder: Path) -> None:
    """Two taste groups of 8 items (ids 0-7, 8-15), 24 users; train/val/test rows per user; item
    features = the group (a .npy with row = item index) and a title per item."""
    import numpy as np

    rng = np.random.default_rng(0)
    parts = {"train": [], "val": [], "test": []}
    for u in range(24):
        g = u % 2
        items = rng.permutation(np.arange(8 * g, 8 * g + 8))
        parts["train"] += [(u, i) for i in items[:4]]
        parts["val"].append((u, items[4]))
        parts["test"] += [(u, i) for i in items[5:7]]
    for name, rows in parts.items():
        pd.DataFrame(rows, columns=["user", "item"]).to_csv(folder / f"{name}.tsv", sep="\t", index=False)
    f = np.zeros((16, 2), dtype=np.float32)
    f[:8, 0] = f[8:, 1] = 1.0
    np.save(folder / "feat.npy", f)
    pd.DataFrame({"item_id": range(16), "title": ["cat #cats"] * 8 + ["car #cars"] * 8}).to_csv(
        folder / "titles.csv", index=False)


def test_pipeline_without_catalog_runs_the_recommender_stages(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    _tiny_split(data)
    p = tmp_path / "conf" / "p.toml"
    p.parent.mkdir()
    p.write_text('[interactions]\npath = "../data/train.tsv"\nformat = "table"\n'
                 'item_features = ["../data/feat.npy"]\nitem_text = "../data/titles.csv"\n'
                 '[rank]\nmodels = ["ease-content", "ease", "itemknn", "popularity"]\nk = 5\n'
                 '[evaluate]\nvalidation = "../data/val.tsv"\ntest = "../data/test.tsv"\nk = 5\n')
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert main(["run", str(p), "--out", str(out), "-q"]) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / "embeddings").exists() and not (out / "index").exists()  # no catalog stages
    metrics = json.loads((out / "metrics.json").read_text())
    proto = metrics["protocol"]
    assert proto["protocol"] == "predefined" and proto["n_test"] == 48 and proto["n_validation"] == 24
    assert proto["tuned_on"] == "predefined validation split"
    assert proto["item_features"] == [[16, 2], [16, 5]]  # feat.npy, then the titles' TF-IDF + SVD
    assert proto["item_features_not_used_by"] == ["ease", "itemknn", "popularity"]
    for name in ("ease", "itemknn", "popularity"):
        assert any(f"{name!r} cannot use item features" in r.getMessage() for r in caplog.records), name
    by = {m["model"]: m for m in metrics["models"]}
    assert set(by) == {"ease-content", "ease", "itemknn", "popularity"}
    assert all(m["params"] for m in metrics["models"])  # each tuned on val.tsv
    for name in by:  # a TREC run per model, k items for each of the 24 test users
        run = pd.read_csv(out / "evaluation" / f"run.{name}.trec", sep=r"\s+", header=None)
        assert run[0].nunique() == 24 and run.groupby(0).size().min() >= 5, name
    assert (out / "evaluation" / "qrels.trec").is_file() and (out / "report.md").is_file()
    assert "TREC run files" in (out / "report.md").read_text()
    assert (out / "models" / "ease-content" / "model.json").is_file()


def test_pipeline_without_catalog_names_a_missing_file_before_running(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _tiny_split(data)
    p = tmp_path / "p.toml"
    p.write_text('[interactions]\npath = "data/train.tsv"\n[evaluate]\nvalidation = "data/vall.tsv"\n')
    assert main(["run", str(p), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "[evaluate] validation:" in err and "vall.tsv is not a file" in err
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.realdata
@pytest.mark.slow
def test_example_tiktok_pipeline_with_fewer_models(tmp_path):
    """examples/tiktok.toml as shipped (paths, features, validation, test, k), with the model list
    cut to its first model, graph-filter, at the settings bench_shortvideo chose (one grid point),
    and popularity, to stay near a minute."""
    from recsys.app.config import resolve_pipeline, tomllib
    from recsys.app.pipeline import run_pipeline

    example = REPO / "examples" / "tiktok.toml"
    if not (SHARED / "tiktok-mmssl" / "train.tsv").is_file():
        pytest.skip(f"real data not found at {SHARED / 'tiktok-mmssl'}")
    raw = tomllib.loads(example.read_text(encoding="utf-8"))
    assert raw["rank"]["models"][0] == "graph-filter" and raw["evaluate"]["k"] == 20
    assert raw["rank"]["params"]["graph-filter"]["feature_weight"] == [0.2, 0.0]
    raw["rank"]["models"] = ["graph-filter", "popularity"]
    raw["rank"]["params"]["graph-filter"]["layers"] = 3
    cfg = resolve_pipeline(raw, example.parent)  # paths relative to the example, as `recsys run` does
    run_pipeline(cfg, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    proto = metrics["protocol"]
    assert proto["protocol"] == "predefined" and proto["n_test"] == 3051 and proto["n_validation"] == 3051
    assert proto["item_features"] == [[6710, 128], [6710, 128]] and proto["item_features_not_used_by"] == ["popularity"]
    by = {m["model"]: m for m in metrics["models"]}
    # the benchmark's validation numbers, reproduced through the pipeline (README)
    assert abs(by["graph-filter"]["recall@20"] - 0.1147) < 5e-4, by["graph-filter"]
    assert abs(by["graph-filter"]["ndcg@20"] - 0.0468) < 5e-4, by["graph-filter"]
    assert by["popularity"]["recall@20"] > 0.01
    for name in by:  # every model: a TREC run of >= 20 items for every evaluated user
        run = pd.read_csv(tmp_path / "run" / "evaluation" / f"run.{name}.trec", sep=r"\s+", header=None)
        assert run[0].nunique() == by[name]["n_users"] and run.groupby(0).size().min() >= 20, name


def test_pipeline_trains_the_learned_stage_with_objective_heads(tmp_path, capsys):
    """`[rank.params.ltr] objectives = ["is_like"]` keeps the log's is_like column for the like
    head (items 10-19 are the liked ones; weighting only that head serves them first); a column
    the log lacks is refused before anything is written."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for u in range(120):
        rows += [(f"u{u}", f"v{i:02d}", 0) for i in rng.choice(10, 6, replace=False)]
        rows += [(f"u{u}", f"v{i:02d}", 1) for i in 10 + rng.choice(10, 3, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "is_like"]).to_csv(tmp_path / "log.csv", index=False)
    conf = ('[interactions]\npath = "log.csv"\n[rank]\nmodels = ["ltr"]\nk = 1\n'
            '[rank.params.ltr]\nsources = "popularity"\nn_candidates = 20\nseed = 1\n'
            'objectives = [{}]\nobjective_weights = {{interaction = 0.0, is_like = 1.0}}\n'
            '[evaluate]\nprotocol = "random_holdout"\ntest_ratio = 0.2\nk = 1\n')
    p = tmp_path / "p.toml"
    p.write_text(conf.format('"is_like"'))
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "-q"]) == 0
    info = json.loads((out / "models" / "ltr" / "model.json").read_text())
    assert info["objectives"] == ["is_like"]
    assert (out / "models" / "ltr" / "model" / "heads" / "is_like.txt").is_file()
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert set(recs["model"]) == {"ltr"} and recs["user_id"].nunique() == 120
    assert (recs["item_id"].str[1:].astype(int) >= 10).mean() > 0.8
    capsys.readouterr()
    p.write_text(conf.format('"is_share"'))
    assert main(["run", str(p), "--out", str(tmp_path / "run2"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "objectives ['is_share'] are not columns of [interactions] path" in err and "is_like" in err
    assert not (tmp_path / "run2").exists()
    p.write_text(conf.format("3"))
    assert main(["run", str(p), "--out", str(tmp_path / "run3"), "-q"]) == 1
    assert "[rank.params.ltr] objectives=[3]" in capsys.readouterr().err
