"""A throwaway PostgreSQL server for tests, from the distribution's own packages.

Loaded as a pytest plugin (``pytest_plugins = ["pg_server"]``). The server is
started once per session in its own temporary folder (data, socket, log), on a
free port on 127.0.0.1, and stopped at the end even when tests fail: only that
server, by its own data folder and, as a last resort, its own postmaster pid.
Every test gets a fresh database so tests never see each other's rows.

PostgreSQL refuses to run as root, so under root the server runs as the
unprivileged ``postgres`` user that Debian's package creates. Where the server
binaries are missing the tests skip and say how to install them
(``./scripts/test.sh`` does it when run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
SERVER_USER = "postgres"
INSTALL_HINT = ("run ./scripts/test.sh as root (it installs Debian's postgresql package) "
                "or `apt-get install postgresql`")


class ServerUnavailable(Exception):
    """The machine cannot run a test server; the message says why and what to do."""


def find_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else one on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: _version_key(Path(p).parent.name), reverse=True)
    for folder in candidates:
        if all(os.access(Path(folder, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    raise ServerUnavailable("PostgreSQL server binaries (initdb, pg_ctl under "
                            f"/usr/lib/postgresql/*/bin) are not installed; {INSTALL_HINT}")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One cluster in ``root``: ``data/``, the socket and ``server.log``."""

    bin_dir: Path
    root: Path
    port: int
    run_as: list[str]  # command prefix that drops root, empty when not root
    postmaster_pid: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SERVER_USER} dbname={database}"

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        cmd = [*self.run_as, str(self.bin_dir / tool), *args]
        done = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed with code {done.returncode}: "
                               f"{done.stderr.strip() or done.stdout.strip()}\n{log}")

    def init(self) -> None:
        # trust is safe here: the server listens on 127.0.0.1 and in a private folder only.
        self._run("initdb", "-D", str(self.data_dir), "-U", SERVER_USER, "--auth=trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")

    def start(self) -> None:
        """Start and wait until it accepts connections; fsync is off, crash safety is not."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data_dir),
                  "-l", str(self.log_file), "-o", options, timeout=START_TIMEOUT_S + 10)
        self.postmaster_pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        """Stop this server (``fast`` or ``immediate``); kill its own postmaster if it hangs."""
        try:
            self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", str(self.data_dir),
                      timeout=40)
        except (RuntimeError, subprocess.TimeoutExpired):
            if self.postmaster_pid is not None and _is_postmaster(self.postmaster_pid,
                                                                 self.data_dir):
                os.kill(self.postmaster_pid, signal.SIGKILL)
        self.postmaster_pid = None

    def running(self) -> bool:
        return self.postmaster_pid is not None and _is_postmaster(self.postmaster_pid,
                                                                  self.data_dir)


def _is_postmaster(pid: int, data_dir: Path) -> bool:
    """True only for the process whose command line names our data folder."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(data_dir) in cmdline


def _unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ServerUnavailable(f"running as root and there is no {SERVER_USER!r} user to run "
                                f"PostgreSQL as (it refuses root); {INSTALL_HINT}") from None
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--"]
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups"]
    raise ServerUnavailable("running as root and neither runuser nor setpriv is available to "
                            "run PostgreSQL as an unprivileged user")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running server for the duration of the block, removed with its folder afterwards."""
    bin_dir = find_bin_dir()
    run_as = _unprivileged_prefix()
    root = Path(tempfile.mkdtemp(prefix="voicedesk-pg-"))
    if run_as:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, root, free_port(), run_as)
    watchdog = _start_watchdog(server)
    try:
        server.init()
        for attempt in range(3):  # another process may take the free port before we bind it
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = free_port()
        yield server
    finally:
        if server.running() or (server.data_dir / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        try:
            watchdog.wait(timeout=10)  # it sees the folder gone and exits
        except subprocess.TimeoutExpired:
            watchdog.kill()


def _start_watchdog(server: PostgresServer) -> subprocess.Popen[bytes]:
    """Stop this server even if pytest itself is killed (a CI timeout sends SIGTERM or SIGKILL).

    A small shell loop in its own session waits for this pytest process to end
    or for the server's folder to be removed by the normal teardown; if pytest
    died first it stops exactly this server, by its data folder, and removes it.
    """
    stop = " ".join(shlex.quote(a) for a in [*server.run_as, str(server.bin_dir / "pg_ctl"),
                                              "stop", "-m", "immediate", "-w", "-D"])
    script = (f'while kill -0 {os.getpid()} 2>/dev/null && [ -d "$0" ]; do sleep 1; done; '
              f'if [ -d "$0" ]; then [ -f "$0/data/postmaster.pid" ] && {stop} "$0/data"; '
              'rm -rf "$0"; fi')
    return subprocess.Popen(["sh", "-c", script, str(server.root)], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; tests that use it skip where it cannot run."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed; run ./scripts/setup.sh (installs the "
                    "'postgres' extra) or `pip install -e '.[postgres]'`")
    try:
        with postgres_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    if not pg_server.running():  # a test stopped it and failed before restarting it
        pg_server.start()
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
