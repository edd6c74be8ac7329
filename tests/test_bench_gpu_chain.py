"""The GPU chain benchmark's CPU-runnable parts: its arguments and one tiny song through its in-process chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_gpu_chain as gpu  # noqa: E402


def test_arguments_and_dry_run_shrinking() -> None:
    args = gpu.parse_args(["--out", "x.json"])
    assert args.level_list == [1, 4, 8, 16] and args.song_seconds == 240.0
    assert args.phase_list == ["chain", "concurrency", "variants"] and args.variants == "all"
    dry = gpu.parse_args(["--dry-run", "--phases", "variants"])
    assert dry.device == "cpu" and dry.level_list == [1, 2] and dry.song_seconds <= 5.0
    assert dry.phase_list == ["variants"] and "bf16" in dry.variants
    assert set(gpu.SLOW_VARIANTS) <= set(gpu.VARIANTS) and "fp32-strict" in gpu.VARIANTS
    with pytest.raises(SystemExit):
        gpu.parse_args(["--chain", "nope"])


def test_in_process_chain_on_a_tiny_bag() -> None:
    bag = gpu.build_bag(dry_run=True)
    model = gpu.separator(bag, "cpu")
    bp, where = gpu.basic_pitch_model("cpu")
    assert where == "cpu"
    try:
        chain = gpu.InProcessChain(model, bp)
        assert chain.stems() == {"guitar": "guitar", "bass": "bass"}
        mix = gpu.song_audio(2.5)
        notes, wall, spent = chain.process(mix)
        assert set(notes) == {"guitar", "bass"} and wall > 0 and spent["separate"] > 0
        again, _, _ = chain.process(mix)
        assert gpu.note_keys(again) == gpu.note_keys(notes)  # the chain is deterministic
    finally:
        model.close()
    assert gpu.sdr(mix, mix) == float("inf") and 19 < gpu.sdr(mix, mix * 1.1) < 21


@pytest.mark.slow
def test_dry_run_writes_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "dry.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu_chain.py"), "--dry-run",
                           "--chain", "inprocess", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == {} and result["chain"]["x_real_time"] > 0
    assert set(result["concurrency"]["levels"]) == {"1", "2"}
    variants = result["variants"]
    assert variants["fp32-strict"]["identical_notes"] and variants["default"]["sdr_db"]["bass"] > 40
    assert np.isfinite(variants["bf16"]["sdr_db"]["guitar"])
