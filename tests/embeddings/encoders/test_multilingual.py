"""Multilingual open_clip models (a Hugging Face XLM-RoBERTa text tower) on Chinese captions, offline.

The text tower folder is built in the test: a tiny random XLMRobertaConfig and a Unigram tokenizer
trained here on Chinese and English captions (huggingface ``tokenizers``), saved with
``save_pretrained`` exactly where ``hf download xlm-roberta-base --local-dir DIR`` would put the
real files. The architecture is a tiny CLIP registered here whose config names the hub model
``xlm-roberta-base``, like open_clip's ``xlm-roberta-base-ViT-B-32``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from embeddings.encoders.open_clip import (  # noqa: E402
    TINY_MODEL,
    PretrainedWeightsUnavailable,
    load_encoder,
)
from embeddings.encoders.text_towers import trim_padding  # noqa: E402

ARCH = "tiny-clip-xlmr-test"  # text_cfg names the hub model, as open_clip's multilingual configs do
KUAIREC = Path(__file__).resolve().parents[4] / "shared" / "data" / "kuairec" / "kuairec_caption_category.csv"

CAPTIONS_ZH = [
    "一个人在餐厅里掰手腕", "两只小猫在沙发上睡觉", "晚饭后，运动一下！", "今天的天空特别蓝",
    "精神小伙路难走 程哥你狗粮慢点撒", "教你做一道简单的家常菜", "海边的日落太美了", "周末和朋友去爬山",
    "宝宝第一次学走路", "城市夜景航拍", "雨天在咖啡馆看书", "我平淡无奇，惊艳不了时光",
    "篮球场上的精彩扣篮", "小狗在雪地里奔跑", "老街里的传统小吃", "春天的樱花开了",
    "一起来跳舞吧", "手工制作陶瓷杯", "高铁窗外的风景", "深夜食堂的一碗面",
]
CAPTIONS_EN = ["a dog barking at the door", "two people arm wrestling at a table",
               "a red circle moving right on a dark background", "sunset over the sea"]
# characters the tokenizer never saw while training: emoji, Arabic, Devanagari, a rare CJK ideograph
UNSEEN = "🦄🚀 مرحبا नमस्ते 𠀀"


# ---------------------------------------------------------------------------- fixtures


def make_text_tower(folder: Path, corpus: list[str], *, pad_token_id: int = 1, vocab_size: int | None = None,
                    hidden: int = 32, weights: bool = False) -> Path:
    """Write a tiny XLM-RoBERTa text tower (config.json + tokenizer) trained on ``corpus``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0..3
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=4000, special_tokens=specials,
                                                            unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    config = XLMRobertaConfig(vocab_size=vocab_size or tok.get_vocab_size(), hidden_size=hidden,
                              num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden,
                              max_position_embeddings=96, pad_token_id=pad_token_id, bos_token_id=0,
                              eos_token_id=2)
    config.save_pretrained(folder)
    if weights:  # a tower checkpoint in the folder, which load_encoder must never read
        torch.manual_seed(123)
        XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def register_arch(name: str, folder: Path, hf_name: str) -> None:
    """Register a tiny CLIP with an XLM-R text tower under ``name`` (hub name or local folder)."""
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"hf_model_name": hf_name, "hf_tokenizer_name": hf_name,
                        "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear"}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    open_clip.add_model_config(path)


def corpus() -> list[str]:
    lines = CAPTIONS_ZH + CAPTIONS_EN
    return [a + "，" + b for a in lines for b in lines[:8]] + lines  # a few hundred lines


@pytest.fixture(scope="module")
def tower(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mling")
    folder = make_text_tower(root / "xlmr-tiny", corpus(), weights=True)
    register_arch(ARCH, root, "xlm-roberta-base")
    return folder


@pytest.fixture(scope="module")
def reference(tower, tmp_path_factory):
    """open_clip alone, no project code: a config naming the folder directly, its own tokenizer.

    Returns the model (eval), open_clip's tokenizer and a checkpoint file of the model's weights.
    """
    root = tmp_path_factory.mktemp("ref")
    register_arch(ARCH + "-local", root, str(tower))
    torch.manual_seed(7)
    model, _, _ = open_clip.create_model_and_transforms(ARCH + "-local", pretrained=None, pretrained_text=False)
    model.eval()
    ckpt = root / "open_clip_model.pt"
    torch.save(model.state_dict(), ckpt)
    return model, open_clip.get_tokenizer(ARCH + "-local"), ckpt


@pytest.fixture(scope="module")
def encoder(tower, reference):
    return load_encoder(ARCH, reference[2], device="cpu", text_tower=tower)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and an empty Hugging Face cache, so the hub names cannot be resolved."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _open_clip_text(model, tokenizer, texts):
    with torch.no_grad():
        return model.encode_text(tokenizer(texts), normalize=True).numpy()


# ---------------------------------------------------------------------------- (1) parity


def test_chinese_text_parity_with_open_clip(encoder, reference):
    model, tokenizer, _ = reference
    texts = CAPTIONS_ZH[:6] + CAPTIONS_EN[:2]
    assert torch.equal(encoder.tokenizer(texts), tokenizer(texts))  # same ids, padded to 77
    expected = _open_clip_text(model, tokenizer, texts)
    got = encoder.encode_text(texts)
    assert got.dtype == np.float32 and got.shape == (8, 16)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_text(texts, batch_size=3), expected, rtol=0, atol=1e-5)


def test_padding_columns_are_dropped_only_where_padding(encoder, reference):
    """The HF fast path runs the longest caption's length, not 77; CLIP's EOT path is not used."""
    model, tokenizer, _ = reference
    texts = ["一个人在餐厅里掰手腕", "海边的日落太美了，周末和朋友去爬山，宝宝第一次学走路"]
    tokens = encoder.tokenizer(texts)
    longest = int((tokens != 1).sum(dim=1).max())  # XLM-R pads with id 1
    assert tokens.shape == (2, 77) and longest < 40
    assert trim_padding(encoder.model, tokens).shape == (2, longest)
    assert trim_padding(model, tokens).shape == (2, longest)
    seen = []
    hook = encoder.model.text.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    try:
        got = encoder.encode_text(texts)
    finally:
        hook.remove()
    assert seen == [(2, longest)]
    np.testing.assert_allclose(got, _open_clip_text(model, tokenizer, texts), rtol=0, atol=1e-5)
    # a batch whose rows all fill the context is left whole
    full = torch.full((2, 77), 5, dtype=torch.long)
    assert trim_padding(encoder.model, full).shape == (2, 77)
    # open_clip's own text transformer is not an HF tower: untouched
    tiny = load_encoder(TINY_MODEL, "none", device="cpu")
    toks = tiny.tokenizer(["a dog"])
    assert trim_padding(tiny.model, toks) is toks


def test_long_caption_is_truncated_to_the_context(encoder, reference):
    model, tokenizer, _ = reference
    long = "，".join(CAPTIONS_ZH * 3)
    assert encoder.tokenizer([long]).shape == (1, 77)
    got = encoder.encode_text([long, "小狗在雪地里奔跑"])
    np.testing.assert_allclose(got, _open_clip_text(model, tokenizer, [long, "小狗在雪地里奔跑"]),
                               rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------- (2) behaviour


def test_embeddings_are_unit_norm_distinct_and_survive_unknown_characters(encoder):
    texts = CAPTIONS_ZH + [UNSEEN, "🦄", "一个人在餐厅里掰手腕 🦄"]
    out = encoder.encode_text(texts)
    assert out.shape == (len(texts), 16) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    unk = encoder.tokenizer.tokenizer.unk_token_id
    assert (encoder.tokenizer([UNSEEN]) == unk).any()  # really unknown to this tokenizer
    sims = out @ out.T
    off = sims[~np.eye(len(texts), dtype=bool)]
    assert off.max() < 1 - 1e-4, "two different captions got the same vector"
    # the same caption gives the same vector whatever else is in the batch
    np.testing.assert_allclose(encoder.encode_text([CAPTIONS_ZH[3]])[0], out[3], rtol=0, atol=1e-5)


def test_images_still_encode_with_the_vision_tower(encoder):
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 40, 48, 3), dtype=np.uint8)
    out = encoder.encode_images(frames)
    assert out.shape == (3, 16) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_seeded_random_weights_never_read_the_folders_tower_weights(tower):
    from safetensors.torch import load_file

    a = load_encoder(ARCH, "none", device="cpu", seed=0, text_tower=tower)
    b = load_encoder(ARCH, "none", device="cpu", seed=0, text_tower=str(tower))
    c = load_encoder(ARCH, "none", device="cpu", seed=1, text_tower=tower)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["text.transformer.embeddings.word_embeddings.weight"],
                           sc["text.transformer.embeddings.word_embeddings.weight"])
    saved = load_file(str(tower / "model.safetensors"))
    key = next(k for k in saved if k.endswith("embeddings.word_embeddings.weight"))
    assert not torch.equal(saved[key], sa["text.transformer.embeddings.word_embeddings.weight"])
    d = a.describe()
    assert d["random_weights"] and d["text_tower"] == str(tower.resolve())
    # the description is enough to rebuild the same encoder (what an index manifest records)
    again = load_encoder(d["model"], d["pretrained"], device="cpu", seed=d["seed"], text_tower=d["text_tower"])
    np.testing.assert_array_equal(again.encode_text(CAPTIONS_ZH[:3]), a.encode_text(CAPTIONS_ZH[:3]))
    assert "text_tower" not in load_encoder(TINY_MODEL, "none", device="cpu").describe()


# ---------------------------------------------------------------------------- (3) catalog path


def test_catalog_with_chinese_captions_end_to_end(encoder, tmp_path):
    from embeddings.job import run_embedding_job
    from embeddings.retrieval_eval import text_to_video_ranks
    from embeddings.store import EmbeddingFolder
    from embeddings.video.catalog import discover_inputs
    from embeddings.video.samples import render_clip

    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for i, caption in enumerate(CAPTIONS_ZH[:4]):
        path = render_clip(clips / f"视频_{i}.mp4", n_frames=6, size=(32, 32), fps=6, seed=i)
        rows.append({"video_id": f"v{i}", "path": Path(path).name, "caption": caption})
    pd.DataFrame(rows).to_csv(clips / "captions.csv", index=False, encoding="utf-8")

    inputs = discover_inputs(clips, clips / "captions.csv")
    assert dict(zip(inputs["video_id"], inputs["caption"], strict=True)) == {r["video_id"]: r["caption"] for r in rows}
    summary = run_embedding_job(inputs, encoder, tmp_path / "emb", n_frames=3, shard_size=2, batch_size=4,
                                num_workers=1, progress=False)
    assert summary.n_embedded == 4 and summary.n_failed == 0

    folder = EmbeddingFolder.open(tmp_path / "emb")
    assert folder.encoder["text_tower"] == encoder.text_tower  # enough to rebuild the text encoder
    meta, videos = folder.load_videos()
    assert meta["caption"].tolist() == [r["caption"] for r in rows]  # UTF-8 kept through CSV and Parquet
    text = encoder.encode_text(meta["caption"].tolist())
    np.testing.assert_allclose(text, encoder.encode_text([r["caption"] for r in rows]), rtol=0, atol=1e-6)
    ranks = text_to_video_ranks(text @ videos.T, np.arange(4))
    assert ranks.shape == (4,) and ((ranks >= 1) & (ranks <= 4)).all()


# ---------------------------------------------------------------------------- (4) errors


def test_offline_without_a_text_tower_names_it_and_the_fix(tower, offline):
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        load_encoder(ARCH, "none", device="cpu")
    msg = str(info.value)
    assert "'xlm-roberta-base'" in msg and "text_tower" in msg and "hf download" in msg
    assert info.value.source == "https://huggingface.co/xlm-roberta-base"


def test_text_tower_arguments_are_checked(tower, tmp_path):
    with pytest.raises(ValueError, match="open_clip's own text transformer"):
        load_encoder(TINY_MODEL, "none", device="cpu", text_tower=tower)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_encoder(ARCH, "none", device="cpu", text_tower=tmp_path / "missing")
    with pytest.raises(ValueError, match="must be a folder path"):
        load_encoder(ARCH, "none", device="cpu", text_tower=3)
    with pytest.raises(ValueError, match="has no config.json"):
        load_encoder(ARCH, "none", device="cpu", text_tower=tmp_path)
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    shutil.copy(tower / "config.json", no_tok / "config.json")
    with pytest.raises(ValueError, match="has no tokenizer vocabulary"):
        load_encoder(ARCH, "none", device="cpu", text_tower=no_tok)
    broken = tmp_path / "broken_tokenizer"
    shutil.copytree(tower, broken)
    (broken / "tokenizer.json").write_text("not a tokenizer")
    with pytest.raises(ValueError, match="no tokenizer could be loaded"):
        load_encoder(ARCH, "none", device="cpu", text_tower=broken)
    wrong_type = tmp_path / "wrong_type"
    shutil.copytree(tower, wrong_type)
    cfg = json.loads((wrong_type / "config.json").read_text())
    (wrong_type / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        load_encoder(ARCH, "none", device="cpu", text_tower=wrong_type)


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(tmp_path):
    small = corpus()[:40]
    bad_pad = make_text_tower(tmp_path / "pad", small, pad_token_id=0)
    with pytest.raises(ValueError, match="pads with id 1 but the text model masks id 0"):
        load_encoder(ARCH, "none", device="cpu", text_tower=bad_pad)
    bad_vocab = make_text_tower(tmp_path / "vocab", small, vocab_size=50)
    with pytest.raises(ValueError, match="vocab_size=50"):
        load_encoder(ARCH, "none", device="cpu", text_tower=bad_vocab)


# ---------------------------------------------------------------------------- real captions


@pytest.mark.realdata
def test_kuairec_captions_parity_and_distinct(tmp_path):
    if not KUAIREC.is_file():
        pytest.skip(f"{KUAIREC} is absent")
    caps = pd.read_csv(KUAIREC, usecols=["caption"])["caption"].dropna().astype(str).str.strip()
    caps = caps[caps != ""].drop_duplicates().tolist()
    folder = make_text_tower(tmp_path / "kuairec-xlmr", caps[:400])
    name = ARCH + "-kuairec"
    register_arch(name, tmp_path, str(folder))
    torch.manual_seed(3)
    model, _, _ = open_clip.create_model_and_transforms(name, pretrained=None, pretrained_text=False)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    enc = load_encoder(ARCH, tmp_path / "w.pt", device="cpu", text_tower=folder)
    held_out = caps[400:656]  # captions the tokenizer was not trained on
    got = enc.encode_text(held_out, batch_size=64)
    expected = _open_clip_text(model, open_clip.get_tokenizer(name), held_out)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.isfinite(got).all()
    assert len({row.tobytes() for row in got.round(5)}) == len(held_out)


# ---------------------------------------------------------------------------- the real architecture


SCRIPT = textwrap.dedent("""
    from embeddings.encoders.open_clip import PretrainedWeightsUnavailable, load_encoder
    try:
        enc = load_encoder("xlm-roberta-base-ViT-B-32", "none", device="cpu")
    except PretrainedWeightsUnavailable as e:
        print("UNAVAILABLE", e)
    else:  # the tokenizer was in the HF cache: then Chinese captions must embed
        out = enc.encode_text(["一个人在餐厅里掰手腕", "a dog barking"])
        print("BUILT", out.shape)
""")


@pytest.mark.slow
def test_xlmr_model_builds_or_fails_with_a_clear_offline_error():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    if out.startswith("BUILT"):
        assert "(2, 512)" in out
    else:
        assert out.startswith("UNAVAILABLE")
        assert "'xlm-roberta-base'" in out and "text_tower" in out


def test_cli_embed_index_and_search_with_a_text_tower(tower, reference, tmp_path, capsys):
    """`recsys embed --text-tower` records the folder; `recsys search` rebuilds the same text
    encoder from the index manifest and answers a Chinese query."""
    from embeddings.video.samples import render_clip
    from recsys.cli import main

    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for i, caption in enumerate(CAPTIONS_ZH[:3]):
        render_clip(clips / f"c{i}.mp4", n_frames=4, size=(32, 32), fps=4, seed=i)
        rows.append({"video_id": f"c{i}", "path": f"c{i}.mp4", "caption": caption})
    pd.DataFrame(rows).to_csv(clips / "captions.csv", index=False, encoding="utf-8")
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    assert main(["embed", str(clips), "--out", str(emb), "--captions", str(clips / "captions.csv"),
                 "--model", ARCH, "--pretrained", str(reference[2]), "--text-tower", str(tower),
                 "--device", "cpu", "--frames", "2", "--quiet"]) == 0
    assert main(["index", "build", str(emb), "--out", str(idx)]) == 0
    capsys.readouterr()
    assert main(["search", str(idx), "--text", CAPTIONS_ZH[0], "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    text = json.dumps(hits)
    assert all(f"c{i}" in text for i in range(3))
