"""A real ``encore serve`` (web app and workers) in a subprocess for the pilot.

It gets its own data folder, a free port on 127.0.0.1 and the pilot's ``ENCORE_*``
settings; the operator's one-time password is read from the first-start banner. The
operator's CLI steps (:meth:`PilotServer.cli`) run ``encore`` with the same environment, so
they act on the same database, blobs and queues.
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

from encore.errors import EncoreError

logger = logging.getLogger(__name__)

_PASSWORD = re.compile(r"password:\s+(\S+)")
_EMAIL = re.compile(r"e-mail:\s+(\S+)")


class ServerError(EncoreError):
    """The pilot's server did not start, or an operator command failed."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PilotServer:
    """``encore serve`` for a pilot; use as a context manager.

    Parameters
    ----------
    data_dir : Path
        ``ENCORE_DATA_DIR`` of the server (created).
    settings : dict of str to str
        ``ENCORE_*`` environment variables.
    generate_workers : int
        Threads of the generation worker.
    startup_timeout : float
        Seconds to wait for the first answer.
    """

    def __init__(
        self,
        data_dir: Path,
        settings: dict[str, str],
        *,
        generate_workers: int = 1,
        startup_timeout: float = 180.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.settings = dict(settings)
        self.generate_workers = generate_workers
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.operator_email: str | None = None
        self.operator_password: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched = 0.0

    @property
    def env(self) -> dict[str, str]:
        """The environment of the server and of the operator's CLI commands."""
        return {
            **os.environ,
            "ENCORE_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **self.settings,
        }

    def start(self) -> PilotServer:
        """Launch the server and wait until it answers."""
        return self.launch().wait_ready()

    def launch(self) -> PilotServer:
        """Start the server process without waiting (see :meth:`wait_ready`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "encore.cli", "serve", "--port", str(self.port),
                   "--generate-workers", str(self.generate_workers)]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(command, env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._launched = time.monotonic()
        return self

    def wait_ready(self) -> PilotServer:
        """Wait until the launched server answers; read the operator's credentials."""
        if self._proc is None:
            raise ServerError("the server was not launched")
        deadline = self._launched + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerError(f"encore serve exited with {self._proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/robots.txt", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"encore serve did not answer in {self.startup_timeout:.0f} s:\n"
                                  f"{self.log()[-3000:]}")
            time.sleep(0.25)
        text = self.log()
        if (m := _PASSWORD.search(text)) is not None:
            self.operator_password = m.group(1)
        if (m := _EMAIL.search(text)) is not None:
            self.operator_email = m.group(1)
        logger.info("pilot server at %s (pid %d, data %s)", self.url, self._proc.pid, self.data_dir)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cli(self, *args: str, timeout: float = 3600.0) -> str:
        """Run ``encore ARGS`` against this server's data (the operator's CLI); its stdout.

        Raises
        ------
        ServerError
            On a non-zero exit (the message has its stderr).
        """
        command = [sys.executable, "-m", "encore.cli", *args]
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ServerError(f"`encore {' '.join(args)}` exited with {proc.returncode}: "
                              f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc.stdout

    def stop(self, timeout: float = 60.0) -> None:
        """Stop like Ctrl-C (the server stops its workers); kill what is left if it hangs.

        The server's worker processes are remembered before the signal, so a worker still
        busy when the server is gone is ended too (by its id).
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        children = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this server was started in
            proc.wait()
        deadline = time.monotonic() + 20.0
        for pid in children:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if _alive(pid):
                logger.warning("worker pid %d of the pilot's server is still running; killing it", pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> PilotServer:
        return self.start() if self._proc is None else self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
