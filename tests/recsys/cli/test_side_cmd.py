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
