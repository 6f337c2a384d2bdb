"""`recsys train --validation/--item-features/--item-text` on tiny files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main


@pytest.fixture
def tiny(tmp_path):
    """Two groups of 6 items (0-5, 6-11); users watch 3 of their group; features = the group."""
    rng = np.random.default_rng(0)
    rows, val = [], []
    for u in range(30):
        g = u % 2
        items = rng.choice(np.arange(6 * g, 6 * g + 6), size=4, replace=False)
        rows += [(str(u), str(i)) for i in items[:3]]
        val.append((str(u), str(items[3])))
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "train.tsv", sep="\t",
                                                        index=False)
    pd.DataFrame(val, columns=["user", "item"]).to_csv(tmp_path / "val.tsv", sep="\t",
                                                       index=False)
    f = np.zeros((12, 3), dtype=np.float32)
    f[:6, 0] = f[6:, 1] = 1.0
    f[:, 2] = np.arange(12) / 12
    np.save(tmp_path / "feat.npy", f)
    pd.DataFrame({"item_id": [str(i) for i in range(12)],
                  "title": ["cat video #cats"] * 6 + ["car race #cars"] * 6}).to_csv(
        tmp_path / "titles.csv", index=False)
    return tmp_path


def test_train_tunes_on_the_given_validation_with_features(tiny, capsys):
    out = tiny / "m"
    assert main(["train", str(tiny / "train.tsv"), "--model", "ease-content", "--out", str(out),
                 "--tune", "--validation", str(tiny / "val.tsv"), "--item-features",
                 str(tiny / "feat.npy"), "--item-text", str(tiny / "titles.csv"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tuning"]["validation"]["protocol"] == "predefined validation split"
    assert info["tuning"]["validation"]["n_valid"] == 30
    assert info["item_features"][0] == [12, 3] and len(info["item_features"]) == 2


def test_models_that_cannot_use_features_say_so(tiny, capsys):
    assert main(["train", str(tiny / "train.tsv"), "--model", "ease", "--out", str(tiny / "m"),
                 "--item-features", str(tiny / "feat.npy")]) == 1
    assert "cannot use item features" in capsys.readouterr().err
    assert main(["train", str(tiny / "train.tsv"), "--model", "ease", "--out", str(tiny / "m"),
                 "--validation", str(tiny / "val.tsv")]) == 1
    assert "used only for tuning" in capsys.readouterr().err


def test_feature_file_with_too_few_rows_names_it(tiny, capsys):
    np.save(tiny / "short.npy", np.ones((5, 2), dtype=np.float32))
    assert main(["train", str(tiny / "train.tsv"), "--model", "ease-content", "--out",
                 str(tiny / "m"), "--item-features", str(tiny / "short.npy")]) == 1
    err = capsys.readouterr().err
    assert "short.npy" in err and "5 rows" in err


def _test_file(tiny):
    """Each user's group items not in train or validation: a predefined test split."""
    train = pd.read_csv(tiny / "train.tsv", sep="\t", dtype=str)
    val = pd.read_csv(tiny / "val.tsv", sep="\t", dtype=str)
    seen = set(map(tuple, pd.concat([train, val]).values.tolist()))
    rows = [(str(u), str(i)) for u in range(30) for i in range(6 * (u % 2), 6 * (u % 2) + 6)
            if (str(u), str(i)) not in seen][::2]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tiny / "test.tsv", sep="\t", index=False)
    return tiny / "test.tsv"


def test_evaluate_tunes_on_the_given_validation_and_feeds_features(tiny, capsys, caplog):
    test = _test_file(tiny)
    out = tiny / "rep"
    with caplog.at_level("WARNING"):
        assert main(["evaluate", str(tiny / "train.tsv"), "--protocol", "predefined", "--test", str(test),
                     "--models", "ease-content,ease", "-k", "3", "--bootstrap", "20",
                     "--validation", str(tiny / "val.tsv"), "--item-features", str(tiny / "feat.npy"),
                     "--item-text", str(tiny / "titles.csv"), "--out", str(out), "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    proto = json.loads((out / "protocol.json").read_text())
    assert proto["tuned_on"] == "predefined validation split" and proto["n_validation"] == 30
    assert proto["tuning_metric"] == "ndcg@3"  # tuned at the evaluation's k
    assert proto["validation_source"].endswith("val.tsv")
    assert proto["item_features"][0] == [12, 3] and len(proto["item_features"]) == 2  # + titles
    assert proto["item_feature_sources"][0].endswith("feat.npy")
    # ease cannot take the features: it is named, in the log and in the protocol record
    assert proto["item_features_not_used_by"] == ["ease"]
    assert any("'ease' cannot use item features" in r.getMessage() for r in caplog.records)
    assert not any("'ease-content' cannot" in r.getMessage() for r in caplog.records)
    rows = {r["model"]: r for r in res["models"]}
    # chosen on the validation file: ease's l2 from its default grid, recorded per model
    assert json.loads(rows["ease"]["params"])["l2"] in (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0)
    assert "feature_weight" in json.loads(rows["ease-content"]["params"])
    assert (out / "run.ease-content.trec").is_file() and (out / "run.ease.trec").is_file()


def test_evaluate_side_files_are_checked_and_cold_items_takes_features(tiny, capsys, caplog):
    base = ["evaluate", str(tiny / "train.tsv"), "--models", "ease-content,popularity", "-k", "3",
            "--out", str(tiny / "rep")]
    assert main(base + ["--protocol", "random_holdout", "--item-features", str(tiny / "nope.npy")]) == 2
    assert "item feature file" in capsys.readouterr().err
    assert main(base + ["--protocol", "cold_items", "--validation", str(tiny / "val.tsv")]) == 2
    assert "--validation is not used by --protocol cold_items" in capsys.readouterr().err
    with caplog.at_level("WARNING"):
        assert main(base + ["--protocol", "cold_items", "--test-ratio", "0.34", "--item-features",
                            str(tiny / "feat.npy"), "--json"]) == 0
    assert any("'popularity' cannot use item features" in r.getMessage() for r in caplog.records)
    summary = {(r["model"], r["items"]): r for r in json.loads(capsys.readouterr().out)["models"]}
    # the group feature lets ease-content place cold items; popularity scores them all alike
    assert summary[("ease-content", "cold")]["recall@3"] > summary[("popularity", "cold")]["recall@3"]


def test_npy_rows_without_interactions_join_the_catalogue(tiny, capsys):
    # two more feature rows (items 12, 13: group 0 content) than the log names: they are items,
    # ranked in the full ranking; ease-content can recommend them, EASE cannot
    f = np.load(tiny / "feat.npy")
    np.save(tiny / "feat14.npy", np.vstack([f, f[:2]]))
    test = _test_file(tiny)
    out = tiny / "rep14"
    assert main(["evaluate", str(tiny / "train.tsv"), "--protocol", "predefined", "--test", str(test),
                 "--models", "ease-content,ease", "-k", "3", "--bootstrap", "5", "--item-features",
                 str(tiny / "feat14.npy"), "--out", str(out), "-q"]) == 0
    proto = json.loads((out / "protocol.json").read_text())
    assert proto["n_items"] == 14 and proto["item_features"] == [[14, 3]]
    assert proto["catalog"].startswith("12 items of the train and test rows + 2 rows")
    assert "run.ease-content.trec" in {p.name for p in out.iterdir()}


def test_evaluate_ltr_learns_from_the_validation_file_and_refuses_it_as_test(tiny, capsys):
    test = _test_file(tiny)
    out = tiny / "rep"
    common = ["--protocol", "predefined", "--models", "ltr,popularity", "-k", "3",
              "--validation", str(tiny / "val.tsv"), "--json", "-q"]
    assert main(["evaluate", str(tiny / "train.tsv"), "--test", str(test), "--out", str(out)] + common) == 0
    res = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in res["models"]} == {"ltr", "popularity"}
    # the validation file as test: the ranker would be scored on its own labels -> refused
    refused = tiny / "rep2"
    assert main(["evaluate", str(tiny / "train.tsv"), "--test", str(tiny / "val.tsv"), "--out",
                 str(refused)] + common) != 0
    assert "scored on its own labels" in capsys.readouterr().err
    assert not refused.exists()  # nothing written
