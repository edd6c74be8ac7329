"""Demucs weights fetched once from Demucs's own remote (or a mirror): checksummed, atomic, cached.

Demucs publishes its pretrained models as one package per model, `<sig>-<sha256
prefix>.th`, under https://dl.fbaipublicfiles.com/demucs/ and lists them in the
`remote/files.txt` shipped with the demucs package (`root: <folder>/` lines, then file
names), next to one `<name>.yaml` per bag (`models: [sig, ...]`, optional `weights`,
`segment`). `demucs.pretrained` downloads them with `torch.hub.load_state_dict_from_url`
into torch hub's checkpoint folder (`$TORCH_HOME/hub/checkpoints`, by default
`~/.cache/torch/hub/checkpoints`) and checks the hash prefix in the name.

This module reads the same listing and writes the same files into the same folder, so a
model fetched here is the one demucs would have fetched, and one demucs fetched is found
here; what it adds:

* a mirror with the same layout (`DEMUCS_REMOTE_URL`, default Demucs's own);
* `TABAGENT_OFFLINE=1` (or `offline=True`): the network is never touched, only what is
  already in the cache is used;
* atomic writes: a download goes to a temporary file in the cache folder and is renamed
  into place only once its SHA-256 matches the name's prefix, so a half-written or wrong
  file is never loaded; a cached file that fails the check is refused and removed;
* short timeouts (`DEMUCS_DOWNLOAD_TIMEOUT`, seconds per connect or read), so an
  unreachable mirror means the DSP fallback within seconds, not a hung start-up;
* a progress callback (a bar in `tabagent models pull`, log lines in the service);
* extra catalogs (`DEMUCS_REMOTE_CATALOG`: folders laid out like demucs's `remote/`), for
  models a mirror serves that demucs does not list.

Errors are `FetchError`s carrying a one-line reason (offline, unreachable, checksum,
unknown model), which the separator puts into its fallback message and result.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEMUCS_REMOTE_URL = "https://dl.fbaipublicfiles.com/demucs/"
TRUE = ("1", "true", "yes", "on")
_BLOCK = 1 << 20

# (file name, bytes done, bytes total or 0 when unknown)
Progress = Callable[[str, int, int], None]


class FetchError(Exception):
    """Weights could not be had; `str(exc)` is the one-line reason.

    Hierarchy:
        FetchError
        ├── UnknownModel      no catalog lists the name
        ├── Offline           not cached, and the network may not be used
        ├── DownloadFailed    the remote could not be reached or refused the file
        └── ChecksumMismatch  a file's SHA-256 does not match its name (removed)
    """


class UnknownModel(FetchError):
    pass


class Offline(FetchError):
    pass


class DownloadFailed(FetchError):
    pass


class ChecksumMismatch(FetchError):
    pass


def torch_checkpoints_dir() -> Path:
    """torch hub's checkpoint folder, as `torch.hub.get_dir()` computes it (without importing torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def demucs_catalog_dir() -> Path | None:
    """The `remote/` folder shipped with the demucs package (None when demucs is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("demucs")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "remote"
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class FetchConfig:
    """Where weights come from and whether the network may be used.

    Environment (defaults in brackets):
        TABAGENT_OFFLINE [0]: 1 = never touch the network;
        DEMUCS_REMOTE_URL [https://dl.fbaipublicfiles.com/demucs/]: a mirror of Demucs's
        remote layout (`<root>/<sig>-<sha>.th`);
        DEMUCS_REMOTE_CATALOG: extra catalog folders (files.txt + <name>.yaml, demucs's
        `remote/` layout), separated by the path separator, read after demucs's own;
        TORCH_HOME / XDG_CACHE_HOME: where torch hub's checkpoint folder is (the cache);
        DEMUCS_DOWNLOAD_TIMEOUT [10]: seconds a connect or a read may take.
    """

    offline: bool = False
    remote_url: str = DEMUCS_REMOTE_URL
    cache_dir: Path | None = None          # None: torch hub's checkpoint folder
    catalogs: tuple[Path, ...] = ()        # besides demucs's own remote/ folder
    timeout: float = 10.0

    @classmethod
    def from_env(cls, offline: bool | None = None) -> FetchConfig:
        """Read the variables above; `offline=True` (a `--offline` flag) wins over the environment."""
        raw_timeout = os.environ.get("DEMUCS_DOWNLOAD_TIMEOUT", "")
        try:
            timeout = float(raw_timeout) if raw_timeout else cls.timeout
        except ValueError as exc:
            raise SystemExit(f"DEMUCS_DOWNLOAD_TIMEOUT={raw_timeout!r} is not a number") from exc
        if timeout <= 0:
            raise SystemExit("DEMUCS_DOWNLOAD_TIMEOUT must be > 0")
        url = os.environ.get("DEMUCS_REMOTE_URL", "") or DEMUCS_REMOTE_URL
        if not url.startswith(("http://", "https://", "file://")):
            raise SystemExit(f"DEMUCS_REMOTE_URL={url!r}: expected an http(s):// or file:// URL")
        extra = tuple(Path(p) for p in os.environ.get("DEMUCS_REMOTE_CATALOG", "").split(os.pathsep) if p)
        env_offline = os.environ.get("TABAGENT_OFFLINE", "").strip().lower() in TRUE
        return cls(
            offline=bool(offline) or env_offline,
            remote_url=url,
            cache_dir=torch_checkpoints_dir(),
            catalogs=extra,
            timeout=timeout,
        )

    @property
    def cache(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else torch_checkpoints_dir()


@dataclass(frozen=True)
class BagSpec:
    """A bag of models as its `<name>.yaml` describes it."""

    name: str
    signatures: tuple[str, ...]
    weights: list[list[float]] | None = None
    segment: float | None = None


@dataclass
class Catalog:
    """What the remote holds: signature -> file path under the remote root, bag name -> BagSpec."""

    files: dict[str, str] = field(default_factory=dict)
    bags: dict[str, BagSpec] = field(default_factory=dict)

    @classmethod
    def load(cls, folders: Sequence[Path]) -> Catalog:
        """Read demucs's `remote/` layout from each folder (later folders add to or replace earlier ones)."""
        import yaml

        catalog = cls()
        for folder in folders:
            listing = folder / "files.txt"
            if listing.is_file():
                catalog.files.update(parse_files_txt(listing.read_text()))
            for bag_file in sorted(folder.glob("*.yaml")):
                spec = yaml.safe_load(bag_file.read_text()) or {}
                if "models" in spec:
                    catalog.bags[bag_file.stem] = BagSpec(
                        bag_file.stem, tuple(str(s) for s in spec["models"]), spec.get("weights"), spec.get("segment"))
        return catalog

    def signatures(self, name: str) -> tuple[str, ...]:
        """The model signatures `name` needs (a bag's, or `name` itself when it is one).

        Raises:
            UnknownModel: neither a bag nor a signature of the catalog.
        """
        if name in self.bags:
            return self.bags[name].signatures
        if name in self.files:
            return (name,)
        known = ", ".join(sorted(self.bags)) or "none"
        raise UnknownModel(f"{name!r} is not a Demucs model the remote lists (bags: {known})")

    def filename(self, sig: str) -> str:
        """`<sig>-<sha256 prefix>.th`, the name the file keeps in the cache."""
        return self.files[sig].rsplit("/", 1)[-1]


def parse_files_txt(text: str) -> dict[str, str]:
    """demucs.pretrained._parse_remote_files, keeping paths relative to the remote root."""
    root = ""
    files: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
            continue
        files[line.split("-", 1)[0]] = root + line
    return files


def checksum_of(name: str) -> str:
    """The SHA-256 prefix a `<sig>-<prefix>.th` name promises ("" when it promises none)."""
    stem = name.rsplit(".", 1)[0]
    return stem.rsplit("-", 1)[1] if "-" in stem else ""


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


@dataclass
class ModelFiles:
    """A model's files in the cache: the bag spec and one path per signature."""

    spec: BagSpec
    paths: list[Path]
    downloaded: list[str] = field(default_factory=list)   # file names fetched by this call


class WeightCache:
    """Demucs packages in torch hub's checkpoint folder, fetched on demand.

    Args:
        config: remote, cache folder, offline switch, timeouts.
        catalog: what the remote holds; default demucs's listing plus `config.catalogs`.
    """

    def __init__(self, config: FetchConfig | None = None, catalog: Catalog | None = None) -> None:
        self.config = config or FetchConfig.from_env()
        if catalog is None:
            own = demucs_catalog_dir()
            catalog = Catalog.load([*([own] if own else []), *self.config.catalogs])
        self.catalog = catalog

    @property
    def folder(self) -> Path:
        return self.config.cache

    def spec(self, name: str) -> BagSpec:
        """The bag (or single model, as a bag of one) `name` stands for."""
        if name in self.catalog.bags:
            return self.catalog.bags[name]
        return BagSpec(name, self.catalog.signatures(name))

    def path(self, sig: str) -> Path:
        return self.folder / self.catalog.filename(sig)

    def is_local(self, name: str) -> bool:
        """Every file of `name` is in the cache (not checksummed here: `ensure` does that)."""
        try:
            return all(self.path(sig).is_file() for sig in self.catalog.signatures(name))
        except UnknownModel:
            return False

    def local_models(self) -> list[str]:
        """Bags whose every file is cached."""
        return [name for name in sorted(self.catalog.bags) if self.is_local(name)]

    def ensure(self, name: str, progress: Progress | None = None) -> ModelFiles:
        """The cached, checksummed files of `name`, downloading what is missing (unless offline).

        Raises:
            FetchError: with the reason (unknown, offline, unreachable, checksum).
        """
        spec = self.spec(name)
        out = ModelFiles(spec, [])
        for sig in spec.signatures:
            path, fetched = self._ensure_file(sig, progress)
            out.paths.append(path)
            if fetched:
                out.downloaded.append(path.name)
        return out

    def _ensure_file(self, sig: str, progress: Progress | None) -> tuple[Path, bool]:
        path = self.path(sig)
        expected = checksum_of(path.name)
        if path.is_file():
            if self._verified(path, expected):
                return path, False
            if self.config.offline:
                raise ChecksumMismatch(f"cached {path.name} failed its SHA-256 check and was removed "
                                       "(offline: not downloaded again)")
        if self.config.offline:
            raise Offline(f"{path.name} is not in {self.folder} and the network is off (TABAGENT_OFFLINE=1)")
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock(path):
            if path.is_file() and self._verified(path, expected):   # another process fetched it
                return path, False
            self._download(self.config.remote_url.rstrip("/") + "/" + self.catalog.files[sig], path,
                           expected, progress)
        return path, True

    def _verified(self, path: Path, expected: str) -> bool:
        """True when `path` matches its checksum; a file that does not is removed."""
        if not expected:
            return True
        actual = sha256_prefix(path, len(expected))
        if actual == expected:
            return True
        log.warning("%s: SHA-256 starts %s, its name promises %s; removed", path, actual, expected)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        """One download of a file at a time across processes sharing the cache."""
        lock = path.with_name(path.name + ".lock")
        try:
            with open(lock, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            # A process still waiting holds the old inode and re-checks the file after it.
            with contextlib.suppress(OSError):
                lock.unlink()

    def _download(self, url: str, dest: Path, expected: str, progress: Progress | None) -> None:
        """Stream `url` into a temporary file beside `dest`, verify, rename into place."""
        log.info("downloading %s to %s", url, dest)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    response = urllib.request.urlopen(url, timeout=self.config.timeout)  # noqa: S310 - http(s)/file URLs only
                except urllib.error.HTTPError as exc:
                    raise DownloadFailed(f"{url}: HTTP {exc.code} {exc.reason}") from None
                except (urllib.error.URLError, OSError) as exc:
                    reason = getattr(exc, "reason", exc)
                    raise DownloadFailed(f"{url} unreachable: {reason}") from None
                with response:
                    total = int(response.headers.get("Content-Length") or 0)
                    done = 0
                    if progress is not None:
                        progress(dest.name, 0, total)
                    while True:
                        try:
                            block = response.read(_BLOCK)
                        except (OSError, TimeoutError) as exc:
                            raise DownloadFailed(f"{url}: download broke off after {done} bytes ({exc})") from None
                        if not block:
                            break
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(dest.name, done, total)
                if total and done != total:
                    raise DownloadFailed(f"{url}: got {done} of {total} bytes")
            actual = digest.hexdigest()[: len(expected)]
            if expected and actual != expected:
                raise ChecksumMismatch(f"{url}: SHA-256 starts {actual}, expected {expected}; refused and removed")
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write_repo(self, name: str, dest: Path, progress: Progress | None = None) -> list[Path]:
        """Fetch `name` and lay it out as a demucs local repo (`<sig>-<sha>.th` + `<name>.yaml`) in `dest`.

        What `DEMUCS_MODEL_DIR` / a model volume holds; files are hard-linked from the
        cache when possible, else copied (atomically, like downloads).
        """
        import shutil

        files = self.ensure(name, progress)
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for path in files.paths:
            target = dest / path.name
            if not target.exists():
                tmp = dest / f".{path.name}.part"
                try:
                    os.link(path, tmp)
                except OSError:
                    shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            written.append(target)
        if name in self.catalog.bags:
            spec = self.catalog.bags[name]
            text = f"models: {list(spec.signatures)!r}\n"
            if spec.weights is not None:
                text += f"weights: {spec.weights!r}\n"
            if spec.segment is not None:
                text += f"segment: {spec.segment!r}\n"
            (dest / f"{name}.yaml").write_text(text)
            written.append(dest / f"{name}.yaml")
        return written


def load_bag(files: ModelFiles) -> Any:
    """A demucs BagOfModels from cached files, with demucs's own package loader."""
    from demucs.apply import BagOfModels
    from demucs.states import load_model

    models = []
    for sig, path in zip(files.spec.signatures, files.paths, strict=True):
        model = load_model(path)
        model._sig = sig
        models.append(model)
    return BagOfModels(models, files.spec.weights, files.spec.segment)


class LogProgress:
    """A progress callback for services: a log line every `every` seconds and at the end."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = total and done >= total
        if not finished and now - self._last.get(name, 0.0) < self.every:
            return
        self._last[name] = now
        if total:
            log.info("downloading %s: %.1f of %.1f MB (%.0f%%)", name, done / 1e6, total / 1e6, 100 * done / total)
        else:
            log.info("downloading %s: %.1f MB", name, done / 1e6)
