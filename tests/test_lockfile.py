"""requirements.lock (what the image installs, `--require-hashes`) covers pyproject.toml:
every runtime dependency is pinned at a version its specifier allows, the packages its
extras bring in are pinned too, and every pin carries hashes. `make lock` regenerates it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent
LOCK = ROOT / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)")


def pins() -> dict[str, tuple[Version, int]]:
    """Each pinned name and its version, with how many hashes follow it."""
    out: dict[str, tuple[Version, int]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            out[current] = (Version(match[2]), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = out[current]
            out[current] = (version, hashes + 1)
    return out


def dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_dependency_is_pinned_at_a_version_it_allows():
    locked = pins()
    for requirement in dependencies():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        version, _hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} does not satisfy {requirement}: run `make lock`")


def test_what_the_extras_bring_in_is_pinned_too():
    locked = pins()
    for requirement in dependencies():
        if not requirement.extras:
            continue
        try:
            declared = distribution(requirement.name).requires or []
        except PackageNotFoundError:  # pragma: no cover - the suite runs with the project installed
            continue
        for text in declared:
            needed = Requirement(text)
            if needed.marker is None or not any(
                needed.marker.evaluate({"extra": extra}) for extra in requirement.extras
            ):
                continue
            if needed.marker.evaluate({"extra": ""}):
                continue  # not an extra's: a plain dependency (under a platform marker)
            assert canonicalize_name(needed.name) in locked, (
                f"{requirement.name}[{','.join(sorted(requirement.extras))}] needs {needed.name}: run `make lock`")


def test_every_pin_has_hashes_and_nothing_is_unpinned():
    locked = pins()
    assert len(locked) > len(dependencies())
    assert all(hashes >= 1 for _version, hashes in locked.values()), [n for n, (_v, h) in locked.items() if not h]
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            assert _PIN.match(line), f"not an exact pin: {line}"


def test_the_image_installs_the_lock_with_hashes_required():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock" in dockerfile
    assert re.search(r"pip install --require-hashes --no-deps -r requirements\.lock", dockerfile)
    assert "pyproject.toml'))['project']['dependencies']" not in dockerfile  # the unpinned way is gone
