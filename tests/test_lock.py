"""The lock files are the only source of versions: complete, exact, and in step with pyproject.toml."""
from __future__ import annotations

import importlib
import re
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers.paths import ROOT

LOCK = ROOT / "locks" / "requirements.txt"
LOCK_NODEPS = ROOT / "locks" / "requirements-nodeps.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m[1])
            assert name not in pins, f"{path.name}: {name} pinned twice"
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{path.name}: {name} has no hash"
            pins[name] = m[2]
        else:
            assert not re.match(r"^[A-Za-z0-9]", line), f"{path.name}: not an exact pin with hashes: {line!r}"
    return pins


def _installed_extras() -> list[str]:
    script = (ROOT / "scripts" / "lock.sh").read_text()
    return re.search(r"^EXTRAS=\(([^)]*)\)", script, re.M)[1].split()


def test_locks_pin_every_package_exactly_with_hashes_and_once():
    main, nodeps = _pins(LOCK), _pins(LOCK_NODEPS)
    assert not set(main) & set(nodeps), f"in both lock files: {sorted(set(main) & set(nodeps))}"
    assert len(main) > 150


def test_torch_family_is_the_measured_abi_compatible_release():
    main = _pins(LOCK)
    assert (main["torch"], main["torchaudio"], main["torchvision"]) == ("2.11.0", "2.11.0", "0.26.0")


def test_pyproject_ranges_admit_the_lock_and_exclude_the_broken_torchaudio():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    main = _pins(LOCK)
    extras = _installed_extras()
    assert set(extras) <= set(project["optional-dependencies"])
    env = default_environment()
    specs = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    for spec in specs:
        req = Requirement(spec)
        if req.marker and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in main, f"pyproject requires {req} but the lock has no {name}: run `make lock`"
        assert req.specifier.contains(main[name], prereleases=True), f"lock {name}=={main[name]} outside {req}"
    torchaudio = next(Requirement(s) for s in project["dependencies"] if s.startswith("torchaudio"))
    assert not torchaudio.specifier.contains("2.11.1")


def test_nodeps_lock_follows_its_input():
    wanted = {canonicalize_name(m[1]): m[2] for m in re.finditer(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", (ROOT / "locks" / "nodeps.in").read_text(), re.M)}
    assert _pins(LOCK_NODEPS) == wanted


def test_installed_environment_equals_the_lock():
    importlib.import_module("setuptools")  # as CI's earlier tests do: it adds setuptools/_vendor to sys.path
    locked = {**_pins(LOCK), **_pins(LOCK_NODEPS)}
    # Only what is installed in the environment's site-packages: once imported, setuptools puts its own
    # vendored copies (setuptools/_vendor/*.dist-info) on sys.path, and they are not installed packages.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)}
    installed.pop("sentiflow", None)
    assert installed == locked


def test_lock_is_closed_under_dependencies():
    """Every requirement of every locked package (markers evaluated here) is satisfied inside the lock."""
    main = _pins(LOCK)
    env = default_environment()
    missing = []
    for name in main:
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker and not req.marker.evaluate({**env, "extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in main or not req.specifier.contains(main[dep], prereleases=True):
                missing.append(f"{name} needs {req}, lock has {main.get(dep, 'nothing')}")
    assert not missing, missing
