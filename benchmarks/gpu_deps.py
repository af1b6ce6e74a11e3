"""dltrain's run-time needs on a machine with PyTorch, as benchmarks/gpu_requirements.txt lists.

    python benchmarks/gpu_deps.py carried    # the carried requirements this Python does not meet
    python benchmarks/gpu_deps.py expected   # the expected ones it does not meet
    python benchmarks/gpu_deps.py versions   # what this Python has of each, and from where

Runs on the bare machine (before anything is installed), so it needs only the standard library
and the `packaging` that pip carries.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # not installed yet: pip's own copy
    from pip._vendor.packaging.requirements import Requirement

LIST = Path(__file__).with_name("gpu_requirements.txt")
BLOCKS = ("carried", "expected")  # the list's blocks, each under a comment line naming it


def requirements(block: str) -> list[Requirement]:
    """The requirements of one block of the list."""
    found, current = [], None
    for line in LIST.read_text().splitlines():
        words = line.lstrip("# ").replace(":", " ").split()
        if line.startswith("#") and words and words[0] in BLOCKS:
            current = words[0]
        elif line.strip() and not line.startswith("#") and current == block:
            found.append(Requirement(line.strip()))
    return found


def installed(requirement: Requirement) -> str | None:
    """The installed version of the requirement's distribution, if any."""
    try:
        return metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return None


def unmet(block: str) -> list[Requirement]:
    """The requirements of `block` that are absent or of a version outside their range."""
    return [
        r
        for r in requirements(block)
        if (version := installed(r)) is None or not r.specifier.contains(version, prereleases=True)
    ]


def versions() -> list[str]:
    """One line per requirement: name, installed version (or absent), and where it lies."""
    lines = []
    for block in BLOCKS:
        for r in requirements(block):
            version = installed(r)
            where = metadata.distribution(r.name).locate_file("") if version else ""
            lines.append(f"{r.name:<24} {version or 'absent':<12} {where}")
    return lines


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "versions"
    lines = versions() if command == "versions" else [str(r) for r in unmet(command)]
    if lines:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
