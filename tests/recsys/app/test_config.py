"""The pipeline file: unknown keys are errors that list the valid ones; defaults are explicit."""

import pytest

from recsys.app.config import (
    SCHEMA,
    PipelineConfigError,
    load_pipeline,
    resolve_pipeline,
    to_toml,
    tomllib,
)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(PipelineConfigError) as e:
        resolve_pipeline({"catalog": {"videos": "v", "frame": 8}})
    msg = str(e.value)
    assert "frame" in msg and "did you mean 'frames'" in msg
    for key in SCHEMA["catalog"]:
        assert key in msg


def test_unknown_table_lists_valid_tables():
    with pytest.raises(PipelineConfigError, match="valid tables"):
        resolve_pipeline({"catalog": {"videos": "v"}, "ranker": {}})


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(PipelineConfigError, match=r"\[catalog\] frames = '8': expected int"):
        resolve_pipeline({"catalog": {"videos": "v", "frames": "8"}})
    with pytest.raises(PipelineConfigError, match="expected bool|expected int"):
        resolve_pipeline({"catalog": {"videos": "v", "frames": True}})


def test_required_key_and_protocol_checked():
    with pytest.raises(PipelineConfigError, match="needs `videos"):
        resolve_pipeline({"catalog": {}})
    with pytest.raises(PipelineConfigError, match="protocol"):
        resolve_pipeline({"interactions": {"path": "x"}, "evaluate": {"protocol": "loo"}})


def test_paths_resolved_relative_to_file_and_defaults_filled(tmp_path):
    f = tmp_path / "sub" / "p.toml"
    f.parent.mkdir()
    f.write_text('[catalog]\nvideos = "../clips"\n[interactions]\npath = "/abs/u.data"\n')
    cfg = load_pipeline(f)
    assert cfg["catalog"]["videos"] == str((tmp_path / "clips").resolve())
    assert cfg["interactions"]["path"] == "/abs/u.data"
    assert cfg["catalog"]["frames"] == SCHEMA["catalog"]["frames"]
    assert cfg["encoder"]["pretrained"] is None  # never random weights unless asked (None = the model's default)
    from recsys.app.stages import resolve_pretrained

    assert resolve_pretrained(cfg["encoder"]["model"], None) == "openai"
    assert resolve_pretrained("hf-hub:org/name", None) is None
    assert resolve_pretrained("hf-hub:org/name", "hf-hub") is None
    assert resolve_pretrained("ViT-B-32", "none") == "none"


def test_invalid_toml_reports_position(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[catalog\nvideos = 1\n")
    with pytest.raises(PipelineConfigError, match="not valid TOML"):
        load_pipeline(f)


def test_to_toml_round_trips():
    cfg = resolve_pipeline({"catalog": {"videos": "/v"}, "rank": {"params": {"ease": {"l2": 5.0}}}})
    again = tomllib.loads(to_toml(cfg))
    assert again["catalog"]["videos"] == "/v"
    assert again["rank"]["params"]["ease"]["l2"] == 5.0
    assert again["rank"]["models"] == cfg["rank"]["models"]
    # parameters holding mappings (the learned stage's weights) and keys that need quoting
    ltr = {"objective_weights": {"interaction": 1.0, "is like": 2}, "lgb_params": {"num_leaves": 7},
           "objectives": ["is like"]}
    cfg = resolve_pipeline({"interactions": {"path": "/l.tsv"},
                            "rank": {"models": ["ltr"], "params": {"ltr": ltr, "ease-content": {"l2": 1.0}}}})
    assert tomllib.loads(to_toml(cfg))["rank"]["params"] == {"ltr": ltr, "ease-content": {"l2": 1.0}}


def test_index_on_disk_and_workers_are_checked():
    base = {"catalog": {"videos": "v"}}
    cfg = resolve_pipeline(base)
    assert cfg["index"]["on_disk"] == "auto" and cfg["index"]["workers"] == 1
    with pytest.raises(PipelineConfigError, match=r'on_disk = .maybe.: expected "auto", "yes" or "no"'):
        resolve_pipeline({**base, "index": {"on_disk": "maybe"}})
    with pytest.raises(PipelineConfigError, match="workers = 0"):
        resolve_pipeline({**base, "index": {"workers": 0}})
    assert resolve_pipeline({**base, "index": {"on_disk": "yes", "workers": 2}})["index"]["workers"] == 2


def test_catalog_less_evaluation_keys_resolve_and_are_checked(tmp_path):
    from recsys.app.config import check_input_files

    f = tmp_path / "sub" / "p.toml"
    f.parent.mkdir()
    f.write_text('[interactions]\npath = "../train.tsv"\nformat = "sequence"\n'
                 'item_features = ["../img.npy", "/abs/audio.npy"]\nitem_text = "t.csv"\n'
                 '[evaluate]\nvalidation = "../val.tsv"\ntest = "../val.tsv"\nk = 20\n')
    cfg = load_pipeline(f)
    assert cfg["interactions"]["item_features"] == [str((tmp_path / "img.npy").resolve()), "/abs/audio.npy"]
    assert cfg["interactions"]["item_text"] == str((tmp_path / "sub" / "t.csv").resolve())
    assert cfg["evaluate"]["validation"] == cfg["evaluate"]["test"] == str((tmp_path / "val.tsv").resolve())
    assert cfg["evaluate"]["protocol"] == "predefined"  # a test file means the predefined split
    assert tomllib.loads(to_toml(cfg))["interactions"]["item_features"] == cfg["interactions"]["item_features"]
    with pytest.raises(PipelineConfigError, match=r"\[interactions\] path: .*train.tsv is not a file.*relative "
                                                  r"to the pipeline file"):
        check_input_files(cfg)
    (tmp_path / "train.tsv").write_text("0\t1 2\n")
    (tmp_path / "val.tsv").write_text("0\t3\n")
    (tmp_path / "sub" / "t.csv").write_text("item_id,title\n1,a\n")
    with pytest.raises(PipelineConfigError, match=r"\[interactions\] item_features: .*img.npy is not a file"):
        check_input_files(cfg)


@pytest.mark.parametrize("raw, message", [
    ({"interactions": {"path": "a", "format": "csv"}}, r"format = 'csv': expected one of \['auto', 'sequence'"),
    ({"interactions": {"path": "a", "item_features": "x.npy"}}, r"item_features = 'x.npy': expected list"),
    ({"interactions": {"path": "a"}, "evaluate": {"protocol": "stratified", "test": "t"}},
     r"protocol = 'stratified' with a test file"),
    ({"interactions": {"path": "a"}, "evaluate": {"protocol": "predefined"}}, "without a test file"),
    ({"catalog": {"videos": "v"}, "evaluate": {"validation": "v.tsv"}},
     r"\[evaluate\] validation need\(s\) an interaction log"),
    ({"interactions": {"path": "a"}, "evaluate": {"tset": "t"}}, r"did you mean 'test'"),
    ({"interactions": {"path": "a", "item_text": 3}}, r"item_text = 3: expected a path"),
])
def test_catalog_less_evaluation_keys_reject_bad_values(raw, message):
    with pytest.raises(PipelineConfigError, match=message):
        resolve_pipeline(raw)
