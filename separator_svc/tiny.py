"""Tiny random-weight HTDemucs bags in demucs's real on-disk formats, for tests and local runs.

Two layouts, both read by `separator_svc.model.load_model` through demucs's loaders:

* a local repo folder (`build_tiny_bag`): `<sig>-<sha256[:8]>.th` packages written with
  `demucs.states.save_with_checksum` ({klass, args, kwargs, state}) and `<name>.yaml`
  listing the signatures (and the weights, for htdemucs_ft);
* a Hugging Face hub cache (`build_tiny_hub_cache`): `models--adefossez--HTDemucs[-6s|-ft]`
  with `refs/main`, `blobs/` and `snapshots/<commit>/` links, holding `<name>.yaml` and one
  `<sig>.safetensors` per model whose metadata carries `klass`, `args` and `kwargs` as JSON
  (fractions encoded as demucs.hf decodes them).

`python -m separator_svc.tiny DEST [--hub] [--name htdemucs_6s] [--full]` writes one from
the shell; `--full` builds the released htdemucs's architecture and segment (random
weights, real size and speed) instead of the tiny one, for benchmarks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

SOURCES_4 = ("drums", "bass", "other", "vocals")
SOURCES_6 = ("drums", "bass", "other", "vocals", "guitar", "piano")
HUB_NAMESPACE = "adefossez"

# Small enough that a 2 s segment runs in ~0.1 s on one CPU core; depth 3 keeps the
# transformer's sequence short (depth 2 is slower: the bottleneck stays long).
TINY_KWARGS: dict[str, Any] = {
    "channels": 4,
    "depth": 3,
    "t_layers": 1,
    "t_heads": 2,
    "dconv_comp": 2,
}


# The released htdemucs (955717e8): HTDemucs's constructor defaults (48 channels, depth 4,
# 5 cross-transformer layers of 8 heads, nfft 4096) with the settings of demucs's mmi grid
# for the released models (dconv_mode 3, a 512-channel bottleneck) and its 7.8 s segment.
FULL_KWARGS: dict[str, Any] = {"dconv_mode": 3, "bottom_channels": 512}
FULL_SEGMENT = Fraction(39, 5)


def default_sources(name: str) -> tuple[str, ...]:
    """The sources a real model of that name produces."""
    return SOURCES_6 if name.endswith("_6s") else SOURCES_4


def _models_in_bag(name: str) -> int:
    return 4 if name.endswith("_ft") else 1


def tiny_models(
    name: str = "htdemucs",
    sources: Sequence[str] | None = None,
    segment: float = 2.0,
    seed: int = 0,
    kwargs: dict[str, Any] | None = None,
) -> tuple[list[Any], list[str], list[list[float]] | None]:
    """Build the random-weight models of a bag.

    Args:
        name: bag name; "*_ft" makes four one-hot weighted specialists like htdemucs_ft.
        sources: source names (default: those of the real model of that name).
        segment: model segment in seconds (a Fraction is stored, as demucs does).
        seed: torch seed for the random weights.
        kwargs: HTDemucs architecture arguments (default TINY_KWARGS; FULL_KWARGS for
            the released model's size).

    Returns:
        (models, signatures, weights or None).
    """
    from demucs.htdemucs import HTDemucs

    sources = list(sources or default_sources(name))
    count = _models_in_bag(name)
    torch.manual_seed(seed)
    models = []
    for _ in range(count):
        model = HTDemucs(sources, segment=Fraction(segment).limit_denominator(1000),
                         **(TINY_KWARGS if kwargs is None else kwargs))
        models.append(model.eval())
    sigs = [hashlib.sha1(f"{name}-{seed}-{i}".encode()).hexdigest()[:8] for i in range(count)]
    weights = None
    if count > 1:
        weights = [[1.0 if j == i % len(sources) else 0.0 for j in range(len(sources))] for i in range(count)]
    return models, sigs, weights


def _package(model: Any) -> dict[str, Any]:
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    return {"klass": model.__class__, "args": args, "kwargs": kwargs, "state": get_state(model, None)}


def _bag_yaml(sigs: Sequence[str], weights: list[list[float]] | None) -> str:
    lines = [f"models: [{', '.join(repr(s) for s in sigs)}]"]
    if weights is not None:
        lines.append("weights: [")
        lines += [f"  [{', '.join(f'{w:.1f}' for w in row)}]," for row in weights]
        lines.append("]")
    return "\n".join(lines) + "\n"


def build_tiny_bag(
    dest: Path,
    name: str = "htdemucs",
    sources: Sequence[str] | None = None,
    segment: float = 2.0,
    seed: int = 0,
    kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny bag into a demucs local repo folder (created if needed).

    Args:
        dest: the repo folder (what DEMUCS_MODEL_DIR / --model-dir points at).
        name: bag name, e.g. "htdemucs", "htdemucs_6s", "htdemucs_ft".
        sources: source names (default: the real model's).
        segment: segment seconds.
        seed: random-weight seed.
        kwargs: HTDemucs architecture arguments (see `tiny_models`).

    Returns:
        `dest`.
    """
    from demucs.states import save_with_checksum

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    models, sigs, weights = tiny_models(name, sources, segment, seed, kwargs)
    for model, sig in zip(models, sigs, strict=True):
        save_with_checksum(_package(model), dest / f"{sig}.th")
    (dest / f"{name}.yaml").write_text(_bag_yaml(sigs, weights))
    return dest


def _encode_json(value: Any) -> Any:
    """Inverse of demucs.hf._decode_json (fractions become tagged dicts)."""
    if isinstance(value, Fraction):
        return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    if isinstance(value, dict):
        return {key: _encode_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_json(item) for item in value]
    return value


def hub_repo_id(name: str) -> str:
    """The hub repository demucs.hf looks a model name up in."""
    from demucs.hf import hf_repo_name

    return f"{HUB_NAMESPACE}/{hf_repo_name(name)}"


def build_tiny_hub_cache(
    cache_dir: Path,
    name: str = "htdemucs",
    sources: Sequence[str] | None = None,
    segment: float = 2.0,
    seed: int = 0,
    kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny bag into a Hugging Face hub cache as if downloaded from the hub.

    Args:
        cache_dir: the hub cache root (what HF_HUB_CACHE points at).
        name: bag name, e.g. "htdemucs".
        sources: source names (default: the real model's).
        segment: segment seconds.
        seed: random-weight seed.
        kwargs: HTDemucs architecture arguments (see `tiny_models`).

    Returns:
        `cache_dir`.
    """
    from safetensors.torch import save_file

    cache_dir = Path(cache_dir)
    models, sigs, weights = tiny_models(name, sources, segment, seed, kwargs)
    repo = cache_dir / ("models--" + hub_repo_id(name).replace("/", "--"))
    commit = hashlib.sha1(f"tiny-{name}-{seed}".encode()).hexdigest()
    blobs, snapshot = repo / "blobs", repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)

    def put(filename: str, data: bytes) -> None:
        etag = hashlib.sha256(data).hexdigest()
        (blobs / etag).write_bytes(data)
        link = snapshot / filename
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(os.path.relpath(blobs / etag, snapshot))
        except OSError:  # no symlinks (e.g. Windows without developer mode): copy, as hf does
            link.write_bytes(data)

    put(f"{name}.yaml", _bag_yaml(sigs, weights).encode())
    for model, sig in zip(models, sigs, strict=True):
        args, kwargs = model._init_args_kwargs
        klass = f"{model.__class__.__module__}.{model.__class__.__qualname__}"
        metadata = {
            "klass": klass,
            "args": json.dumps(_encode_json(list(args))),
            "kwargs": json.dumps(_encode_json(kwargs)),
        }
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        tmp = snapshot / f".{sig}.tmp"
        save_file(state, str(tmp), metadata=metadata)
        data = tmp.read_bytes()
        tmp.unlink()
        put(f"{sig}.safetensors", data)
    return cache_dir


def main(argv: list[str] | None = None) -> int:
    """Command line: write a tiny bag for local development."""
    parser = argparse.ArgumentParser(prog="python -m separator_svc.tiny", description=__doc__)
    parser.add_argument("dest", type=Path, help="repo folder, or hub cache root with --hub")
    parser.add_argument("--name", default="htdemucs")
    parser.add_argument("--segment", type=float, default=None,
                        help="segment seconds (default 2, or 7.8 with --full)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hub", action="store_true", help="write a hub cache layout")
    parser.add_argument("--full", action="store_true",
                        help="the released htdemucs's architecture and segment (random weights)")
    args = parser.parse_args(argv)
    build = build_tiny_hub_cache if args.hub else build_tiny_bag
    segment = args.segment if args.segment is not None else (float(FULL_SEGMENT) if args.full else 2.0)
    kwargs = FULL_KWARGS if args.full else None
    path = build(args.dest, args.name, segment=segment, seed=args.seed, kwargs=kwargs)
    size = "full-size" if args.full else "tiny"
    parser.exit(0, f"wrote a {size} random-weight {args.name} bag to {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
