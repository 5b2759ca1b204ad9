"""The pins: requirements.lock is exact, environment.yml agrees with it, and what is installed matches."""
import re
from importlib.metadata import metadata, version
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"requirements.lock line {line!r} is not an exact pin NAME==VERSION"
        pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_lock_pins_torch_2_13_0_exactly():
    assert lock_pins()["torch"] == "2.13.0"


def test_lock_has_no_forbidden_packages():
    assert not {"torchvision", "learn2learn", "opencv-python"} & set(lock_pins())


def test_environment_yml_lists_exactly_the_lock_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = {}
    for item in pip_section:
        if item.startswith("-e"):
            continue
        name, _, pinned = item.partition("==")
        env_pins[name.lower().replace("_", "-")] = pinned
    assert env_pins == lock_pins()


def test_every_top_level_requirement_is_pinned_in_the_lock():
    pins = lock_pins()
    for line in (ROOT / "requirements.in").read_text().splitlines():
        name = re.split(r"[=<>!~ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        if name and not name.startswith("#"):
            assert name in pins, f"{name} (requirements.in) has no pin in requirements.lock"


def test_installed_versions_are_the_pinned_ones():
    pins = lock_pins()
    for name in ("torch", "numpy", "opencv-python-headless", "matplotlib", "papermill", "nbval", "jupyterlab"):
        installed = version(name).split("+")[0]  # torch's CPU wheel is 2.13.0+cpu
        assert installed == pins[name], f"{name} {installed} is installed but requirements.lock pins {pins[name]}"


def test_every_pin_installs_on_the_first_python_3_11():
    """The README asks for Python 3.11, any release of it: no pinned package may need a later 3.11.x
    (a lock resolved on 3.11.7 once pinned soupsieve 4.1.3, which needs 3.11.5, and setup failed on 3.11.2)."""
    requires = {name: metadata(name)["Requires-Python"] for name in lock_pins()}
    too_new = {name: spec for name, spec in requires.items() if spec and "3.11.0" not in SpecifierSet(spec)}
    assert not too_new, f"pinned packages that need a later Python 3.11 than 3.11.0: {too_new}"
