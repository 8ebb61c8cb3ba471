"""Every venv CI builds comes from a lock: each dependency pinned to one version.

An unlocked resolution changes under the project whenever a dependency releases: on
2026-12-06 a new cryptography beside the old pyOpenSSL the resolver then picked broke the
import of every test-cloud service, so `up` failed on a fresh machine. These tests keep the
class closed: a lock that misses a pin, or drifts from the pins it was made from, fails here.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
MINICLOUD = ROOT / "ci" / "minicloud"
CONSTRAINTS = ROOT / "ci" / "constraints.txt"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)$")


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def locked(path: Path) -> dict[str, str]:
    """The lock's pins by canonical name; any line that is not `name==version` fails."""
    pins: dict[str, str] = {}
    for line in requirement_lines(path):
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not pinned to one version"
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins


@pytest.mark.parametrize("venv", ["openstack", "neutron"])
def test_each_test_cloud_venv_installs_from_a_lock_that_keeps_its_pins(venv: str) -> None:
    sys.path.insert(0, str(MINICLOUD))
    try:
        from layout import requirements
    finally:
        sys.path.remove(str(MINICLOUD))
    path, _ = requirements(venv)
    assert path == MINICLOUD / f"requirements-{venv}.lock"
    pins = locked(path)
    for line in requirement_lines(MINICLOUD / f"requirements-{venv}.txt"):
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in pins, f"{path.name} lacks {wanted.name}"
        assert wanted.specifier.contains(pins[name], prereleases=True), (
            f"{path.name} has {wanted.name}=={pins[name]}, requirements say {wanted.specifier}"
        )


def test_the_harness_ci_venv_is_constrained_to_versions_its_ranges_allow() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    for extra in ("dev", "mq"):
        wanted += project["optional-dependencies"][extra]
    pins = locked(CONSTRAINTS)
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"ci/constraints.txt lacks {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"ci/constraints.txt has {req.name}=={pins[name]}, pyproject says {req.specifier}"
        )


@pytest.mark.parametrize("script", ["test", "demo"])
def test_ci_scripts_install_the_harness_under_the_constraints(script: str) -> None:
    installs = [
        line
        for line in (ROOT / "ci" / script).read_text().splitlines()
        if re.search(r"\bpip install\b", line) and not line.lstrip().startswith("#")
    ]
    assert installs, f"ci/{script} installs nothing"
    for line in installs:
        assert "-c ci/constraints.txt" in line, f"ci/{script}: unconstrained install: {line}"
