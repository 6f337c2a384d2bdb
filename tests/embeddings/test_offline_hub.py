"""Offline with a hub tag (the default ``--pretrained openai``): one quick reachability check, then a short
error within seconds instead of a minute of retries (issue 14, item 5). The hub endpoint is pointed at a
closed local port and the Hugging Face cache at an empty folder, so the test means the same online."""

from __future__ import annotations

import socket
import time

import huggingface_hub
import pytest

from embeddings import encoders
from embeddings.encoders import PretrainedWeightsUnavailable, load_encoder
from recsys.cli import main


@pytest.fixture
def hub_down(monkeypatch, tmp_path):
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    c = huggingface_hub.constants
    monkeypatch.setattr(c, "ENDPOINT", endpoint)
    monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    probe = getattr(encoders, "_probe_hub", None)  # once per process: start and end the test unprobed
    if probe is not None:
        probe.cache_clear()
    yield tmp_path
    if probe is not None:
        probe.cache_clear()


def test_python_call_fails_within_seconds_in_python_syntax(hub_down):
    t = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        load_encoder("ViT-B-32", "openai", device="cpu", cache_dir=hub_down / "oc-cache")
    assert time.perf_counter() - t < 8  # before: 2 files x 5 retries (1+2+4+8+8 s), about a minute
    msg = str(info.value)
    assert msg.startswith("Pretrained weights for model 'ViT-B-32' (pretrained='openai')")
    assert "cannot be reached" in msg
    assert "pretrained='/path/to/open_clip_pytorch_model.bin'" in msg and "pretrained='none'" in msg
    assert "--pretrained" not in msg  # Python syntax for Python callers


def test_cli_fails_within_seconds_with_the_message_first_in_cli_syntax(hub_down, capsys):
    from embeddings.video.samples import make_sample_catalog

    make_sample_catalog(hub_down / "clips", n_clips=1, size=(32, 32), n_frames=4, fps=4)
    t = time.perf_counter()
    rc = main(["embed", str(hub_down / "clips"), "--out", str(hub_down / "emb"), "-q"])
    assert rc == 1 and time.perf_counter() - t < 8
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("recsys embed: Pretrained weights for model 'ViT-B-32'"), err
    assert "--pretrained /path/to/open_clip_pytorch_model.bin" in err[0] and "--pretrained none" in err[0]
    assert "load_encoder(" not in err[0] and not any("Retry" in line for line in err)
    assert len(err) <= 2, err
