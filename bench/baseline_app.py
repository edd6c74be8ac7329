"""The per-request baseline: what the older app did for every song, in a fresh process.

    .venv/bin/python bench/baseline_app.py SONG OUT_DIR [--model-dir DIR]

One request of the app this project replaced: a new process loads Basic Pitch (its ONNX
model, librosa, numba's JIT) and the fingering engine, runs the separator twice as a
subprocess (once for the guitar stem, once for the bass stem, each loading its model
again), transcribes both stems with Basic Pitch's whole-file `predict`, fingers the notes,
tracks the beats and writes a tab. With `--model-dir` the separator is demucs's own
command line (`python -m demucs.separate --repo DIR -n htdemucs --two-stems STEM`); without,
it is the shipped default, this project's DSP separator, in a fresh process per call
(`--separate-child`). It prints one JSON line of timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEMS = {"guitar": "other", "bass": "bass"}


def separate_child(song: Path, out: Path, stem: str) -> None:
    """A fresh process's DSP separation of the whole song into one stem WAV."""
    import numpy as np

    from bench.common import read_wav
    from evalkit import synth
    from separator_svc.model import load_model

    model = load_model("dsp", None, "cpu")
    model.warm_up()
    stream = model.open_stream([stem])
    mix = read_wav(song)
    head = stream.push(mix)[stem]
    rest = stream.finish()[stem]
    synth.write_wav(str(out), np.concatenate([head, rest]))


def separate(song: Path, stem: str, tmp: Path, model_dir: Path | None) -> Path:
    """Run the separator as a subprocess for one stem; returns the stem's WAV."""
    if model_dir is not None:
        cmd = [sys.executable, "-m", "demucs.separate", "--repo", str(model_dir), "-n", "htdemucs",
               "--two-stems", stem, "-d", "cpu", "-o", str(tmp), "--filename", "{stem}.{ext}", str(song)]
        _check(subprocess.run(cmd, capture_output=True, text=True))
        return tmp / "htdemucs" / f"{stem}.wav"
    out = tmp / f"{stem}.wav"
    _check(subprocess.run([sys.executable, __file__, "--separate-child", str(song), str(out), stem],
                          capture_output=True, text=True))
    return out


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"separator subprocess failed ({proc.returncode}): {proc.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("song", type=Path, nargs="?")
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--separate-child", nargs=3, metavar=("SONG", "OUT", "STEM"))
    args = parser.parse_args()
    if args.separate_child:
        song, out, stem = args.separate_child
        separate_child(Path(song), Path(out), stem)
        return 0
    if args.song is None or args.out is None:
        parser.error("SONG and OUT are required")

    t0 = time.perf_counter()
    from basic_pitch.inference import Model, predict

    from bench.common import read_wav
    from tabagent import fingering, tuning
    from tabagent.exporters.ascii_tab import write_ascii_tab
    from tabagent.notes import Note
    from tabagent.rhythm import BeatTracker
    from transcriber_svc.basicpitch import onnx_model_path

    model = Model(str(onnx_model_path()))
    timings = {"load": time.perf_counter() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="baseline-") as tmp:
        t = time.perf_counter()
        paths = {part: separate(args.song, stem, Path(tmp), args.model_dir) for part, stem in STEMS.items()}
        timings["separate"] = time.perf_counter() - t
        t = time.perf_counter()
        parts = {}
        for part, path in paths.items():
            _, _, events = predict(str(path), model)
            notes = [Note(int(e[2]), float(e[0]), float(e[1]), float(e[3])) for e in events]
            tune = tuning.standard("bass" if part == "bass" else "guitar")
            parts[part] = (tune, fingering.assign(notes, tune).notes)
        timings["transcribe"] = time.perf_counter() - t
    t = time.perf_counter()
    tracker = BeatTracker(44_100)
    tracker.push(read_wav(args.song).mean(axis=1))
    write_ascii_tab(parts, tracker.result(), args.out / "tab.txt")
    timings["tab"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    timings["notes"] = {p: len(n) for p, (_, n) in parts.items()}
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
