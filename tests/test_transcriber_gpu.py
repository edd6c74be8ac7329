"""The transcriber's execution provider: chosen from TRANSCRIBER_DEVICE and what onnxruntime offers, said in one log line.

Checked on the CPU: the choice itself for every setting, the real session on the CPU
build, and a session that asked for CUDA and got the CPU (what onnxruntime does when the
CUDA provider cannot start): `cuda` then fails with the reason, `auto` runs on the CPU and
says so. On a machine with CUDA (`-m gpu`) bench/gpu_transcriber_check.py runs for real.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tabagent.errors import ModelError
from transcriber_svc import model as model_mod
from transcriber_svc.model import CPU, CUDA, BasicPitchModel, choose_providers

ROOT = Path(__file__).resolve().parents[1]


def test_provider_choice_for_every_setting() -> None:
    cpu_only = [CPU]
    both = ["TensorrtExecutionProvider", CUDA, CPU]
    assert choose_providers("cpu", both).providers == [CPU]
    auto = choose_providers("auto", cpu_only)
    assert auto.providers == [CPU] and auto.device == "cpu" and "onnxruntime-gpu" in auto.reason
    gpu = choose_providers("auto", both)
    assert gpu.providers == [(CUDA, {"device_id": "0"}), CPU] and gpu.device == "cuda:0" and gpu.cuda
    second = choose_providers("cuda:1", both)
    assert second.providers[0] == (CUDA, {"device_id": "1"}) and second.device == "cuda:1"
    with pytest.raises(ModelError, match="install onnxruntime-gpu"):
        choose_providers("cuda", cpu_only)
    with pytest.raises(ModelError, match="cuda:<n>"):
        choose_providers("cuda:x", both)


def test_the_cpu_session_says_where_it_runs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="transcriber_svc.model"):
        model = BasicPitchModel(threads=1, device="auto")
    assert model.providers == [CPU] and model.info.device == "cpu"
    line = next(r.getMessage() for r in caplog.records if "runs on" in r.getMessage())
    assert "runs on cpu" in line and "CPUExecutionProvider" in line and "onnxruntime" in line
    with pytest.raises(ModelError, match="no CUDA provider"):
        BasicPitchModel(threads=1, device="cuda")


def test_a_cuda_session_that_falls_back_to_the_cpu_is_caught(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    # This build has no CUDA provider: asking for it anyway gives a real session on the CPU,
    # as onnxruntime-gpu does when the CUDA libraries do not load.
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "preload_dlls", lambda: None, raising=False)
    with pytest.raises(ModelError, match="could not start its CUDA provider"):
        BasicPitchModel(threads=1, device="cuda")
    with caplog.at_level(logging.WARNING, logger="transcriber_svc.model"):
        model = BasicPitchModel(threads=1, device="auto")
    assert model.info.device == "cpu" and model.providers == [CPU]
    assert any("running on the CPU" in r.getMessage() for r in caplog.records)
    assert model_mod.CUDA == "CUDAExecutionProvider"


@pytest.mark.gpu
def test_gpu_check_script_on_a_real_gpu(tmp_path: Path) -> None:
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (install onnxruntime-gpu on a GPU machine)")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_transcriber_check.py"), "--quick",
                          "--out", str(tmp_path / "gpu.json")], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
