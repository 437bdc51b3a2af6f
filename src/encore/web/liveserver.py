"""Run a real ``encore serve`` in a subprocess (browser tests, screenshots, the web benchmark).

::

    with LiveServer(data_dir, env={"ENCORE_CLIP_SECONDS": "2"}) as server:
        print(server.url, server.operator_email, server.operator_password)

The server gets a free port on 127.0.0.1, its own data folder and the given ``ENCORE_*``
settings; the operator's one-time password is read from its first-start banner.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

_PASSWORD = re.compile(r"password:\s+(\S+)")
_EMAIL = re.compile(r"e-mail:\s+(\S+)")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``encore serve`` on a free port, stopped (with its workers) on exit.

    Parameters
    ----------
    data_dir
        The server's data folder (database, queue, blobs); created if missing.
    env
        Extra environment variables (``ENCORE_*`` settings).
    workers
        Start the job workers (``False`` adds ``--no-workers``).
    args
        More ``encore serve`` options (e.g. ``("--web-workers", "2")``).
    startup_timeout
        Seconds to wait for the server to answer.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        workers: bool = True,
        args: tuple[str, ...] = (),
        startup_timeout: float = 120.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.extra_env = dict(env or {})
        self.workers = workers
        self.args = tuple(args)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.operator_email: str | None = None
        self.operator_password: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        """Start the server and wait until it answers (raises with its log otherwise)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "ENCORE_DATA_DIR": str(self.data_dir),
            "ENCORE_ENVIRONMENT": "test",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        command = [sys.executable, "-m", "encore.cli", "serve", "--port", str(self.port)]
        if not self.workers:
            command.append("--no-workers")
        command.extend(self.args)
        log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"encore serve exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/robots.txt", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"encore serve did not answer in {self.startup_timeout:.0f} s:\n{self.log()}")
        text = self.log()
        if (m := _PASSWORD.search(text)) is not None:
            self.operator_password = m.group(1)
        if (m := _EMAIL.search(text)) is not None:
            self.operator_email = m.group(1)
        logger.info("live server at %s (pid %d)", self.url, self._proc.pid)
        return self

    def log(self) -> str:
        """Everything the server (and its workers) printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server like Ctrl-C does (it stops its workers); kill it if it hangs."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the server's own process group only
            proc.wait()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
