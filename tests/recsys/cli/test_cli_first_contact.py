"""A new user's first commands (issue 14, item 8): clear errors with exit 2 for bad usage before anything
loads, help with examples, no 'None' in the output, final paths in the logs, quiet -v, tuning reported."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.cli._common import MODEL_NAMES_HELP


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        items = rng.choice(np.arange((u % 2) * 8, (u % 2) * 8 + 8), size=5, replace=False)
        rows += [(f"u{u}", f"i{i}", 1.0, 1000 + t) for t, i in enumerate(items)]
    path = tmp_path_factory.mktemp("log") / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(path, index=False)
    return path


def _fake_index(folder, tuning=None):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "factory_string": "HNSW32,Flat", "metric": "ip", "ntotal": 5, "dim": 4, "encoder": {"model": "tiny-clip"},
        "tuning": tuning}))
    return folder


def test_index_info_on_an_embedding_folder_is_a_clear_usage_error(tmp_path, capsys):
    emb = tmp_path / "emb"
    emb.mkdir()
    (emb / "manifest.json").write_text(json.dumps({"format_version": 1, "n_videos": 3, "n_inputs": 3}))
    assert main(["index", "info", str(emb)]) == 2
    err = capsys.readouterr().err
    assert "embedding folder" in err and "recsys index build" in err and "KeyError" not in err


def test_index_info_says_default_search_parameters_not_none(tmp_path, capsys):
    idx = _fake_index(tmp_path / "idx", {"search_params": None, "recall@10": 1.0, "ms_per_query": 0.02,
                                         "n_queries": 50, "reason": "exact search fits the latency target"})
    assert main(["index", "info", str(idx)]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "default search parameters: measured recall@10 1.0000" in out


def test_model_logs_name_the_final_folder_not_the_staging_one(tmp_path, log_file, caplog):
    from recsys.app.stages import train_model
    from recsys.data.interactions import load_interactions
    from recsys.ranking.artifacts import save_trained

    tm = train_model(load_interactions(log_file), "ease", {"l2": 1.0})
    with caplog.at_level(logging.DEBUG, logger="recsys"):
        save_trained(tmp_path / "m", tm)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(str(tmp_path / "m") in m for m in info)
    assert not any(".tmp" in m for m in info)


def test_verbose_keeps_matplotlib_and_pil_debug_off_the_console(tmp_path):
    for name in ("matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    assert main(["-v", "index", "info", str(tmp_path / "missing")]) == 2
    # the console handler passes DEBUG with -v; these loggers themselves must stop below WARNING
    assert logging.getLogger("matplotlib").level == logging.WARNING
    assert logging.getLogger("PIL").level == logging.WARNING


def test_usage_errors_found_after_parsing_exit_2(tmp_path, log_file, capsys):
    garbage = tmp_path / "x.csv"
    garbage.write_text("just one field\n")
    # unknown model: refused before the file is read (the file would fail to parse: exit 1 before)
    assert main(["train", str(garbage), "--model", "nosuch", "--out", str(tmp_path / "m")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["evaluate", str(log_file), "--protocol", "random_holdout", "--models", "ease,nosuch",
                 "--out", str(tmp_path / "r")]) == 2
    assert "nosuch" in capsys.readouterr().err and not (tmp_path / "r").exists()
    # empty folders
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["embed", str(empty), "--out", str(tmp_path / "e"), "--model", "tiny-clip",
                 "--pretrained", "none"]) == 2
    assert "no videos or images" in capsys.readouterr().err
    assert main(["index", "build", str(empty), "--out", str(tmp_path / "i")]) == 2
    assert "not an embedding folder" in capsys.readouterr().err
    assert main(["search", str(empty), "--text", "a dog"]) == 2
    # a ranker that cannot score new clips: refused before the index (here a fake one) loads
    idx = _fake_index(tmp_path / "idx")
    ranker = tmp_path / "ranker"
    ranker.mkdir()
    (ranker / "model.json").write_text(json.dumps({"model": "ease"}))
    assert main(["query", str(idx), "--text", "a dog", "--ranker", str(ranker)]) == 2
    assert "'ease' model" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["index", "--help"], ["bench", "--help"], ["index", "info", "--help"]])
def test_group_help_has_an_example(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr().out
    assert e.value.code == 0 and "Example" in out and "recsys " + argv[0] in out.split("Example")[-1]


def test_train_and_evaluate_help_list_every_model(capsys):
    from recsys.models import MODELS

    assert all(name in MODEL_NAMES_HELP for name in MODELS)
    for cmd in ("train", "evaluate"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        # argparse wraps help at hyphens ("ease-\n content"): join those back
        text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
        assert all(name in text for name in MODELS), cmd


def test_train_tune_prints_the_chosen_hyperparameters_and_the_time(log_file, tmp_path, capsys):
    assert main(["train", str(log_file), "--model", "ease", "--tune", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert f"chosen {info['tuning']['best_params']}" in out
    assert info["tuning"]["seconds"] >= 0 and f"in {info['tuning']['seconds']:.2f} s" in out


def test_evaluate_fits_content_models_on_item_embeddings(log_file, tmp_path, capsys):
    from recsys.data.interactions import build_dataset, load_interactions

    ds = build_dataset(load_interactions(log_file))
    groups = np.array([int(str(i)[1:]) // 8 for i in ds.item_ids])  # two taste groups of items
    emb = np.eye(2, dtype=np.float32)[groups] + 0.01
    np.save(tmp_path / "emb.npy", emb)
    assert main(["evaluate", str(log_file), "--protocol", "random_holdout", "--models", "content,popularity",
                 "--item-embeddings", str(tmp_path / "emb.npy"), "-k", "3", "--bootstrap", "10",
                 "--out", str(tmp_path / "r"), "--json"]) == 0
    by = {m["model"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert by["content"]["ndcg@3"] > by["popularity"]["ndcg@3"]  # the embeddings carry the taste groups
