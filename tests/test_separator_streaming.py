"""Streaming Demucs separation equals demucs.apply.apply_model on the whole song."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch
from separator_fixtures import RATE, TINY_SEGMENT, empty_dir, noise_song, reference, tiny_repo

from separator_svc.accel import Acceleration
from separator_svc.model import DemucsModel, load_model
from separator_svc.streaming import overlap_weight, stride_for

SEGMENT = int(RATE * TINY_SEGMENT)


@pytest.fixture(scope="module")
def model() -> DemucsModel:
    loaded = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"))
    assert isinstance(loaded, DemucsModel)
    return loaded


def run_stream(model: DemucsModel, mix: np.ndarray, block: int, stems=(), overlap=0.25, **kw):
    stream = model.open_stream(list(stems), overlap=overlap, **kw)
    pieces, first_at = [], None
    for start in range(0, mix.shape[0], block):
        out = stream.push(mix[start : start + block])
        if first_at is None and next(iter(out.values())).shape[0]:
            first_at = start + block
        pieces.append(out)
        assert stream.buffered_frames <= SEGMENT + SEGMENT // 2 + block
    pieces.append(stream.finish())
    joined = {name: np.concatenate([p[name] for p in pieces]) for name in stream.stems}
    return joined, first_at, stream


@pytest.mark.parametrize(
    "frames",
    [
        5 * RATE + 1234,      # not a multiple of the stride: two short segments at the end
        SEGMENT // 2 + 17,    # shorter than one segment
        3 * stride_for(SEGMENT, 0.25),  # exact multiple of the stride
    ],
)
def test_streaming_equals_apply_model(model: DemucsModel, frames: int) -> None:
    mix = noise_song(frames, seed=frames)
    ref = reference(model, mix)
    for block in (997, RATE, 3 * RATE + 5):
        got, _, stream = run_stream(model, mix, block)
        for name in model.sources:
            assert got[name].shape == mix.shape, (name, block)
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=f"{name} block={block}")
        assert stream.segments == len(range(0, frames, stride_for(SEGMENT, 0.25)))


def test_other_overlap_and_requested_stems(model: DemucsModel) -> None:
    mix = noise_song(4 * RATE + 321, seed=3)
    ref = reference(model, mix, overlap=0.5)
    got, _, _ = run_stream(model, mix, 20_000, stems=("bass", "guitar"), overlap=0.5)
    assert set(got) == {"bass", "guitar"}
    np.testing.assert_allclose(got["bass"], ref["bass"], rtol=1e-5, atol=1e-6)
    # htdemucs has no guitar source: the alias serves "other".
    np.testing.assert_allclose(got["guitar"], ref["other"], rtol=1e-5, atol=1e-6)


def test_first_output_after_one_segment(model: DemucsModel) -> None:
    inline = DemucsModel(model.bag, "htdemucs", "test", "cpu", accel=Acceleration(workers=1))
    mix = noise_song(6 * RATE, seed=4)
    block = 4410
    _, first_at, _ = run_stream(inline, mix, block)
    assert first_at is not None
    assert SEGMENT <= first_at < SEGMENT + block


def test_pipelined_stream_hands_out_a_finished_segment_without_more_input(model: DemucsModel) -> None:
    piped = DemucsModel(model.bag, "htdemucs", "test", "cpu", accel=Acceleration(workers=2, threads=1))
    try:
        mix = noise_song(4 * RATE, seed=4)
        stream = piped.open_stream([])
        out = stream.push(mix[:SEGMENT])  # the first segment starts in a worker
        oldest = stream.oldest()
        if oldest is not None:
            assert next(iter(out.values())).shape[0] == 0
            oldest.result(timeout=60)
            out = stream.collect()  # what the server does once the segment is done
        assert next(iter(out.values())).shape[0] == stride_for(SEGMENT, 0.25)
        assert stream.oldest() is None and stream.collect()["drums"].shape[0] == 0
        # At most `workers` segments run at once, however much audio arrives.
        stream.push(mix[SEGMENT:])
        assert stream.in_flight <= 2
        rest = stream.finish()
        assert stream.in_flight == 0 and stream.frames_out == mix.shape[0]
        assert rest["drums"].shape[0] > 0
    finally:
        piped.close()


def test_ft_bag_weights_and_skipped_specialists() -> None:
    ft = load_model("htdemucs_ft", tiny_repo("htdemucs_ft"), "cpu", hub_cache=empty_dir("hub"))
    assert isinstance(ft, DemucsModel)
    assert len(ft.runners) == 4
    mix = noise_song(3 * RATE + 99, seed=5)
    ref = reference(ft, mix)
    got, _, _ = run_stream(ft, mix, RATE)
    for name in ft.sources:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6)
    calls = [r.calls for r in ft.runners]
    run_stream(ft, mix, RATE, stems=("bass",))
    ran = [r.calls - c for r, c in zip(ft.runners, calls, strict=True)]
    assert ran[1] > 0 and ran[0] == ran[2] == ran[3] == 0  # only the bass specialist ran


def test_six_source_bag_has_guitar_and_piano() -> None:
    six = load_model("htdemucs_6s", tiny_repo("htdemucs_6s"), "cpu", hub_cache=empty_dir("hub"))
    assert six.sources == ("drums", "bass", "other", "vocals", "guitar", "piano")
    mix = noise_song(RATE * 2 + 5000, seed=6)
    ref = reference(six, mix)
    got, _, _ = run_stream(six, mix, 30_000, stems=("guitar", "piano"))
    np.testing.assert_allclose(got["guitar"], ref["guitar"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["piano"], ref["piano"], rtol=1e-5, atol=1e-6)


def test_mono_22k_input_is_resampled_as_a_whole(model: DemucsModel) -> None:
    mono = noise_song(int(2.5 * 22_050), seed=7, channels=1)
    whole = soxr.resample(mono, 22_050, RATE, quality="HQ").astype(np.float32)
    ref = reference(model, np.repeat(whole, 2, axis=1))
    got, _, _ = run_stream(model, mono, 5000, stems=("drums",), in_rate=22_050, in_channels=1)
    assert got["drums"].shape == (whole.shape[0], 2)
    np.testing.assert_allclose(got["drums"], ref["drums"], rtol=1e-4, atol=1e-5)


def test_weight_matches_demucs_triangle() -> None:
    weight = overlap_weight(10)
    assert weight.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2])


def test_cancel_stops_between_segments(model: DemucsModel) -> None:
    from tabagent.errors import Cancelled

    stream = model.open_stream([])
    stream.push(noise_song(SEGMENT, seed=8))
    stream.cancel()
    with pytest.raises(Cancelled):
        stream.push(noise_song(SEGMENT, seed=9))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streaming_on_cuda_equals_apply_model() -> None:
    cuda = load_model("htdemucs", tiny_repo("htdemucs"), "cuda", hub_cache=empty_dir("hub"))
    assert isinstance(cuda, DemucsModel) and cuda.info.device.startswith("cuda")
    mix = noise_song(5 * RATE + 1234, seed=10)
    ref = reference(cuda, mix)
    got, _, _ = run_stream(cuda, mix, 997)
    for name in cuda.sources:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-5)
