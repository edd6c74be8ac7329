"""`python -m gateway`: run the gateway (gRPC and the HTTP API) with settings from the environment."""

import asyncio
import logging
import os

from gateway.config import GatewayConfig
from gateway.main import serve


def main() -> None:
    logging.basicConfig(level=os.environ.get("TABAGENT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(GatewayConfig.from_env()))


if __name__ == "__main__":
    main()
