"""Run the video renderer: `python -m video_svc` (settings in config.py, from the environment)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from video_svc.config import VideoConfig
from video_svc.server import serve


def main(argv: list[str] | None = None) -> int:
    """Read the configuration, set up logging and serve until a signal."""
    parser = argparse.ArgumentParser(prog="python -m video_svc", description=__doc__)
    parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("TABAGENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = VideoConfig.from_env()
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
