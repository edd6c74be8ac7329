"""A tiny random-weight Stable Diffusion img2img pipeline in the real diffusers format, built offline.

Tests, benchmarks and development machines without weights use it to exercise the
diffusion backend through the same loading code as sd-turbo: UNet, VAE, CLIP text
encoder and a CLIP BPE tokenizer (its vocabulary and merges written here), saved with
`save_pretrained`. The pictures it paints are noise; the plumbing is real.

    python -m video_svc.tiny_pipeline /tmp/tiny-sd
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_MERGES = ("t h", "th e</w>", "i n", "a n", "e r", "o n", "a r", "s t", "l i", "g h")
_WORDS = ("neon", "concert", "stage", "light", "guitar", "warm", "dark", "jazz", "abstract", "grid")


def _byte_chars() -> list[str]:
    """CLIP's byte-to-unicode table (printable stand-ins for the 256 byte values)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """Write a small CLIP vocab.json and merges.txt; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    for merge in _MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    for word in _WORDS:
        vocab.setdefault(word + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    return vocab_file, merges_file


def build_tiny_pipeline(path: str | Path, seed: int = 0) -> Path:
    """Build and save a tiny StableDiffusionImg2ImgPipeline (random weights, ~1 MB).

    The VAE downsamples 8x like Stable Diffusion's, so 64x64 images have 8x8 latents.

    Args:
        path: the folder to write (created).
        seed: seeds the random weights.

    Returns:
        The folder, loadable with AutoPipelineForImage2Image.from_pretrained.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab_file, merges_file = write_tokenizer_files(out / "_tokenizer_src")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=64,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)  # type: ignore[attr-defined]  # (from DiffusionPipeline)
    for f in (vocab_file, merges_file):
        f.unlink()
    (out / "_tokenizer_src").rmdir()
    log.info("wrote a tiny random-weight img2img pipeline to %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the tiny pipeline to the folder given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m video_svc.tiny_pipeline", description=__doc__)
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    build_tiny_pipeline(args.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
