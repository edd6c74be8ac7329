"""Loading the separator: a Demucs bag from a model directory, the hub cache or Demucs's remote, else DSP.

Lookup order for a model name (e.g. "htdemucs_6s"):

1. an explicit model directory (`--model-dir` / DEMUCS_MODEL_DIR) holding demucs's local
   repo layout: `<sig>.th` or `<sig>-<sha256 prefix>.th` packages and `<name>.yaml` bag
   files, loaded with `demucs.pretrained.get_model(name, repo=model_dir)`;
2. the Hugging Face hub cache (HF_HUB_CACHE, else HF_HOME/hub, else
   ~/.cache/huggingface/hub) holding `adefossez/HTDemucs[-6s|-ft]` as demucs 4.1
   publishes it: `<name>.yaml` plus one `<sig>.safetensors` per model, read with
   demucs.hf's own loader. This is `demucs.hf.get_hf_model` with the cache folder
   passed explicitly and `local_files_only=True` (HF_HUB_OFFLINE=1 semantics: no
   network is ever attempted), since huggingface_hub reads HF_HUB_OFFLINE and
   HF_HUB_CACHE only once, at import;
3. torch hub's checkpoint folder, where `demucs.pretrained` (and `separator_svc.fetch`)
   keep the `<sig>-<sha>.th` packages downloaded from Demucs's remote;
4. a download from Demucs's remote (or the DEMUCS_REMOTE_URL mirror) into that folder,
   checksummed and atomic (`separator_svc.fetch`), unless TABAGENT_OFFLINE=1;
5. the DSP fallback (`separator_svc.dsp`), reported loudly: one WARNING line and
   ModelInfo.fallback=True with a message saying what was looked for and why each
   place failed (it reaches result.json).

"auto" (the default) prefers htdemucs_6s, the one Demucs model with guitar and piano
stems (so keys are separated away from the guitar part), then htdemucs, then
htdemucs_ft, among the weights already on this machine (steps 1-3), and downloads
htdemucs_6s when none is. "dsp" names the DSP separator on purpose (not a fallback).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from separator_svc.accel_settings import Acceleration
from separator_svc.base import SeparatorModel
from separator_svc.config import default_hub_cache
from separator_svc.fetch import (
    FetchConfig,
    FetchError,
    LogProgress,
    Progress,
    WeightCache,
    load_bag,
)
from tabagent.errors import BadConfig

if TYPE_CHECKING:
    from separator_svc.demucs_model import DemucsModel

log = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_MODEL = AUTO
# What "auto" picks among local weights, best first; it downloads the first.
PREFERRED_MODELS = ("htdemucs_6s", "htdemucs", "htdemucs_ft")
KNOWN_MODELS = (AUTO, *PREFERRED_MODELS, "dsp")


def __getattr__(name: str) -> Any:
    """`DemucsModel` from `separator_svc.demucs_model`, imported (with torch) when asked for."""
    if name == "DemucsModel":
        from separator_svc.demucs_model import DemucsModel

        return DemucsModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_device(device: str = "auto") -> str:
    """Map "auto" to "cuda" when a GPU is visible, else "cpu"; other values pass through."""
    if device == "cpu":
        return device
    import torch

    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadConfig(f"device {device!r} requested but no CUDA device is available")
    return device


def _tag_signatures(bag: Any, signatures: Sequence[str]) -> None:
    for model, sig in zip(bag.models, signatures, strict=False):
        model._sig = sig


def _load_from_dir(name: str, model_dir: Path) -> Any:
    """Load `name` from a demucs local repo folder with demucs's own loader."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} is not a directory")
    if not any(model_dir.glob("*.yaml")) and not any(model_dir.glob("*.th")):
        raise FileNotFoundError(f"no .yaml bag or .th package in {model_dir}")
    import yaml
    from demucs.apply import BagOfModels
    from demucs.pretrained import get_model
    from demucs.repo import AnyModelRepo, BagOnlyRepo, LocalRepo

    repo = AnyModelRepo(LocalRepo(model_dir), BagOnlyRepo(model_dir, LocalRepo(model_dir)))
    if not repo.has_model(name):
        raise FileNotFoundError(f"neither {name}.yaml nor a {name}.th package in {model_dir}")
    model = get_model(name, repo=model_dir)
    if not isinstance(model, BagOfModels):
        model._sig = name
        return BagOfModels([model])
    bag_file = model_dir / f"{name}.yaml"
    if bag_file.is_file():
        _tag_signatures(model, yaml.safe_load(bag_file.read_text())["models"])
    return model


def _load_from_hub(name: str, cache_dir: Path) -> Any:
    """demucs.hf.get_hf_model, offline, from an explicit hub cache folder."""
    if not any(cache_dir.glob("models--*emucs*")):  # adefossez/HTDemucs*, */Demucs-*
        raise FileNotFoundError(f"no Demucs repository in the hub cache {cache_dir}")
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name, load_safetensors_model
    from huggingface_hub import hf_hub_download

    namespace, short = (name.split("/", 1) if "/" in name else (DEFAULT_NAMESPACE, name))
    repo_id = f"{namespace}/{hf_repo_name(short)}"
    folder = cache_dir / ("models--" + repo_id.replace("/", "--"))
    if not folder.is_dir():
        raise FileNotFoundError(f"{repo_id} is not in the hub cache {cache_dir}")

    def fetch(filename: str) -> str:
        return hf_hub_download(repo_id, filename, cache_dir=str(cache_dir), local_files_only=True)

    with open(fetch(f"{short}.yaml")) as file:
        spec = yaml.safe_load(file)
    models = [load_safetensors_model(fetch(f"{sig}.safetensors")) for sig in spec["models"]]
    bag = BagOfModels(models, spec.get("weights"), spec.get("segment"))
    _tag_signatures(bag, spec["models"])
    return bag


def _load_cached(name: str, weights: WeightCache) -> Any:
    """A bag from torch hub's checkpoint folder, never downloading."""
    if not weights.is_local(name):
        raise FileNotFoundError(f"not in {weights.folder}")
    offline = WeightCache(replace(weights.config, offline=True), weights.catalog)
    return load_bag(offline.ensure(name))


def load_model(
    name: str,
    model_dir: Path | None,
    device: str = "auto",
    hub_cache: Path | None = None,
    max_batch: int = 1,
    max_wait: float = 0.01,
    accel: Acceleration | None = None,
    fetch: FetchConfig | None = None,
    progress: Progress | None = None,
) -> SeparatorModel:
    """Load a separator by name, downloading it when allowed, else falling back to DSP.

    Args:
        name: "auto" (default when empty: the best of htdemucs_6s, htdemucs, htdemucs_ft
            found locally, else htdemucs_6s downloaded), "htdemucs_6s", "htdemucs",
            "htdemucs_ft", any bag or signature in `model_dir` or Demucs's listing, or "dsp".
        model_dir: a demucs local repo folder, tried first; None to skip.
        device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
        hub_cache: the Hugging Face hub cache folder; None reads HF_HUB_CACHE/HF_HOME.
        max_batch: >1 batches segments of concurrent streams (see runner.py).
        max_wait: longest a segment waits for a batch, in seconds.
        accel: how the forward passes run (separator_svc.accel; default: lossless fast).
        fetch: the download settings (remote, cache, offline); None reads the environment.
        progress: download progress callback (default: a log line every few seconds).

    Returns:
        A ready-to-warm SeparatorModel; `info.fallback` tells whether DSP replaced it.

    Raises:
        BadConfig: for an unusable device.
    """
    from separator_svc.dsp import DspModel

    name = name or DEFAULT_MODEL
    if name == "dsp":
        return DspModel(name="dsp", fallback=False, message="DSP separator requested")
    if device.startswith("cuda"):
        device = resolve_device(device)  # an unusable GPU is refused before anything loads
    cache = hub_cache if hub_cache is not None else default_hub_cache()
    weights = WeightCache(fetch or FetchConfig.from_env())
    candidates = PREFERRED_MODELS if name == AUTO else (name,)
    tried: list[str] = []     # why a found file did not load, or the download did not
    missing: list[str] = []   # where the weights were looked for and not found
    for candidate in candidates:
        sources: list[tuple[str, Any]] = []
        if model_dir is not None:
            sources.append((f"model dir {model_dir}", lambda c=candidate: _load_from_dir(c, Path(model_dir))))
        sources.append((f"hub cache {cache}", lambda c=candidate: _load_from_hub(c, Path(cache))))
        sources.append((f"torch cache {weights.folder}", lambda c=candidate: _load_cached(c, weights)))
        for origin, load in sources:
            bag = _attempt(candidate, origin, load, tried, missing)
            if bag is not None:
                return _demucs(bag, candidate, origin, device, max_batch, max_wait, accel)
    target = candidates[0]
    origin = f"{weights.config.remote_url} (downloaded to {weights.folder})"
    if weights.config.offline:
        tried.append("download: off (TABAGENT_OFFLINE=1 / --offline)")
    else:
        bag = _attempt(target, origin, lambda: load_bag(weights.ensure(target, progress or LogProgress())), tried,
                       missing)
        if bag is not None:
            return _demucs(bag, target, origin, device, max_batch, max_wait, accel)
    wanted = f"{name!r} ({', '.join(candidates)})" if name == AUTO else repr(name)
    if missing:  # one mention per place, however many models were looked for there
        tried.insert(0, "not in " + ", ".join(dict.fromkeys(missing)))
    message = (
        f"FALLBACK: no Demucs weights for {wanted} ({'; '.join(tried)}); separating with "
        "the DSP fallback (median-filter HPSS and band splits), far below Demucs quality. "
        "Run `tabagent models pull` with network access, or put the weights in "
        "DEMUCS_MODEL_DIR or the Hugging Face hub cache."
    )
    log.warning("%s", message)
    return DspModel(name="dsp", fallback=True, message=message, requested=name)


def _demucs(bag: Any, name: str, origin: str, device: str, max_batch: int, max_wait: float,
            accel: Acceleration | None) -> DemucsModel:
    """The warm-model wrapper of a loaded bag (torch comes in here, not before)."""
    from separator_svc.demucs_model import DemucsModel

    device = resolve_device(device)
    log.info("loaded %s from %s on %s", name, origin, device)
    return DemucsModel(bag, name, origin, device, max_batch, max_wait, accel)


def _attempt(name: str, origin: str, load: Any, tried: list[str], missing: list[str]) -> Any:
    """Run one loader; None when it fails, with `origin` appended to `missing` (no file
    there) or the reason to `tried` (a file that did not load, a failed download)."""
    try:
        return load()
    except FileNotFoundError as exc:
        missing.append(origin)
        log.info("%s not found in %s: %s", name, origin, exc)
    except FetchError as exc:
        tried.append(f"download: {exc}")
        log.info("%s not downloaded: %s", name, exc)
    except SystemExit as exc:  # demucs calls sys.exit for a missing diffq, bad dirs
        tried.append(f"{origin}: demucs refused to load it ({exc})")
    except Exception as exc:  # corrupt or incompatible weights: say why, fall back
        tried.append(f"{origin}: {type(exc).__name__}: {exc}")
        log.warning("%s found in %s but not loadable", name, origin, exc_info=True)
    return None
