"""Fast forward passes: pruned sources, pipelined segments, thread counts and precision stay within their bounds."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from separator_fixtures import RATE, empty_dir, noise_song, reference, tiny_repo

from separator_svc.accel import (
    Acceleration,
    PointwiseConv,
    SubpixelConvTranspose,
    autocast,
    can_prune,
    intra_op_threads,
    prune_sources,
    rewrite_convs,
)
from separator_svc.model import DemucsModel, load_model
from separator_svc.runner import BatchingSegmentRunner, SegmentRunner
from separator_svc.tiny import tiny_models


def sdr(ref: np.ndarray | torch.Tensor, est: np.ndarray | torch.Tensor) -> float:
    ref, est = np.asarray(ref, np.float64), np.asarray(est, np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - est) ** 2), 1e-30)))


@pytest.mark.parametrize("name", ["htdemucs", "htdemucs_6s"])
def test_pruned_model_gives_the_kept_sources(name: str) -> None:
    model = tiny_models(name, segment=0.5)[0][0]
    assert can_prune(model)
    x = torch.from_numpy(noise_song(RATE // 2, seed=1).T.copy())[None]
    with torch.no_grad():
        full = model(x)
        for keep in ([1], [4 % len(model.sources), 1], list(range(len(model.sources)))):
            pruned = prune_sources(model, keep)
            assert pruned.sources == [model.sources[k] for k in keep]
            got = pruned(x)
            torch.testing.assert_close(got, full[:, keep], rtol=1e-5, atol=1e-6)
    # The original is untouched: same sources, same last layers.
    assert len(model.sources) == len(model(x)[0]) and prune_sources(model, range(len(model.sources))) is model


def test_pruning_refuses_what_it_cannot_do_exactly() -> None:
    model = tiny_models("htdemucs", segment=0.5)[0][0]
    with pytest.raises(ValueError, match="bad source"):
        prune_sources(model, [7])
    model.cac = False  # a Wiener filter would mix the sources
    assert not can_prune(model)
    with pytest.raises(ValueError, match="cannot be pruned"):
        prune_sources(model, [0])


def test_runner_returns_the_asked_sources_in_order() -> None:
    model = tiny_models("htdemucs_6s", segment=0.5)[0][0]
    pruning = SegmentRunner(model, accel=Acceleration(workers=1, prune=True))
    plain = SegmentRunner(model, accel=Acceleration(workers=1, prune=False))
    segment = torch.from_numpy(noise_song(RATE // 2, seed=2).T.copy())
    full = plain.run(segment)
    for wanted in ((4, 1), (1,), (0, 1, 2, 3, 4, 5)):
        torch.testing.assert_close(pruning.run(segment, wanted), full[list(wanted)], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain.run(segment, wanted), full[list(wanted)])
    assert set(pruning._variants) == {(4, 1), (1,), (0, 1, 2, 3, 4, 5)}
    assert set(plain._variants) == {(0, 1, 2, 3, 4, 5)}


def test_batches_of_different_stem_sets_run_their_union() -> None:
    model = tiny_models("htdemucs_6s", segment=0.5)[0][0]
    runner = BatchingSegmentRunner(model, max_batch=2, max_wait=2.0, accel=Acceleration(workers=1, prune=True))
    plain = SegmentRunner(model, accel=Acceleration(workers=1, prune=False))
    segments = [torch.from_numpy(noise_song(RATE // 2, seed=s).T.copy()) for s in (3, 4)]
    wanted = [(4, 1), (2,)]
    got: dict[int, torch.Tensor] = {}

    def one(i: int) -> None:
        got[i] = runner.run(segments[i], wanted[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        runner.close()
    assert runner.batches == 1 and set(runner._variants) == {(1, 2, 4)}
    for i in range(2):
        torch.testing.assert_close(got[i], plain.run(segments[i])[list(wanted[i])], rtol=1e-4, atol=1e-5)


def test_ft_specialists_compute_only_their_source() -> None:
    ft = load_model("htdemucs_ft", tiny_repo("htdemucs_ft"), "cpu", hub_cache=empty_dir("hub"),
                    accel=Acceleration(workers=2, threads=1))
    assert isinstance(ft, DemucsModel)
    try:
        mix = noise_song(2 * RATE + 99, seed=5)
        stream = ft.open_stream(["bass", "guitar"])  # guitar is "other" in a 4-source bag
        out = [stream.push(mix[i : i + RATE]) for i in range(0, mix.shape[0], RATE)] + [stream.finish()]
        ref = reference(ft, mix)
        np.testing.assert_allclose(np.concatenate([o["bass"] for o in out]), ref["bass"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.concatenate([o["guitar"] for o in out]), ref["other"], rtol=1e-5, atol=1e-6)
        # The bass and "other" specialists ran, each asked for its own source only.
        assert [set(r._variants) for r in ft.runners] == [set(), {(1,)}, {(2,)}, set()]
    finally:
        ft.close()


def test_thread_count_is_per_thread_and_restored() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    def worker() -> None:
        with intra_op_threads(1):
            seen.append(torch.get_num_threads())
            with intra_op_threads(0):  # 0 leaves it alone
                seen.append(torch.get_num_threads())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_settings_resolve_and_refuse_garbage() -> None:
    cpu = Acceleration().resolved("cpu")
    assert cpu.workers >= 1 and cpu.threads >= 1 and not cpu.lossy
    assert "attention sdpa" in cpu.describe() and "pruned" in cpu.describe()
    assert Acceleration(workers=3, threads=2).resolved("cpu").workers == 3
    assert Acceleration(precision="bf16").lossy
    for bad in (Acceleration(precision="fp8"), Acceleration(compile="fast"), Acceleration(workers=-1),
                Acceleration(attention="flash")):
        with pytest.raises(ValueError):
            bad.check()


@pytest.mark.parametrize("precision", ["bf16", "bf16-transformer"])
def test_bf16_is_opt_in_and_close(precision: str) -> None:
    model = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"),
                       accel=Acceleration(workers=1, precision=precision))
    assert isinstance(model, DemucsModel)
    assert precision in model.info.message and "reduced precision" in model.info.message
    segment = torch.from_numpy(noise_song(RATE, seed=6).T.copy())
    runner = model.runners[0]
    lossy = runner.run(segment)
    assert lossy.dtype == torch.float32
    with torch.no_grad(), autocast(Acceleration(), "cpu"):
        exact = runner.model(segment[None])[0]
    # Reduced precision is close, not equal (the CPU benchmark reports the full-size SDR).
    assert 15.0 < sdr(exact, lossy) < 200.0


@pytest.mark.parametrize("kernel,stride", [(8, 4), (4, 2), (6, 2), (4, 4)])
def test_subpixel_form_equals_the_transposed_convolution(kernel: int, stride: int) -> None:
    torch.manual_seed(kernel * 10 + stride)
    for conv, x in (
        (torch.nn.ConvTranspose2d(6, 5, (kernel, 1), (stride, 1)), torch.randn(2, 6, 9, 7)),
        (torch.nn.ConvTranspose1d(6, 5, kernel, stride), torch.randn(2, 6, 33)),
    ):
        assert SubpixelConvTranspose.supports(conv)
        with torch.no_grad():
            torch.testing.assert_close(SubpixelConvTranspose(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
    assert not SubpixelConvTranspose.supports(torch.nn.ConvTranspose1d(6, 5, 5, 2))  # kernel not m * stride
    assert not SubpixelConvTranspose.supports(torch.nn.ConvTranspose1d(6, 5, 4, 2, padding=1))


def test_pointwise_form_and_rewritten_model() -> None:
    conv = torch.nn.Conv1d(6, 12, 1)
    x = torch.randn(3, 6, 50)
    with torch.no_grad():
        torch.testing.assert_close(PointwiseConv(conv)(x), conv(x), rtol=1e-5, atol=1e-6)
    model = tiny_models("htdemucs_6s", segment=0.5)[0][0]
    pruned = prune_sources(model, [4, 1])
    cache: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = {}
    fast = rewrite_convs(pruned, cache)
    kinds = [type(m).__name__ for m in fast.modules()]
    assert "SubpixelConvTranspose" in kinds and "PointwiseConv" in kinds
    assert not any(isinstance(m, (SubpixelConvTranspose, PointwiseConv)) for m in model.modules())  # untouched
    again = rewrite_convs(prune_sources(model, [2]), cache)  # shares the replaced layers
    assert again.encoder[0].dconv.layers[0][3] is fast.encoder[0].dconv.layers[0][3]
    x = torch.from_numpy(noise_song(RATE // 2, seed=7).T.copy())[None]
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x)[:, [4, 1]], rtol=1e-4, atol=1e-6)


def test_many_stem_sets_in_one_runner_each_get_their_own_last_layers() -> None:
    import gc

    model = tiny_models("htdemucs_6s", segment=0.5)[0][0]
    runner = SegmentRunner(model, accel=Acceleration(workers=1, prune=True, rewrite="on"))
    segment = torch.from_numpy(noise_song(RATE // 2, seed=8).T.copy())
    with torch.no_grad():
        full = model(segment[None])[0]
    for wanted in ((0,), (1,), (2,), (3,), (5,), (4, 1), (1, 4), (2, 3, 5)):
        gc.collect()  # freed pruned layers must not hand their ids (and replacements) on
        torch.testing.assert_close(runner.run(segment, wanted), full[list(wanted)], rtol=1e-4, atol=1e-6)


def test_thread_budget_shares_the_threads_among_running_passes() -> None:
    from separator_svc.accel import ThreadBudget

    budget = ThreadBudget(4)
    inside, leave = threading.Event(), threading.Event()
    seen: list[int] = []

    def second() -> None:
        with budget.share() as threads:
            seen.append(threads)
            seen.append(torch.get_num_threads())
            inside.set()
            leave.wait(10)

    with budget.share() as alone:
        assert alone == 4 and torch.get_num_threads() == 4
        t = threading.Thread(target=second)
        t.start()
        inside.wait(10)
        assert seen == [2, 2]  # a pass that starts while another runs gets its share
    with budget.share() as now:
        assert now == 2  # the second pass still runs
    leave.set()
    t.join()
    with budget.share() as alone_again:
        assert alone_again == 4
