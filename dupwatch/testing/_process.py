"""Helpers shared by the service launchers: free ports, a managed process group, log tails."""

from __future__ import annotations

from typing import Self

from types import TracebackType

import shutil

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets are held open until every port is chosen, so the ports differ from each other.
    Another process may still take one before the service binds it (rare on a test machine).
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(host: str, port: int | None, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds now."""
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | str, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """Runs in the child before exec: get SIGKILL when the parent (thread) dies.

    Keeps a crashed or killed pytest from leaving a JVM or a Milvus behind on a shared machine.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class ManagedProcess:
    """A child process in its own process group, with stdout/stderr appended to a log file."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.cmd = list(cmd)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(self.cmd)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent and os.name == "posix" else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float) -> int | None:
        """SIGTERM to the whole group, SIGKILL if it has not exited after ``timeout`` seconds."""
        if self.is_alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=30)
        # Children that ignored SIGTERM (or outlived the leader) go too.
        self._signal_group(signal.SIGKILL)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL to the whole group: a crash, as fault-injection tests need it."""
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        return self._reap()

    def _reap(self) -> int | None:
        code = self.proc.poll()
        if not self._log.closed:
            self._log.write(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} exited with {code}\n".encode())
            self._log.close()
        return code


class ServiceLifecycle:
    """``kill``/``restart``/``cleanup`` and the context manager shared by the test services.

    A subclass provides ``start()`` (returns self), ``stop()``, ``_proc`` (a :class:`ManagedProcess`
    or ``None``), ``data_dir`` and ``_owns_data_dir``.
    """

    _proc: "ManagedProcess | None"
    data_dir: Path
    _owns_data_dir: bool

    def start(self) -> Self:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash); the service recovers its data on the next start."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def restart(self, *, hard: bool = False) -> Self:
        """Stop (``hard``: kill) and start again on the same ports with the same data."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, and remove the data folder if this object created it."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.cleanup()
        else:  # keep the log for the post-mortem
            self.stop()
