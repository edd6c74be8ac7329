"""`tabagent models pull|list`: fetch Demucs weights ahead of time, and show which are on this machine.

    tabagent models pull                       # htdemucs_6s, the default separator model
    tabagent models pull htdemucs htdemucs_ft  # others by name
    tabagent models pull --model-dir /models/demucs htdemucs_6s   # a demucs repo folder (a model volume)
    tabagent models list                       # what is local, and where

Downloads go to torch hub's checkpoint folder (where demucs itself keeps them and the
separator looks), from DEMUCS_REMOTE_URL (default Demucs's own remote), with a progress
bar, checksummed and renamed into place only when whole (`separator_svc.fetch`).
The command line only registers a subcommand here (`add_parser`), so whichever launcher
owns `tabagent` can mount it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from separator_svc.fetch import FetchConfig, FetchError, WeightCache

DEFAULT_PULL = ("htdemucs_6s",)
LISTED = ("htdemucs_6s", "htdemucs", "htdemucs_ft")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `models pull` and `models list` on a `tabagent` subparser set."""
    models = sub.add_parser("models", help="fetch Demucs weights ahead of time, or list what is local",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = models.add_subparsers(dest="models_command", required=True)
    pull = actions.add_parser("pull", help="download Demucs models into the cache (or a model folder)")
    pull.add_argument("names", nargs="*", metavar="NAME",
                      help=f"models to fetch (default: {' '.join(DEFAULT_PULL)})")
    pull.add_argument("--model-dir", type=Path, default=None,
                      help="also lay them out as a demucs repo folder here (what DEMUCS_MODEL_DIR reads)")
    pull.add_argument("--offline", action="store_true",
                      help="never download: only check what the cache holds (as TABAGENT_OFFLINE=1)")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pull.set_defaults(func=cmd_pull)
    listing = actions.add_parser("list", help="show which Demucs models are on this machine, and where")
    listing.add_argument("--model-dir", type=Path, default=None,
                         help="a demucs repo folder to look in too (default: DEMUCS_MODEL_DIR)")
    listing.add_argument("--all", action="store_true", help="every bag Demucs lists, not only the HTDemucs ones")
    listing.set_defaults(func=cmd_list)


class _Bars:
    """One tqdm bar per file, on stderr (plain when it is not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict[str, Any] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.quiet:
            return
        bar = self.bars.get(name)
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total or None, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                       file=sys.stderr, leave=True, dynamic_ncols=True, mininterval=0.5)
            self.bars[name] = bar
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def download_bars() -> _Bars:
    """A progress callback drawing one bar per downloaded file on stderr."""
    return _Bars(quiet=False)


def cmd_pull(args: argparse.Namespace) -> int:
    """Fetch each named model; one line per model, exit 1 when any failed."""
    weights = WeightCache(FetchConfig.from_env(offline=args.offline or None))
    names = list(dict.fromkeys(args.names or DEFAULT_PULL))
    failed = 0
    for name in names:
        bars = _Bars(args.quiet)
        try:
            files = weights.ensure(name, bars)
            where = weights.folder
            if args.model_dir is not None:
                weights.write_repo(name, args.model_dir)
                where = args.model_dir
        except FetchError as exc:
            print(f"tabagent models: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        except OSError as exc:
            print(f"tabagent models: {name}: cannot write {exc.filename or ''}: {exc.strerror or exc}",
                  file=sys.stderr)
            failed += 1
            continue
        finally:
            bars.close()
        size = sum(p.stat().st_size for p in files.paths)
        state = f"downloaded {len(files.downloaded)} file(s)" if files.downloaded else "already here"
        print(f"{name}: {state}, {size / 1e6:.1f} MB in {where}")
    return 1 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per model: where its weights are found, in the separator's lookup order."""
    from separator_svc.config import default_hub_cache

    weights = WeightCache(FetchConfig.from_env(offline=True))
    model_dir = args.model_dir or (Path(os.environ["DEMUCS_MODEL_DIR"]) if os.environ.get("DEMUCS_MODEL_DIR") else None)
    hub = default_hub_cache()
    names = sorted(weights.catalog.bags) if args.all else [n for n in LISTED if n in weights.catalog.bags]
    names += [n for n in weights.local_models() if n not in names]
    print(f"{'model':<14} {'where':<12} path")
    for name in names:
        where, path = _where(name, weights, model_dir, hub)
        print(f"{name:<14} {where:<12} {path}")
    print(f"(cache: {weights.folder}; remote: {weights.config.remote_url})")
    return 0


def _where(name: str, weights: WeightCache, model_dir: Path | None, hub: Path) -> tuple[str, str]:
    """The first place the separator would load `name` from, without loading it."""
    if model_dir is not None and (model_dir / f"{name}.yaml").is_file():
        return "model dir", str(model_dir)
    folder = hub / f"models--adefossez--{_hf_repo_name(name)}"
    if folder.is_dir():
        return "hub cache", str(folder)
    if weights.is_local(name):
        sigs = weights.catalog.signatures(name)
        size = sum(weights.path(s).stat().st_size for s in sigs)
        return "torch cache", f"{weights.folder} ({len(sigs)} file(s), {size / 1e6:.1f} MB)"
    return "not local", "tabagent models pull " + name


def _hf_repo_name(name: str) -> str:
    """demucs.hf.hf_repo_name (restated: importing demucs pulls in torch, seconds for a listing)."""
    if name == "htdemucs":
        return "HTDemucs"
    if name.startswith("htdemucs_"):
        return "HTDemucs-" + name[len("htdemucs_"):]
    return "Demucs-" + name
