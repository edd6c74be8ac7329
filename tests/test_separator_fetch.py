"""Demucs weights downloaded from a mirror in Demucs's remote layout: checksummed, atomic, cached, optional.

A local HTTP server (http.server in a thread) serves a tiny random-weight bag laid out as
dl.fbaipublicfiles.com/demucs/ lays out the real ones (`<root>/<sig>-<sha256[:8]>.th`),
registered under a test model name in a catalog folder shaped like demucs's `remote/`
(files.txt + `<name>.yaml`). Everything goes through `load_model` and `tabagent models`
as a user's first run would.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from separator_fixtures import TINY_SEGMENT, noise_song

from launcher import cli
from separator_svc.dsp import DspModel
from separator_svc.fetch import (
    Catalog,
    FetchConfig,
    WeightCache,
    checksum_of,
    parse_files_txt,
    sha256_prefix,
    torch_checkpoints_dir,
)
from separator_svc.model import DemucsModel, load_model

NAME = "tiny_remote_test"


@functools.cache
def _packages(root: Path) -> tuple[Path, Path]:
    """Write the tiny bag once: (served folder, catalog folder)."""
    from demucs.states import save_with_checksum

    from separator_svc.tiny import _bag_yaml, _package, tiny_models

    served, catalog = root / "served", root / "catalog"
    (served / "tiny").mkdir(parents=True)
    catalog.mkdir()
    models, sigs, weights = tiny_models("htdemucs", segment=TINY_SEGMENT, seed=7)
    names = []
    for model, sig in zip(models, sigs, strict=True):
        save_with_checksum(_package(model), served / "tiny" / f"{sig}.th")
        names.append(next(p.name for p in (served / "tiny").glob(f"{sig}-*.th")))
    (catalog / "files.txt").write_text("# a tiny test bag\nroot: tiny/\n" + "\n".join(names) + "\n")
    (catalog / f"{NAME}.yaml").write_text(_bag_yaml(sigs, weights))
    return served, catalog


@dataclass
class Mirror:
    """A local HTTP mirror: its URL, its folder, and the paths it was asked for."""

    url: str
    folder: Path
    catalog: Path
    requests: list[str] = field(default_factory=list)

    def file(self) -> Path:
        return next((self.folder / "tiny").glob("*.th"))


@pytest.fixture
def mirror(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Mirror]:
    served, catalog = _packages(tmp_path_factory.getbasetemp() / "tiny-remote")
    folder = tmp_path / "served"
    shutil.copytree(served, folder)
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Mirror(f"http://127.0.0.1:{server.server_address[1]}/", folder, catalog, seen)
    finally:
        server.shutdown()
        server.server_close()


def settings(mirror: Mirror, cache: Path, **changes: object) -> FetchConfig:
    base = FetchConfig(offline=False, remote_url=mirror.url, cache_dir=cache, catalogs=(mirror.catalog,), timeout=2.0)
    return FetchConfig(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def load(fetch: FetchConfig, tmp_path: Path) -> object:
    return load_model(NAME, None, "cpu", hub_cache=tmp_path / "no-hub", fetch=fetch)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*") if not p.name.endswith(".th")) if cache.exists() else []


def test_first_run_downloads_and_uses_it_second_run_does_not(mirror: Mirror, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    seen: list[tuple[str, int, int]] = []
    model = load_model(NAME, None, "cpu", hub_cache=tmp_path / "no-hub", fetch=settings(mirror, cache),
                       progress=lambda *a: seen.append(a))
    assert isinstance(model, DemucsModel) and not model.info.fallback
    assert model.info.name == NAME and mirror.url in model.info.message
    assert mirror.requests == [f"/tiny/{mirror.file().name}"]
    cached = cache / mirror.file().name
    assert cached.read_bytes() == mirror.file().read_bytes()
    assert leftovers(cache) == []                       # no .part or lock file stays behind
    assert seen[-1][1] == seen[-1][2] == cached.stat().st_size   # the progress reached the end
    # It is the served model that separates: same weights as the package on the mirror.
    stream = model.open_stream(["bass"])
    mix = noise_song(int(3 * 44_100))
    out = np.concatenate([stream.push(mix)["bass"], stream.finish()["bass"]])
    assert out.shape == mix.shape and np.abs(out).max() > 0

    again = load(settings(mirror, cache), tmp_path)
    assert isinstance(again, DemucsModel) and "torch cache" in again.info.message
    assert len(mirror.requests) == 1                    # not downloaded twice
    # Offline, the cached copy is still used.
    offline = load(settings(mirror, cache, offline=True), tmp_path)
    assert isinstance(offline, DemucsModel)


def test_a_corrupted_download_is_refused_and_removed(mirror: Mirror, tmp_path: Path) -> None:
    served = mirror.file()
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    model = load(settings(mirror, cache), tmp_path)
    assert isinstance(model, DspModel) and model.info.fallback
    assert "SHA-256" in model.info.message and "refused" in model.info.message
    assert list(cache.glob("*")) == []                  # neither the file nor a part of it


def test_a_corrupted_cached_file_is_removed_and_fetched_again(mirror: Mirror, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / mirror.file().name
    cached.write_bytes(mirror.file().read_bytes()[:-10] + b"0123456789")
    # Offline: refused, removed, DSP with the reason.
    model = load(settings(mirror, cache, offline=True), tmp_path)
    assert isinstance(model, DspModel) and "SHA-256" in model.info.message
    assert not cached.exists() and mirror.requests == []
    # Online: fetched again, whole.
    cached.write_bytes(b"truncated")
    model = load(settings(mirror, cache), tmp_path)
    assert isinstance(model, DemucsModel)
    assert cached.read_bytes() == mirror.file().read_bytes()


def test_offline_never_touches_the_network(mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABAGENT_OFFLINE", "1")
    monkeypatch.setenv("DEMUCS_REMOTE_URL", mirror.url)
    monkeypatch.setenv("DEMUCS_REMOTE_CATALOG", str(mirror.catalog))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fetch = FetchConfig.from_env()
    assert fetch.offline and fetch.remote_url == mirror.url and fetch.catalogs == (mirror.catalog,)
    model = load(fetch, tmp_path)
    assert isinstance(model, DspModel) and model.info.fallback
    assert "TABAGENT_OFFLINE=1" in model.info.message
    assert mirror.requests == []
    # --offline wins over an environment that allows the network.
    monkeypatch.setenv("TABAGENT_OFFLINE", "0")
    assert FetchConfig.from_env(offline=True).offline
    assert not FetchConfig.from_env().offline


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_an_unreachable_mirror_falls_back_within_seconds(mirror: Mirror, tmp_path: Path) -> None:
    for url in (f"http://127.0.0.1:{_closed_port()}/", "http://host.invalid/demucs/"):
        started = time.monotonic()
        model = load(settings(mirror, tmp_path / "cache", remote_url=url), tmp_path)
        assert time.monotonic() - started < 5.0
        assert isinstance(model, DspModel) and model.info.fallback
        assert "unreachable" in model.info.message, model.info.message
    with _silent_server() as port:
        started = time.monotonic()
        model = load(settings(mirror, tmp_path / "cache", remote_url=f"http://127.0.0.1:{port}/", timeout=1.0),
                     tmp_path)
        assert time.monotonic() - started < 5.0
        assert isinstance(model, DspModel) and "unreachable" in model.info.message
    assert leftovers(tmp_path / "cache") == []


def test_models_pull_and_list(mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TABAGENT_OFFLINE", "0")
    monkeypatch.setenv("DEMUCS_REMOTE_URL", mirror.url)
    monkeypatch.setenv("DEMUCS_REMOTE_CATALOG", str(mirror.catalog))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DEMUCS_MODEL_DIR", raising=False)
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "htdemucs_6s" in out and "not local" in out and NAME not in out
    repo = tmp_path / "volume" / "demucs"
    assert cli.main(["models", "pull", "-q", NAME, "--model-dir", str(repo)]) == 0
    assert "downloaded 1 file(s)" in capsys.readouterr().out
    assert (torch_checkpoints_dir() / mirror.file().name).is_file()
    assert cli.main(["models", "pull", "-q", NAME]) == 0
    assert "already here" in capsys.readouterr().out and len(mirror.requests) == 1
    assert cli.main(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(NAME))
    assert "torch cache" in line
    # The --model-dir copy is a demucs repo folder the separator loads as DEMUCS_MODEL_DIR.
    model = load_model(NAME, repo, "cpu", hub_cache=tmp_path / "no-hub", fetch=FetchConfig(offline=True,
                       cache_dir=tmp_path / "empty"))
    assert isinstance(model, DemucsModel) and "model dir" in model.info.message
    # Failures: one line each, exit 1.
    assert cli.main(["models", "pull", "-q", "no_such_model"]) == 1
    assert "no_such_model" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "other"))
    assert cli.main(["models", "pull", "--offline", "-q", NAME]) == 1
    err = capsys.readouterr().err
    assert "TABAGENT_OFFLINE" in err and len(err.strip().splitlines()) == 1


def test_the_layout_is_demucs_own() -> None:
    """demucs's shipped listing parses as demucs parses it, and the cache is torch hub's."""
    import torch
    from demucs.pretrained import REMOTE_ROOT, ROOT_URL, _parse_remote_files

    ours = parse_files_txt((REMOTE_ROOT / "files.txt").read_text())
    theirs = _parse_remote_files(REMOTE_ROOT / "files.txt")
    assert {sig: ROOT_URL + path for sig, path in ours.items()} == theirs
    catalog = Catalog.load([REMOTE_ROOT])
    assert catalog.signatures("htdemucs_6s") == ("5c90dfd2",)
    assert len(catalog.signatures("htdemucs_ft")) == 4
    assert checksum_of(catalog.filename("955717e8")) == "8726e21a"
    assert torch_checkpoints_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    assert WeightCache(FetchConfig(offline=True)).folder == torch_checkpoints_dir()


def test_sha256_prefix(tmp_path: Path) -> None:
    path = tmp_path / "x.th"
    path.write_bytes(b"abc")
    assert sha256_prefix(path, 8) == "ba7816bf"
