"""The `tabagent` command: run a song (or a batch) through the chain, start the services, finger notes, keys."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher import batch_cli, fingering_cli
from tabagent.errors import InvalidInput, TabAgentError
from tabagent.options import STYLE_NAMES

log = logging.getLogger("tabagent")


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """Parse repeated `part=value` options; a bare value applies to guitar."""
    out: dict[str, str] = {}
    for v in values or []:
        part, sep, value = v.partition("=")
        if not sep:
            part, value = "guitar", v
        if not value:
            raise SystemExit(f"--{what} {v!r}: expected PART=VALUE")
        out[part.strip()] = value.strip()
    return out


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}") from None


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="turn a song into tabs (and a video)",
                       description="Separate a song, transcribe guitar and bass, write tabs, MIDI, "
                                   "result.json and a play-along video. Without addresses the whole "
                                   "chain runs here over loopback gRPC.")
    p.add_argument("song", type=Path, help="audio file (anything FFmpeg reads)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    p.add_argument("--gateway", default=os.environ.get("GATEWAY_ADDR", ""),
                   help="address of a running gateway (else one runs in this process)")
    p.add_argument("--separator-addr", default=os.environ.get("SEPARATOR_ADDR", ""))
    p.add_argument("--transcriber-addr", default=os.environ.get("TRANSCRIBER_ADDR", ""))
    p.add_argument("--video-addr", default=os.environ.get("VIDEO_ADDR", ""))
    p.add_argument("--parts", default="guitar,bass",
                   help="parts to transcribe: guitar, bass, or lead,rhythm instead of guitar (default: guitar,bass)")
    p.add_argument("--tuning", action="append", metavar="PART=TUNING",
                   help="e.g. guitar=drop_d, bass=28,33,38,43, guitar=D2,A2,D3,G3,B3,E4")
    p.add_argument("--capo", action="append", metavar="PART=FRET", help="e.g. guitar=2 (0-12)")
    p.add_argument("--model", default="",
                   help="separator model: auto (default: htdemucs_6s when available), htdemucs_6s, htdemucs, "
                        "htdemucs_ft, dsp")
    p.add_argument("--offline", action="store_true",
                   help="never download separator weights (as TABAGENT_OFFLINE=1; embedded chain)")
    p.add_argument("--model-dir", default=os.environ.get("DEMUCS_MODEL_DIR", ""),
                   help="local Demucs model folder (embedded chain)")
    p.add_argument("--no-video", action="store_true", help="skip video.mp4")
    p.add_argument("--style", default="guitar_hero",
                   help=f"video style preset: {', '.join(STYLE_NAMES)} (checked even with --no-video)")
    p.add_argument("--size", type=_size, default=(1280, 720), help="video size (default 1280x720)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--stems", action="store_true", help="also write the separated stems")
    p.add_argument("--title", default="")
    p.add_argument("--timeout", type=float, default=None, help="deadline for the whole song, seconds")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_run)


async def _run_song(args: argparse.Namespace) -> int:
    from launcher.progress import StageBars
    from tabagent.client import Artifact, AsyncClient, process_config

    if not args.song.is_file():
        raise InvalidInput(f"{args.song}: no such file")
    # Checked here (tabagent.options, as the SDK and HTTP API do) before the file is probed
    # and before any model starts.
    config = process_config(
        filename=str(args.song), parts=args.parts.split(","), tuning=_pairs(args.tuning, "tuning"),
        capo=_pairs(args.capo, "capo"),
        video=not args.no_video, style=args.style, size=args.size, fps=args.fps,
        separator_model=args.model, return_stems=args.stems, title=args.title or args.song.stem)
    await asyncio.to_thread(_check_input, args.song, remote=bool(args.gateway))
    bars = StageBars(enabled=None if not args.quiet else False)
    local = None
    address = args.gateway
    if not address:
        from launcher.embedded import LocalChain

        download_bar = None
        if not args.quiet:
            try:
                from separator_svc.models_cli import download_bars
            except ImportError:  # pragma: no cover - an install without the separator
                pass
            else:
                download_bar = download_bars()
        local = LocalChain(
            separator_addr=args.separator_addr, transcriber_addr=args.transcriber_addr,
            video_addr=args.video_addr, video=not args.no_video, separator_model=args.model,
            model_dir=args.model_dir or None, offline=args.offline, progress=download_bar)
        t0 = time.monotonic()
        if not args.quiet:
            print("starting the chain (loading and warming models)...", file=sys.stderr, flush=True)
        await local.start()
        if not args.quiet:
            print(f"chain ready in {time.monotonic() - t0:.1f} s: {local.describe()}", file=sys.stderr, flush=True)
        address = local.gateway_addr
    written: list[Artifact] = []
    try:
        async with AsyncClient(address, timeout=args.timeout) as client:
            async for event in client.process(args.song, config, args.out):
                if not args.quiet:
                    bars.update(event)
                if isinstance(event, Artifact):
                    written.append(event)
    finally:
        bars.close()
        if local is not None:
            await local.stop()
    for a in written:
        print(f"{a.path}  ({a.size:,} bytes)")
    return 0


def _check_input(song: Path, remote: bool) -> None:
    """Refuse a file the gateway would refuse, before any model is loaded: the checks of the
    HTTP API (size, empty, text, not decodable audio, declared length, truncation).

    With a remote gateway its own limits apply, so only whether the file is audio is checked.
    """
    from gateway.config import GatewayConfig
    from gateway.upload import probe, too_large

    config = GatewayConfig.from_env()
    if not remote and config.max_upload_bytes and song.stat().st_size > config.max_upload_bytes:
        raise too_large(config.max_upload_bytes)
    probe(song, 0.0 if remote else config.max_seconds)


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run_song(args))
    except TabAgentError as exc:
        print(f"tabagent: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInput) else 1
    except KeyboardInterrupt:
        print("tabagent: interrupted", file=sys.stderr)
        return 130


def _add_up(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start gateway + separator + transcriber + video as four local processes",
                       description="Every process listens on --host only (loopback by default); the model "
                                   "services answer only the gateway (a token made for the run, or "
                                   "TABAGENT_SERVICE_TOKEN); TABAGENT_API_KEY guards the gateway's gRPC and "
                                   "HTTP APIs.")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--host", default="127.0.0.1", help="where every process listens (default: loopback)")
    p.set_defaults(func=_cmd_up)


def _cmd_up(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    host = args.host
    # Every port on `host` (loopback unless asked otherwise), and the services answer the
    # gateway only: a token made for this run unless TABAGENT_SERVICE_TOKEN is set.
    for name in ("SEPARATOR_HOST", "TRANSCRIBER_HOST", "VIDEO_HOST", "GATEWAY_HOST"):
        env.setdefault(name, host)
    if not env.get("TABAGENT_SERVICE_TOKEN"):
        env["TABAGENT_SERVICE_TOKEN"] = secrets.token_urlsafe(32)
    env.setdefault("SEPARATOR_ADDR", f"{host}:{env.get('SEPARATOR_PORT', '50051')}")
    env.setdefault("TRANSCRIBER_ADDR", f"{host}:{env.get('TRANSCRIBER_PORT', '50052')}")
    if not args.no_video:
        env.setdefault("VIDEO_ADDR", f"{host}:{env.get('VIDEO_PORT', '50053')}")
    modules = ["separator_svc", "transcriber_svc"] + ([] if args.no_video else ["video_svc"]) + ["gateway"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for module in modules:
        procs[module] = subprocess.Popen([sys.executable, "-m", module], env=env)
        print(f"started {module} (pid {procs[module].pid})", file=sys.stderr)
    print(f"gateway gRPC on {env['GATEWAY_HOST']}:{env.get('GATEWAY_PORT', '50050')}, HTTP on "
          f"{env['GATEWAY_HOST']}:{env.get('GATEWAY_HTTP_PORT', '8080')};"
          " Ctrl-C stops everything", file=sys.stderr)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = 0
    try:
        while not stop:
            for module, p in procs.items():
                if p.poll() is not None:
                    print(f"{module} exited with {p.returncode}; stopping", file=sys.stderr)
                    code = p.returncode or 1
                    stop = True
            time.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 40
        for p in procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tabagent` console script."""
    # File names and titles of any script print on any terminal (escaped where it cannot show them).
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    parser = argparse.ArgumentParser(prog="tabagent", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_up(sub)
    fingering_cli.add_parser(sub)
    try:  # `tabagent models pull|list` lives with the separator that reads the weights
        from separator_svc import models_cli
    except ImportError:  # pragma: no cover - an install without the separator
        models_cli = None  # type: ignore[assignment]
    if models_cli is not None:
        models_cli.add_parser(sub)
    batch_cli.add_parser(sub)
    sub.add_parser("keys", help="manage the gateway's API keys file: keys add USER [--admin], list, remove USER")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:  # gateway/keys.py owns that command line
        from gateway import keys

        return keys.main(argv[1:])
    args = parser.parse_args(argv)
    level = os.environ.get("TABAGENT_LOG_LEVEL") or ("DEBUG" if args.verbose > 1 else "INFO" if args.verbose else "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
