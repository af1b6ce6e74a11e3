"""Import every module of a package so that their registrations run."""

import importlib
import pkgutil


def import_submodules(package_name: str, package_path: list[str]) -> None:
    """Import each module under a package path (adding a file is enough to register it)."""
    for module in pkgutil.iter_modules(package_path):
        importlib.import_module(f"{package_name}.{module.name}")
