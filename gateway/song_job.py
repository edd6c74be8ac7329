"""A song job: spool the upload, decode it, run the chain, write the artifacts.

Shared by the gRPC `Gateway.Process` handler and the HTTP API, so both behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from gateway import artifacts
from gateway.chain import Chain, Stubs
from gateway.config import GatewayConfig
from gateway.decode import Spool, UploadDecoder
from gateway.spec import SongSpec
from tabagent.v1 import gateway_pb2

log = logging.getLogger(__name__)


class SongJob:
    """One song from upload to artifacts, in its own working directory.

    The caller writes the upload into `spool` (from any source) and iterates `events()`;
    the working directory and the spooled upload are removed by `close()` whatever happens,
    unless `keep_dir` (the HTTP job store keeps artifacts).
    """

    def __init__(self, config: GatewayConfig, stubs: Stubs, spec: SongSpec, workdir: Path,
                 timeout: float | None = None, keep_dir: bool = False) -> None:
        self.config = config
        self.stubs = stubs
        self.spec = spec
        self.workdir = workdir
        self.keep_dir = keep_dir
        workdir.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(str(workdir), config.max_upload_bytes)
        self.decoder = UploadDecoder(self.spool, max_seconds=config.max_seconds)
        self.chain = Chain(stubs, spec, workdir, timeout or config.stage_timeout, config.failover_retries)
        self.chain.expected_seconds = lambda: self.decoder.stats.declared_seconds or 0.0
        self.artifact_paths: list[Path] = []

    @property
    def result(self):  # noqa: ANN201 - SongResult
        return self.chain.result

    async def events(self) -> AsyncIterator[gateway_pb2.ProcessResponse]:
        """Run the song; yields the chain's events, then writes the artifacts."""
        started = time.monotonic()
        async for event in self.chain.run(self.decoder.blocks()):
            yield event
        result = self.chain.result
        stats = self.decoder.stats
        result.source = {
            "filename": self.spec.filename,
            "title": self.spec.title,
            "container": stats.container,
            "codec": stats.codec,
            "sample_rate": stats.source_rate,
            "channels": stats.source_channels,
            "duration": round(stats.seconds, 4),
        }
        result.timings["chain"] = time.monotonic() - started
        t0 = time.monotonic()
        self.artifact_paths = await asyncio.to_thread(
            artifacts.write_all, result, self.workdir / "artifacts", self.spec.artifacts or None
        )
        result.timings["artifacts"] = time.monotonic() - t0
        # result.json was written before the artifacts' own timing was known; rewrite it.
        if any(p.name == "result.json" for p in self.artifact_paths):
            from tabagent import result as result_doc

            (self.workdir / "artifacts" / "result.json").write_text(
                result_doc.dumps(artifacts.result_json(result)), encoding="utf-8")

    def summary(self) -> gateway_pb2.ProcessSummary:
        result = self.chain.result
        return gateway_pb2.ProcessSummary(
            job_id=self.spec.song_id,
            seconds=result.seconds,
            wall_seconds=result.wall_seconds,
            notes={name: len(p.notes) for name, p in result.parts.items()},
            models=list(result.models.values()),
            artifacts=[p.name for p in self.artifact_paths],
        )

    def close(self) -> None:
        """Stop decoding and remove temporary files."""
        self.decoder.stop()
        self.spool.close()
        if not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
