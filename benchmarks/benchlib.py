"""What every benchmark script shares: sampling inputs and describing the machine.

The scripts run as ``python benchmarks/NAME.py``, which puts this folder on
the import path.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def spread(items: Sequence[T], count: int | None) -> list[T]:
    """``count`` items evenly spaced through the list: every source and length."""
    if count is None or count >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(1, count - 1))] for i in range(count)]


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(path: Path, results: object) -> None:
    """The results as indented JSON at ``path`` (folders made), and where they went."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results in {path}")
