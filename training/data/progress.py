"""Progress of long data jobs: a count, a rate and an ETA on standard error.

Every long job here commits as it goes and skips what is already done, so
progress is also the resume story: an interrupted run reports how far it got,
and the next run's bar starts with the skipped part already counted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} {percentage:3.0f}% ETA {remaining} ({rate_fmt})"


@dataclass
class Progress:
    """A bar that long jobs tick; ``enabled=False`` (tests, --quiet) prints nothing."""

    desc: str
    total: int
    unit: str = "item"
    enabled: bool = True
    file: Any = None

    def __post_init__(self) -> None:
        self._bar: Any = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit,
                             file=self.file or sys.stderr, bar_format=BAR_FORMAT,
                             mininterval=0.5, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Tick = Callable[[int], None]  # called after each unit of work with the count done so far
