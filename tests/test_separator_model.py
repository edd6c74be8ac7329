"""load_model: Demucs bags from a local repo folder and from the hub cache, else a loud DSP fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from separator_fixtures import RATE, empty_dir, noise_song, reference, tiny_hub, tiny_repo

from separator_svc.config import SeparatorConfig, default_hub_cache
from separator_svc.dsp import DspModel
from separator_svc.model import DemucsModel, load_model, resolve_device
from separator_svc.tiny import build_tiny_bag, build_tiny_hub_cache
from tabagent.errors import BadConfig


def test_loads_a_local_repo_bag() -> None:
    model = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"))
    assert isinstance(model, DemucsModel)
    assert not model.info.fallback
    assert model.info.backend == "torch" and model.info.device == "cpu"
    assert model.info.version.startswith("demucs-4")
    assert "model dir" in model.info.message
    assert model.sources == ("drums", "bass", "other", "vocals")
    assert model.segment_seconds == pytest.approx(2.0)


def test_loads_from_the_hub_cache_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # No network here; loading must not even try (it would hang or fail otherwise).
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    model = load_model("htdemucs", None, "cpu", hub_cache=tiny_hub("htdemucs"))
    assert isinstance(model, DemucsModel)
    assert not model.info.fallback
    assert "hub cache" in model.info.message


def test_model_dir_wins_over_the_hub_cache() -> None:
    model = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=tiny_hub("htdemucs"))
    assert "model dir" in model.info.message


def test_both_layouts_hold_the_same_weights(tmp_path: Path) -> None:
    repo = build_tiny_bag(tmp_path / "repo", "htdemucs", seed=42)
    hub = build_tiny_hub_cache(tmp_path / "hub", "htdemucs", seed=42)
    a = load_model("htdemucs", repo, "cpu", hub_cache=tmp_path / "none")
    b = load_model("htdemucs", None, "cpu", hub_cache=hub)
    assert isinstance(a, DemucsModel) and isinstance(b, DemucsModel)
    state_a = a.bag.models[0].state_dict()
    state_b = b.bag.models[0].state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    mix = noise_song(RATE, seed=1)
    np.testing.assert_array_equal(reference(a, mix)["bass"], reference(b, mix)["bass"])


def test_hub_cache_ft_bag_keeps_its_weights(tmp_path: Path) -> None:
    hub = build_tiny_hub_cache(tmp_path / "hub", "htdemucs_ft")
    model = load_model("htdemucs_ft", None, "cpu", hub_cache=hub)
    assert isinstance(model, DemucsModel)
    assert len(model.runners) == 4
    assert model.weights[1] == [0.0, 1.0, 0.0, 0.0]


def test_fallback_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="separator_svc.model"):
        model = load_model("htdemucs_6s", empty_dir("repo"), "cpu", hub_cache=empty_dir("hub"))
    assert isinstance(model, DspModel)
    assert model.info.fallback
    assert model.info.backend == "dsp"
    assert "FALLBACK" in model.info.message and "htdemucs_6s" in model.info.message
    assert "hub cache" in model.info.message and "model dir" in model.info.message
    assert any(r.levelno == logging.WARNING and "FALLBACK" in r.getMessage() for r in caplog.records)
    assert "guitar" in model.sources


def test_corrupt_weights_fall_back_with_the_reason(tmp_path: Path) -> None:
    repo = build_tiny_bag(tmp_path / "repo", "htdemucs")
    package = next(repo.glob("*.th"))
    package.write_bytes(package.read_bytes()[:-100] + b"\0" * 100)
    model = load_model("htdemucs", repo, "cpu", hub_cache=tmp_path / "none")
    assert model.info.fallback
    assert "checksum" in model.info.message.lower()


def test_dsp_by_name_is_not_a_fallback() -> None:
    model = load_model("dsp", None, "cpu")
    assert isinstance(model, DspModel)
    assert not model.info.fallback


def test_device_auto_and_unavailable_cuda() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadConfig):
            resolve_device("cuda")


def test_unknown_stem_is_a_readable_error() -> None:
    model = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"))
    with pytest.raises(BadConfig, match="unknown stem.*'banjo'.*drums, bass"):
        model.stems_for(["banjo"])


def test_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEPARATOR_MODELS", "htdemucs_6s, htdemucs")
    monkeypatch.setenv("DEMUCS_MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("SEPARATOR_MAX_STREAMS", "3")
    config = SeparatorConfig.from_env()
    assert config.models == ("htdemucs_6s", "htdemucs")
    assert config.default_model == "htdemucs_6s"
    assert config.model_dir == tmp_path
    assert config.hub_cache == tmp_path / "hf" / "hub" == default_hub_cache()
    assert config.max_streams == 3
    assert SeparatorConfig.from_env(model_dir=Path("/x")).model_dir == Path("/x")
    monkeypatch.setenv("SEPARATOR_MAX_STREAMS", "many")
    with pytest.raises(SystemExit):
        SeparatorConfig.from_env()


def test_auto_prefers_the_six_stem_model(tmp_path: Path) -> None:
    """The default ("auto") takes htdemucs_6s (guitar and piano stems) when it is here, else htdemucs."""
    repo = build_tiny_bag(tmp_path / "repo", "htdemucs")
    model = load_model("", repo, "cpu", hub_cache=tmp_path / "none")
    assert isinstance(model, DemucsModel) and model.info.name == "htdemucs"
    build_tiny_bag(repo, "htdemucs_6s")
    model = load_model("auto", repo, "cpu", hub_cache=tmp_path / "none")
    assert isinstance(model, DemucsModel) and model.info.name == "htdemucs_6s"
    assert {"guitar", "piano"} <= set(model.sources) and not model.aliases
    # Named models stay selectable.
    for name in ("htdemucs", "htdemucs_6s"):
        assert load_model(name, repo, "cpu", hub_cache=tmp_path / "none").info.name == name


def test_auto_without_weights_falls_back_naming_what_it_looked_for(tmp_path: Path) -> None:
    model = load_model("auto", None, "cpu", hub_cache=tmp_path / "none")
    assert isinstance(model, DspModel) and model.info.fallback
    assert "htdemucs_6s" in model.info.message and "TABAGENT_OFFLINE=1" in model.info.message
    assert SeparatorConfig().default_model == "auto"


def test_store_serves_auto_under_its_real_name() -> None:
    import asyncio

    from separator_svc.holder import ModelHolder
    from tabagent.metrics import ServiceMetrics

    model = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"))
    holder = ModelHolder.of({"auto": model})
    asyncio.run(holder.warm(ServiceMetrics("separator")))
    assert holder.get("") is model and holder.get("auto") is model and holder.get("htdemucs") is model
    with pytest.raises(BadConfig):
        holder.get("htdemucs_ft")
    asyncio.run(holder.close())
