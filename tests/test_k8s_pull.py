"""The optional pull-models component: an init container fetches Demucs weights with `tabagent models pull`.

The base and overlays never fetch at pod start (tests/test_k8s.py); an overlay that adds
k8s/components/pull-models gets an init container running the separator image's own CLI
into the pod's /cache, and a separator that reads the same torch cache. Rendered from a
copy of k8s/ with the component added to each overlay, validated offline and strictly.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_k8s import FACTS, K8S, container, env_of, kubectl, of_kind

from launcher import cli
from separator_svc.fetch import torch_checkpoints_dir


def render_with_component(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / "overlays" / overlay / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "\ncomponents:\n  - ../../components/pull-models\n")
    out = subprocess.run([kubectl(), "kustomize", str(kustomization.parent)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("overlay", ["local", "gpu"])
def test_pull_component_adds_a_locked_down_init_container(tmp_path: Path, overlay: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes_validate

    docs = render_with_component(tmp_path, overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, FACTS["kubernetes_version"], strict=True)
    deps = of_kind(docs, "Deployment")
    pod = deps["separator"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    main = container(deps["separator"])
    assert init["image"] == main["image"]              # the separator's own image, same tag
    assert init["command"][:3] == ["tabagent", "models", "pull"]
    args = [a for a in init["command"][3:] if not a.startswith("-")]
    assert args == ["htdemucs_6s"]
    init_env = {e["name"]: e["value"] for e in init["env"]}
    assert init_env["TABAGENT_OFFLINE"] == "0"
    # The separator looks where the init container wrote, and itself stays offline.
    assert env_of(deps["separator"])["TORCH_HOME"]["value"] == init_env["TORCH_HOME"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("tabagent-env"))
    assert cm["data"]["TABAGENT_OFFLINE"] == "1"
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert init_env["TORCH_HOME"].startswith("/cache/") and "emptyDir" in volumes[mounts["/cache"]]
    sec = init["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"]["drop"] == ["ALL"]
    assert init["resources"]["limits"] and init["resources"]["requests"]
    # Other services are untouched.
    for name, dep in deps.items():
        if name != "separator":
            assert not dep["spec"]["template"]["spec"].get("initContainers"), name
    # The torch cache the separator would read under that environment is the init container's.
    monkeypatch.setenv("TORCH_HOME", init_env["TORCH_HOME"])
    assert torch_checkpoints_dir() == Path(init_env["TORCH_HOME"]) / "hub" / "checkpoints"


def test_the_init_command_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """`tabagent models pull --help` exists with the flags the component and the Dockerfile use."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["models", "pull", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--quiet", "--model-dir", "--offline"):
        assert flag in text


def test_separator_image_can_bake_weights_with_the_cli() -> None:
    """docker build --build-arg DEMUCS_MODELS=... runs `tabagent models pull` into the image's torch cache."""
    from test_k8s_docker import dockerfile, stages

    build, final = stages(dockerfile("separator"))[1:][0], stages(dockerfile("separator"))[-1]
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "tabagent models pull" in runs and "TORCH_HOME=/opt/torch" in runs
    assert ("COPY", "--from=build /opt/torch /opt/torch") in final
    envs = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "TORCH_HOME=/opt/torch" in envs
