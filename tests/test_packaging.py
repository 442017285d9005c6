"""Packaging: one version source (pyproject.toml, read back through the installed metadata), the PEP 561
marker shipped with the package, and a changelog entry for the version."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

import janusgen

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_the_installed_metadata():
    assert janusgen.__version__ == version("janusgen")
    assert janusgen.__version__ == read_configuration(ROOT / "pyproject.toml")["project"]["version"]


def test_no_module_restates_the_version():
    restating = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "janusgen").rglob("*.py"))
        if f'"{janusgen.__version__}"' in path.read_text(encoding="utf-8")
    ]
    assert restating == []


def test_py_typed_is_package_data():
    """setuptools' reading of pyproject.toml (what a wheel build uses) ships janusgen/py.typed."""
    assert (ROOT / "janusgen" / "py.typed").is_file()
    package_data = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["janusgen"]


def test_the_changelog_has_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## [{janusgen.__version__}]" in changelog
