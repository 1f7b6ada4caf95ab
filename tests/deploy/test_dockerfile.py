"""The image (Dockerfile) and the derived-project example (deploy/docker/project.Dockerfile).

No container daemon runs here, so nothing is built: hadolint lints both files, and dockerfile-parse reads
them for what the image promises (deploy/README.md): built in stages, the wheel installed, a user without
privileges, orch as the entrypoint, the OCI labels, pinned bases, no secret baked in.
"""

from __future__ import annotations

import io
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from .conftest import DEPLOY, ROOT, tool

IMAGE = ROOT / "Dockerfile"
PROJECT_IMAGE = DEPLOY / "docker" / "project.Dockerfile"
OCI_LABELS = {f"org.opencontainers.image.{name}" for name in
              ("title", "description", "source", "version", "revision", "licenses")}


def parsed(path: Path) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))


def instructions(path: Path) -> list[dict[str, Any]]:
    """The instructions, without comments."""
    return [i for i in parsed(path).structure if i["instruction"] != "COMMENT"]


def stages(path: Path) -> list[list[dict[str, Any]]]:
    """The instructions of each stage (FROM ... up to the next FROM)."""
    out: list[list[dict[str, Any]]] = []
    for ins in instructions(path):
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


@pytest.mark.parametrize("path", [IMAGE, PROJECT_IMAGE], ids=lambda p: p.name)
def test_hadolint_finds_nothing(path: Path) -> None:
    hadolint = tool("hadolint")
    done = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The control: the linter runs and reports (root user, unpinned latest base, pip without versions)."""
    hadolint = tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install orch\nUSER root\n")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert {"DL3007", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", done.stdout))


def test_built_in_stages_with_pinned_slim_python_bases() -> None:
    froms = [s[0]["value"].split()[0] for s in stages(IMAGE)]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    for image in froms:
        name, _, tag = image.partition(":")
        assert name == "python" and re.fullmatch(r"3\.1[1-9](\.\d+)?-slim(-\w+)?", tag), image


def test_the_runtime_stage_installs_the_wheel_only_from_the_build_stage() -> None:
    runtime = stages(IMAGE)[-1]
    runs = [i["value"] for i in runtime if i["instruction"] == "RUN"]
    install = next(r for r in runs if "pip install" in r)
    assert "from=build" in install and "--no-index" in install and "orch-" in install and ".whl" in install
    assert not [i for i in runtime if i["instruction"] in ("COPY", "ADD")], "no build input copied in"
    build = stages(IMAGE)[0]
    assert any("pip wheel" in i["value"] for i in build if i["instruction"] == "RUN")


def test_the_build_copies_exactly_the_packages_the_wheel_holds() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    copied = {source.rstrip("/") for i in stages(IMAGE)[0] if i["instruction"] == "COPY"
              for source in i["value"].split()[:-1] if not source.startswith("--")}
    assert set(packages["packages"]) | {"pyproject.toml", "README.md"} == copied
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert copied == allowed, ".dockerignore lets in exactly what the build copies"


def test_runs_as_a_numeric_non_root_user_with_orch_under_tini_as_entrypoint() -> None:
    runtime = stages(IMAGE)[-1]
    user = [i["value"] for i in runtime if i["instruction"] == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    entry = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"][-1]
    assert entry.replace(" ", "") == '["/usr/bin/tini","--","orch"]', "tini as PID 1, then orch"


def test_the_oci_labels_come_from_build_args_and_the_version_is_the_package_version() -> None:
    parser = parsed(IMAGE)
    assert OCI_LABELS <= set(parser.labels)
    args = {i["value"].split("=")[0]: i["value"].partition("=")[2] for i in stages(IMAGE)[-1]
            if i["instruction"] == "ARG"}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert args["VERSION"] == version, "ARG VERSION's default follows pyproject.toml"
    assert {"REVISION", "SOURCE"} <= set(args)
    assert parser.labels["org.opencontainers.image.licenses"] == "MIT"


SECRETISH = re.compile(r"(PASSWORD|TOKEN|SECRET|API_KEY|PRIVATE)", re.IGNORECASE)


@pytest.mark.parametrize("path", [IMAGE, PROJECT_IMAGE], ids=lambda p: p.name)
def test_no_secret_is_baked_in(path: Path) -> None:
    for ins in instructions(path):
        if ins["instruction"] in ("ENV", "ARG"):
            assert not SECRETISH.search(ins["value"]), ins["content"]


def test_the_derived_image_sets_the_project_and_keeps_local_state_out() -> None:
    structure = instructions(PROJECT_IMAGE)
    assert structure[0]["instruction"] in ("ARG", "FROM")
    assert any(i["instruction"] == "COPY" and i["value"].endswith("/project") for i in structure)
    assert any(i["instruction"] == "ENV" and "ORCH_PROJECT=/project" in i["value"] for i in structure)
    assert any(i["instruction"] == "RUN" and "validate" in i["value"] for i in structure)
    ignored = (DEPLOY / "docker" / "project.Dockerfile.dockerignore").read_text().split()
    assert {".orch", "secrets", ".env"} <= set(ignored), "the dev Redis password and token never reach an image"
