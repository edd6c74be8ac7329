"""The separator's warm models: loaded and warmed once in a thread after the server starts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from separator_svc.base import SeparatorModel
from separator_svc.config import SeparatorConfig
from tabagent.errors import BadConfig, NotReady
from tabagent.metrics import ServiceMetrics
from tabagent.v1 import audio_pb2

log = logging.getLogger(__name__)


class ModelHolder:
    """The models a separator serves (tabagent.serving.WarmModel).

    Args:
        load: returns name -> model; runs in a thread (it may take minutes).
        default: the name used when a stream's config names no model.
    """

    def __init__(self, load: Callable[[], Mapping[str, SeparatorModel]], default: str) -> None:
        self._load = load
        self.default = default
        self.models: dict[str, SeparatorModel] = {}

    @classmethod
    def from_config(cls, config: SeparatorConfig, progress: Callable[[str, int, int], None] | None = None
                    ) -> ModelHolder:
        """A holder that loads `config.models` (plus "dsp") with separator_svc.model.load_model.

        Args:
            config: settings.
            progress: download progress callback (default: log lines).
        """

        def load() -> dict[str, SeparatorModel]:
            from separator_svc.model import load_model

            return {
                name: load_model(
                    name,
                    config.model_dir,
                    config.device,
                    config.hub_cache,
                    max_batch=config.max_batch,
                    max_wait=config.batch_wait,
                    accel=config.accel,
                    fetch=config.fetch,
                    progress=progress,
                )
                for name in (*config.models, "dsp")
            }

        return cls(load, config.default_model)

    @classmethod
    def of(cls, models: Mapping[str, SeparatorModel], default: str | None = None) -> ModelHolder:
        """A holder over already-loaded models (warm() still warms them)."""
        return cls(lambda: dict(models), default or next(iter(models)))

    def _load_and_warm(self) -> dict[str, SeparatorModel]:
        from separator_svc.dsp import DspModel

        models = dict(self._load())
        if "dsp" not in models:
            models["dsp"] = DspModel()
        warmed_dsp = ""
        for name, model in models.items():
            if isinstance(model, DspModel) and warmed_dsp:
                # The DSP fallback standing in for a missing Demucs and "dsp" itself run the
                # same numpy code: the first one's warm-up paid its first calls for both.
                log.info("%s shares the warm-up of %s (the same DSP separator)", name, warmed_dsp)
                continue
            if isinstance(model, DspModel):
                warmed_dsp = name
            started = time.perf_counter()
            model.warm_up()
            log.info(
                "warmed %s (%s on %s%s) in %.2f s", name, model.info.name, model.info.device,
                ", FALLBACK" if model.info.fallback else "", time.perf_counter() - started,
            )
        return models

    async def warm(self, metrics: ServiceMetrics) -> audio_pb2.ModelInfo:
        """Load and warm every model in a thread; batch sizes go to `metrics`.

        Returns:
            The info of the default model (what the metrics publish).
        """
        models = await asyncio.to_thread(self._load_and_warm)
        for model in models.values():
            for runner in getattr(model, "runners", []):
                runner.on_batch = metrics.observe_batch
        self.models = models
        default = models[self.default] if self.default in models else next(iter(models.values()))
        return default.info.to_proto()

    def get(self, name: str) -> SeparatorModel:
        """The model for a stream's config.

        Raises:
            NotReady: before warm() finished.
            BadConfig: for a model this server did not load.
        """
        if not self.models:
            raise NotReady("the separator is still loading its models; retry when SERVING")
        name = name or self.default
        if name not in self.models:
            # "auto" resolves to a real model: a stream may name that one too.
            for model in self.models.values():
                if model.info.name == name and not model.info.fallback:
                    return model
            raise BadConfig(
                f"model {name!r} is not loaded by this separator (loaded: "
                f"{', '.join(self.models)}); start it with SEPARATOR_MODELS={name}"
            )
        return self.models[name]

    async def close(self) -> None:
        """Release model threads."""
        for model in self.models.values():
            model.close()
