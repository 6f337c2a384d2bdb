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


def test_index_on_disk_and_workers_are_checked():
    base = {"catalog": {"videos": "v"}}
    cfg = resolve_pipeline(base)
    assert cfg["index"]["on_disk"] == "auto" and cfg["index"]["workers"] == 1
    with pytest.raises(PipelineConfigError, match=r'on_disk = .maybe.: expected "auto", "yes" or "no"'):
        resolve_pipeline({**base, "index": {"on_disk": "maybe"}})
    with pytest.raises(PipelineConfigError, match="workers = 0"):
        resolve_pipeline({**base, "index": {"workers": 0}})
    assert resolve_pipeline({**base, "index": {"on_disk": "yes", "workers": 2}})["index"]["workers"] == 2
