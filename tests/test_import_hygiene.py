"""Start-up imports: what a process imports before it serves is what it needs, not more.

Each check runs in a fresh interpreter (an import is only seen once per process) and
asserts which heavy packages are absent from `sys.modules` afterwards. They guard the
cold-start cuts measured by bench/bench_cold_start.py: seconds of start-up each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "librosa", "numba", "mir_eval", "scipy.stats", "pretty_midi", "resampy",
         "diffusers", "transformers", "huggingface_hub", "music21", "demucs", "tensorflow")


def loaded_after(code: str) -> set[str]:
    """The HEAVY modules present after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


ENTRY_MODULES = ("launcher.cli", "gateway.grpc_api", "launcher.embedded", "separator_svc.server",
                 "transcriber_svc.server", "video_svc.server", "tabagent.client")


def test_entry_modules_import_no_model_stack() -> None:
    # The CLI's parser, the gateway's gRPC side and every service's server module come up
    # without torch or any model library: those load in the services' warm-up, when needed.
    # (All in one interpreter: none of them may bring any, so the union must be empty.)
    assert loaded_after("\n".join(f"import {m}" for m in ENTRY_MODULES)) == set()


def test_transcriber_warm_up_needs_no_librosa_or_scipy_stats() -> None:
    # Basic Pitch's whole note path (the warm-up runs it all) uses the ONNX model and numpy;
    # basic_pitch.note_creation would bring mir_eval, scipy.stats, librosa and numba.
    code = ("from transcriber_svc.holder import warm_up\n"
            "from transcriber_svc.model import BasicPitchModel\n"
            "warm_up(BasicPitchModel(threads=1, device='cpu'))")
    assert loaded_after(code) == set()


def test_video_without_diffusion_weights_imports_no_hub(tmp_path: Path) -> None:
    # Without cached weights the renderer says so without importing huggingface_hub
    # (nor diffusers or torch), and still renders its warm-up clip.
    code = ("from video_svc.config import VideoConfig\n"
            "from video_svc.holder import ModelHolder\n"
            f"holder = ModelHolder(VideoConfig(hub_cache={str(tmp_path / 'hub')!r}))\n"
            "holder.load()\n"
            "holder.warm_clip()\n"
            "assert holder.diffusion is None, holder.diffusion_message")
    assert loaded_after(code) == set()


def test_separator_without_weights_imports_no_torch(tmp_path: Path) -> None:
    # With no Demucs weights anywhere (and downloads off) the separator loads and warms
    # its DSP fallback without torch or demucs: they come in only with a bag to load.
    code = ("import asyncio\n"
            "from pathlib import Path\n"
            "from separator_svc.config import SeparatorConfig\n"
            "from separator_svc.fetch import FetchConfig\n"
            "from separator_svc.holder import ModelHolder\n"
            "from tabagent.metrics import ServiceMetrics\n"
            f"config = SeparatorConfig(hub_cache=Path({str(tmp_path / 'hub')!r}), "
            f"fetch=FetchConfig(cache_dir=Path({str(tmp_path / 'torch')!r}), offline=True))\n"
            "holder = ModelHolder.from_config(config)\n"
            "info = asyncio.run(holder.warm(ServiceMetrics('separator')))\n"
            "assert holder.models['auto'].info.fallback, info")
    assert loaded_after(code) == set()
