"""The README's fresh-machine commands are what users and CI run, and the extras it and the errors name exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
# What the core install must not pull in: the light install's promise (torch alone is ~750 MB, CUDA builds GBs).
HEAVY = ("torch", "transformers", "httpx", "matplotlib", "ray", "playwright", "pytest")


def fresh_machine_commands() -> list[str]:
    return [line for line in README.splitlines() if line.startswith("python3 -m venv .venv && . .venv/bin/activate")]


def project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_first_command_is_a_plain_install_that_classifies():
    install, _ = fresh_machine_commands()[:2]
    assert " pip install -e . && textclass classify " in install
    assert "torch" not in install  # no pin, no extra: the core install classifies on its own


def test_ci_runs_the_readme_test_command():
    _, tests = fresh_machine_commands()[:2]
    command = tests.split("&& ", 2)[-1]  # after creating and activating the venv
    assert '-e ".[test]"' in command and "torch==2.13.0" in command and command.endswith("python -m pytest -q")
    assert command in CI.splitlines()


def test_core_dependencies_stay_light():
    names = [re.split(r"[\s<>=!;\[~]", dep, maxsplit=1)[0].lower() for dep in project()["dependencies"]]
    assert not set(names) & set(HEAVY), names
    assert {"onnxruntime", "onnx", "tokenizers", "safetensors", "numpy"} <= set(names)


def test_every_extra_named_exists():
    """Each `textclass[...]` in the README or in an error message is an extra pyproject.toml declares."""
    texts = [README] + [path.read_text(encoding="utf-8") for path in (ROOT / "src").rglob("*.py")]
    named = {extra for text in texts for group in re.findall(r"textclass\[([\w,-]+)\]", text)
             for extra in group.split(",")}  # fmt: skip
    assert {"torch", "train", "ray", "test"} <= named
    assert named <= set(project()["optional-dependencies"]), named


def test_ci_runs_the_light_install():
    """CI installs the package alone (no extra) into a second venv and runs the torch-free checks there, then again
    with every core dependency at its floor, which each one therefore needs (a `>=` lower bound)."""
    assert "bash .ci/light" in CI.splitlines() and "bash .ci/light floor" in CI.splitlines()
    light = (ROOT / ".ci" / "light").read_text(encoding="utf-8")
    assert '"$PY" -m pip install -q "${CONSTRAINTS[@]}" . pytest' in light.splitlines()
    assert all(re.search(r">=\d", dependency) for dependency in project()["dependencies"])
    assert "tests/test_snapshots.py" in light
