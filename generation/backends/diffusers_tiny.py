"""Toy-sized diffusers text-to-video pipelines with random weights, built in code (no downloads).

The SAME pipeline and model classes as the real checkpoints (``WanPipeline``, ``LTXPipeline``,
``CogVideoXPipeline`` with their transformer, VAE, scheduler, T5 text encoder), shrunk to a few
thousand parameters, so tests, the quickstart and benchmarks exercise the real code path on a
CPU in seconds. Their output is noise-like: never use them for anything but plumbing.

Component sizes follow diffusers' own fast tests (``tests/pipelines/wan/test_wan.py``,
``tests/pipelines/ltx/test_ltx.py``, ``tests/pipelines/cogvideo/test_cogvideox.py``), except
that the T5 tokenizer is a word-level ``tokenizers`` model built here instead of
``hf-internal-testing/tiny-random-t5`` (a hub download), and the LTX VAE decoder is given the
same toy sizes as its encoder (newer diffusers size it separately).
"""

from __future__ import annotations

__all__ = ["TINY_KINDS", "tiny_pipeline"]

TINY_KINDS = ("wan", "ltx", "cogvideox")

_WORDS = ("a an the of in on and with dog cat bird red blue green yellow circle square triangle boat "
          "water car road man woman child ball moving right left up down fast slow night day sun").split()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def _text_encoder():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_ff=37, d_kv=8, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8))


def tiny_pipeline(kind: str = "wan", *, seed: int = 0):
    """Build a toy ``kind`` pipeline with seeded random weights, float32, on the CPU.

    Parameters
    ----------
    kind : {"wan", "ltx", "cogvideox"}
    seed : int
        Seed of the weight initialisation (the caller's torch RNG state is restored after).

    Returns
    -------
    diffusers.DiffusionPipeline
        ``WanPipeline`` (VAE: 8x spatial, 4x temporal; sizes multiple of 16, frames 4k+1),
        ``LTXPipeline`` (4x spatial, 4x temporal; sizes multiple of 32, frames 4k+1) or
        ``CogVideoXPipeline`` (8x spatial, 4x temporal; sizes multiple of 8, frames 4k+1 for
        the same count back), text encoder width 32, max_sequence_length <= 16 recommended.

    Raises
    ------
    ValueError
        Unknown ``kind``.
    ImportError
        diffusers / transformers / tokenizers are not installed (``pip install '.[generation]'``).
    """
    if kind not in TINY_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {TINY_KINDS}")
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _build(kind)
    for comp in pipe.components.values():  # built in train mode: dropout would make runs differ
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    return pipe


def _build(kind: str):
    """The components of :func:`tiny_pipeline` (caller seeds the RNG)."""
    text_encoder, tokenizer = _text_encoder(), _tokenizer()
    if kind == "wan":
        from diffusers import (
            AutoencoderKLWan,
            FlowMatchEulerDiscreteScheduler,
            WanPipeline,
            WanTransformer3DModel,
        )

        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
            out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
        return WanPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder,
                           tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    if kind == "ltx":
        from diffusers import (
            AutoencoderKLLTXVideo,
            FlowMatchEulerDiscreteScheduler,
            LTXPipeline,
            LTXVideoTransformer3DModel,
        )

        transformer = LTXVideoTransformer3DModel(
            in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
            attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=32)
        vae = AutoencoderKLLTXVideo(
            latent_channels=8, block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
            patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
        vae.use_framewise_encoding = False
        vae.use_framewise_decoding = False
        return LTXPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder,
                           tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler())
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
        DDIMScheduler,
    )

    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    return CogVideoXPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder,
                             tokenizer=tokenizer, scheduler=DDIMScheduler())
