"""A job's files on the shared data volume: its upload, each attempt's work folder, its artifacts.

    jobs/<id>/upload          the upload, while the job is queued or running
    jobs/<id>/run<n>/         the n-th start's working files (the chain writes here)
    jobs/<id>/artifacts/      a done job's results, moved there as it is recorded done
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway import artifacts as artifact_files
from gateway.retention import remove_path
from gateway.store import DONE

UPLOAD = "upload"
ARTIFACTS = "artifacts"
SHUTDOWN = "interrupted by a gateway shutdown"          # internal: the job goes back to the queue
LOST = "taken over or cancelled on another gateway"     # internal: the job is no longer ours


def collect(paths: list[Path], outdir: Path) -> list[dict[str, Any]]:
    """Move every artifact (video and stems are written beside the folder) into `outdir`."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for path in paths:
        target = outdir / path.name
        if path.resolve() != target.resolve():
            path.replace(target)
        files.append({"name": target.name, "path": f"{ARTIFACTS}/{target.name}",
                      "size": target.stat().st_size, "content_type": artifact_files.content_type(target.name)})
    return files


def clean_earlier_attempts(jobdir: Path, keep: str) -> None:
    """Remove what earlier attempts of a restarted job left (their work folders, artifacts)."""
    if not jobdir.is_dir():
        return
    for path in jobdir.iterdir():
        if path.name != UPLOAD and path.name != keep:
            remove_path(path)


def place_artifacts(source: Path, target: Path) -> None:
    """Move a finished attempt's artifacts folder to where the record points."""
    if target.exists():
        remove_path(target)
    source.replace(target)


def settle_files(jobdir: Path, workdir: Path, outcome: str) -> None:
    """What stays of a job's folder once this attempt ended.

    done: the artifacts; queued again (shutdown): the upload; lost to another replica:
    whatever the new owner keeps; failed or cancelled here: nothing.
    """
    remove_path(workdir)
    if outcome == DONE:
        (jobdir / UPLOAD).unlink(missing_ok=True)
    elif outcome not in (SHUTDOWN, LOST):
        remove_path(jobdir)
