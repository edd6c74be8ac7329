"""Run the separator: `python -m separator_svc [--model-dir DIR]` (settings in config.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from separator_svc.config import SeparatorConfig
from separator_svc.server import serve


def main(argv: list[str] | None = None) -> int:
    """Read the configuration, set up logging and serve until a signal."""
    parser = argparse.ArgumentParser(prog="python -m separator_svc", description=__doc__)
    parser.add_argument(
        "--model-dir", type=Path, default=None,
        help="demucs local repo folder (<sig>.th + <name>.yaml); overrides DEMUCS_MODEL_DIR",
    )
    parser.add_argument(
        "--offline", action="store_true",
        help="never download weights (as TABAGENT_OFFLINE=1): use local ones or the DSP fallback",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("TABAGENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = SeparatorConfig.from_env(model_dir=args.model_dir, offline=args.offline or None)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
