"""Check fedhub's import contracts (``.importlinter``) over the whole ``fedhub`` namespace.

Run from the repository root, with the options of import-linter's ``lint-imports``::

    .venv/bin/python tools/lint_imports.py [--verbose] [--contract ID ...]

Why not plain ``lint-imports``: ``fedhub.extensions`` and ``fedhub.services`` live in
``extensions/`` and ``services/`` (setup.py's ``package_dir``). grimp, the graph builder under
import-linter, finds a root package's modules by walking the one folder that holds its
``__init__.py``, so ``lint-imports`` alone never sees those two packages: an import of
``fedhub.extensions.hub`` from core code is dropped from the graph, and every contract about
the extensions or the services passes without checking anything. Here grimp is told where
importlib finds each mapped package (the same answer in a checkout, an editable install and
an installed wheel) before the ordinary ``lint-imports`` command runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import grimp  # noqa: F401  (configures grimp's default settings, replaced below)
from grimp.adaptors.modulefinder import ModuleFinder
from grimp.adaptors.packagefinder import ImportLibPackageFinder
from grimp.application.config import settings
from importlinter.cli import lint_imports_command

ROOT = "fedhub"
# packages of the fedhub distribution that setup.py maps from another folder
MAPPED_PACKAGES = ("fedhub.extensions", "fedhub.services")


def package_folder(name: str) -> str:
    """The folder importlib loads ``name`` from."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not importable: install fedhub (make install) first")
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


class MappedPackageFinder(ImportLibPackageFinder):
    """The ``fedhub`` root spans its own folder and each mapped package's folder."""

    def determine_package_directories(self, package_name, file_system):
        folders = super().determine_package_directories(package_name, file_system)
        if package_name == ROOT:
            folders |= {package_folder(name) for name in MAPPED_PACKAGES}
        return folders


class MappedModuleFinder(ModuleFinder):
    """Names the modules of a mapped folder after its package (``extensions/hub`` is
    ``fedhub.extensions.hub``), as grimp does for the portions of a namespace package."""

    def find_package(self, package_name, package_directory, file_system):
        if package_name == ROOT:
            for name in MAPPED_PACKAGES:
                if os.path.realpath(package_directory) == package_folder(name):
                    package_name = name
        return super().find_package(package_name, package_directory, file_system)


def use_package_dirs() -> None:
    """Make every later ``grimp.build_graph("fedhub")`` see the mapped packages."""
    settings.configure(PACKAGE_FINDER=MappedPackageFinder(), MODULE_FINDER=MappedModuleFinder())


if __name__ == "__main__":
    use_package_dirs()
    # no cache: the whole graph builds in well under a second, and no cache folder is left
    # in the checkout
    lint_imports_command(["--no-cache", *sys.argv[1:]])
