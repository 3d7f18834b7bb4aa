"""The spool: calls kept on local disk until the database has them.

A call is written here before it is sent to the database and removed once the
database has committed it, so neither a database that goes away mid-write nor a
crash of this process loses it. Each call is one JSON file named by its call
id, written to a temporary name, fsync'd and renamed into place: a reader
sees a whole record or none. Storing a spooled call is idempotent (the store
skips a call id it already has), so replaying a file twice, from two threads
or two processes sharing the folder, stores the call once.

``Replayer`` is the background thread that retries spooled calls with
exponential backoff while the database is away, and at start-up for calls an
earlier process left behind. A call the database refuses for good (bad data,
not a lost connection) is moved to ``rejected/`` with the reason, never retried
in a loop and never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("voicedesk.store")

FORMAT = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class DatabaseUnavailable(Exception):
    """The database could not be reached or dropped the connection; worth retrying later."""


@dataclass(frozen=True)
class SpooledCall:
    call_id: str
    record: dict[str, Any]
    path: Path


class Spool:
    """A folder of pending calls, safe for many threads and processes at once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rejected = folder / "rejected"

    def put(self, call_id: str, record: dict[str, Any]) -> Path:
        """Write the call durably (file and folder entry fsync'd); replaces an earlier copy."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path_for(call_id)
        data = json.dumps({"format": FORMAT, "call_id": call_id, "record": record},
                          ensure_ascii=False, allow_nan=False).encode()
        _write_durably(path, data)
        return path

    def path_for(self, call_id: str) -> Path:
        name = call_id if _SAFE_NAME.fullmatch(call_id) else hashlib.sha256(
            call_id.encode()).hexdigest()
        return self.folder / f"{name}.json"

    def pending(self) -> list[SpooledCall]:
        """Spooled calls, oldest first. An unreadable file is moved to ``rejected/``."""
        if not self.folder.is_dir():
            return []
        files = []
        for path in self.folder.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                files.append((path.stat().st_mtime_ns, path))
        calls = []
        for _, path in sorted(files):
            try:
                data = json.loads(path.read_bytes())
                calls.append(SpooledCall(str(data["call_id"]), dict(data["record"]), path))
            except FileNotFoundError:
                continue  # stored and removed by another thread or process meanwhile
            except (ValueError, KeyError, TypeError) as exc:
                self.reject(path, f"unreadable spool file: {exc}")
        return calls

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json")) if self.folder.is_dir() else 0

    def remove(self, call_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(call_id).unlink()

    def reject(self, path: Path, reason: str) -> Path:
        """Move a file the database will never accept aside, with the reason beside it."""
        self.rejected.mkdir(parents=True, exist_ok=True)
        target = self.rejected / path.name
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return target
        _write_durably(target.with_suffix(".reason.txt"), reason.encode() + b"\n")
        log.error("call file %s was refused by the database and moved to %s: %s", path.name,
                  self.rejected, reason)
        return target


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Replayer:
    """Retries spooled calls in the background until the database has them all.

    ``store_one`` writes one spooled call idempotently and raises
    ``DatabaseUnavailable`` when the database is away (the call stays spooled)
    or any other exception when the database refuses the call (it is rejected).
    While the database is away the caller's thread does not wait on it: the
    store asks ``database_down`` and spools straight away.
    """

    def __init__(self, spool: Spool, store_one: Callable[[SpooledCall], None], *,
                 first_delay_s: float = 1.0, max_delay_s: float = 30.0) -> None:
        self.spool = spool
        self._store_one = store_one
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._drain_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._in_flight: set[str] = set()  # written by a caller's thread right now
        self._thread: threading.Thread | None = None
        self.down_since: float | None = None

    # ---- state shared with the store --------------------------------------------------
    @property
    def database_down(self) -> bool:
        return self.down_since is not None

    def mark_down(self, reason: str) -> None:
        with self._state_lock:
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
        if first:
            log.warning("database unavailable (%s); calls are kept in %s and retried every "
                        "%.0f-%.0f s", reason, self.spool.folder, self.first_delay_s,
                        self.max_delay_s)
        self._ensure_thread()

    def mark_up(self) -> None:
        with self._state_lock:
            was_down, self.down_since = self.down_since, None
        if was_down is not None:
            log.warning("database reachable again after %.1f s; storing spooled calls",
                        time.monotonic() - was_down)
            self.wake()

    @contextlib.contextmanager
    def in_flight(self, call_id: str) -> Any:
        """Keep the replayer off a call that a caller's thread is writing itself."""
        with self._state_lock:
            self._in_flight.add(call_id)
        try:
            yield
        finally:
            with self._state_lock:
                self._in_flight.discard(call_id)

    # ---- draining -------------------------------------------------------------------------
    def drain(self) -> int:
        """Store every spooled call the database takes now; returns how many are left."""
        with self._drain_lock:
            stored = 0
            for call in self.spool.pending():
                with self._state_lock:
                    if call.call_id in self._in_flight:
                        continue
                try:
                    self._store_one(call)
                except DatabaseUnavailable as exc:
                    self.mark_down(str(exc))
                    break
                except Exception as exc:  # refused for good: keep it aside, never loop on it
                    self.spool.reject(call.path, f"{type(exc).__name__}: {exc}")
                    continue
                self.spool.remove(call.call_id)
                stored += 1
                self.mark_up()
            left = len(self.spool)
            if stored:
                log.info("stored %d spooled call(s); %d left in %s", stored, left,
                            self.spool.folder)
            return left

    def wake(self) -> None:
        """Drain soon, on the background thread."""
        self._ensure_thread()
        self._wakeup.set()

    def _ensure_thread(self) -> None:
        with self._state_lock:
            if self._stopping.is_set() or (self._thread and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="voicedesk-spool",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        delay = self.first_delay_s
        while not self._stopping.is_set():
            waiting = len(self.spool) > 0
            self._wakeup.wait(timeout=delay if waiting else None)
            self._wakeup.clear()
            if self._stopping.is_set():
                return
            try:
                left = self.drain()
            except Exception:  # a full disk, say: keep the thread alive and try again later
                log.exception("retrying spooled calls in %s failed", self.spool.folder)
                left = 1
            delay = self.first_delay_s if left == 0 or not self.database_down else min(
                delay * 2, self.max_delay_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
