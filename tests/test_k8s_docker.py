"""Dockerfiles per service: structure, non-root user, the module and extras they install exist.

No Docker engine runs here, so these read the Dockerfiles as text and check them against
the repository: pyproject.toml's extras, scripts/install.sh's pins, k8s/services.yaml.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from test_k8s import ROOT, SERVICES

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, rest = pending.partition(" ")
        lines.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return lines


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions per build stage; stage 0 holds the global ARGs before the first FROM."""
    out: list[list[tuple[str, str]]] = [[]]
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            out.append([])
        out[-1].append((keyword, rest))
    return out


def resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def arg_defaults(path: Path) -> dict[str, str]:
    found = {}
    for keyword, rest in instructions(path):
        if keyword == "ARG" and "=" in rest:
            key, _, val = rest.partition("=")
            found[key] = val.strip('"')
    return found


def pins(text: str, package: str) -> set[str]:
    return set(re.findall(rf"{re.escape(package)}==([0-9][0-9.]*)", text))


def dockerfile(name: str) -> Path:
    return ROOT / SERVICES[name]["dockerfile"]


@pytest.mark.parametrize("name", list(SERVICES))
def test_dockerfile_structure(name: str) -> None:
    path = dockerfile(name)
    facts = SERVICES[name]
    args = arg_defaults(path)
    all_stages = stages(path)
    final = all_stages[-1]
    assert len(all_stages) >= 3, "multi-stage: build tools stay out of the runtime image"

    base = resolve(final[0][1].split()[0], args)
    if facts["gpu"] and facts.get("cuda_from") != "pip":
        assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-cudnn-runtime-ubuntu22\.04", base), base
    else:  # CPU only, or CUDA and cuDNN from pip packages (onnxruntime-gpu[cuda,cudnn])
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base

    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] == "10001", "the image must run as uid 10001"
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert "--uid 10001" in runs and "--gid 10001" in runs

    cmds = [rest for keyword, rest in final if keyword == "CMD"]
    assert len(cmds) == 1
    cmd = json.loads(cmds[0])  # exec form: signals reach python, not a shell
    assert cmd == ["python", "-m", facts["module"]]
    assert (ROOT / facts["module"] / "__init__.py").exists()

    exposed = {int(p) for keyword, rest in final if keyword == "EXPOSE" for p in rest.split()}
    assert exposed == {p["port"] for p in facts["ports"].values()}

    for keyword, rest in instructions(path):
        if keyword == "COPY" and "--from" not in rest:
            for src in shlex.split(rest)[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"


@pytest.mark.parametrize("name", list(SERVICES))
def test_dockerfile_installs_the_services_extras(name: str) -> None:
    path = dockerfile(name)
    facts = SERVICES[name]
    text = " ".join(rest for keyword, rest in instructions(path) if keyword == "RUN")
    installs = re.findall(r'pip install "?\.\[([\w,]+)\]"?', text)
    assert len(installs) == 1, f"one `pip install .[extras]` in {path.name}"
    extras = installs[0].split(",")
    assert facts["extra"] in extras
    assert set(extras) <= {facts["extra"], facts.get("extra_optional")} - {None}
    for extra in extras:
        assert extra in EXTRAS, f"pyproject.toml has no [{extra}] extra"
    torch_pin = next(pins(r, "torch") for extra in EXTRAS.values() for r in extra if r.startswith("torch=="))
    needs_torch = any(r.startswith("torch") for extra in extras for r in EXTRAS[extra])
    if needs_torch:
        # The CUDA wheel goes in first, at exactly the version the extras pin.
        assert resolve(text, arg_defaults(path)).count("torch==") == 1
        assert pins(resolve(text, arg_defaults(path)), "torch") == torch_pin
        assert "download.pytorch.org/whl/cu12" in arg_defaults(path)["TORCH_INDEX_URL"]
    else:
        everything = " ".join(rest for _, rest in instructions(path))
        assert "torch" not in everything, f"{path.name} must not install torch"


def test_transcriber_gpu_build_swaps_in_onnxruntime_gpu() -> None:
    """The default image keeps the CPU build; ONNXRUNTIME=onnxruntime-gpu[cuda,cudnn] replaces it."""
    path = dockerfile("transcriber")
    args = arg_defaults(path)
    assert args["ONNXRUNTIME"] == "onnxruntime"
    text = " ".join(r for k, r in instructions(path) if k == "RUN")
    assert 'if [ "${ONNXRUNTIME}" != "onnxruntime" ]' in text
    assert "pip uninstall -y onnxruntime && pip install \"${ONNXRUNTIME}\"" in text
    assert 'ONNXRUNTIME="onnxruntime-gpu[cuda,cudnn]>=1.21"' in path.read_text()  # the documented build
    assert SERVICES["transcriber"]["cuda_from"] == "pip"


def test_transcriber_installs_basic_pitch_like_install_sh() -> None:
    path = dockerfile("transcriber")
    text = resolve(" ".join(r for k, r in instructions(path) if k == "RUN"), arg_defaults(path))
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert re.search(r"pip install --no-deps \"?basic-pitch==", text)
    assert pins(text, "basic-pitch") == pins(script, "basic-pitch") != set()


def _requires(dist: str, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    out = []
    for raw in metadata.requires(dist) or []:
        req = Requirement(raw)
        envs = [{"extra": e} for e in extras] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(env) for env in envs):
            out.append(req)
    return out


def closure(requirements: list[str]) -> set[str]:
    """Every installed distribution `requirements` pull in (names normalised)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        try:
            todo.extend(_requires(req.name, frozenset(req.extras)))
        except metadata.PackageNotFoundError:
            continue  # not installed here (platform-specific); nothing to follow
    return seen


def test_gateway_image_never_pulls_torch() -> None:
    deps = closure(PYPROJECT["project"]["dependencies"] + EXTRAS["gateway"])
    assert "fastapi" in deps and "numpy" in deps  # the walk really followed the metadata
    heavy = deps & {"torch", "tensorflow", "onnxruntime", "demucs", "diffusers", "transformers"}
    assert not heavy, f"the gateway extra pulls in {sorted(heavy)}"


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "**/__pycache__"):
        assert entry in ignored
    copied = {src for name in SERVICES for k, rest in instructions(dockerfile(name))
              if k == "COPY" and "--from" not in rest for src in shlex.split(rest)[:-1]}
    assert not copied & set(ignored), "a COPY source is excluded from the build context"


@pytest.mark.parametrize("name", list(SERVICES))
def test_cmd_module_runs(name: str) -> None:
    """`python -m <module>` needs a __main__ that reads the config and sets up logging."""
    module = SERVICES[name]["module"]
    if importlib.util.find_spec(f"{module}.__main__") is None:
        pytest.skip(f"{module}/__main__.py does not exist yet")
    source = (ROOT / module / "__main__.py").read_text()
    compile(source, f"{module}/__main__.py", "exec")
    assert "from_env(" in source and "logging." in source, f"{module}/__main__.py"
