"""Run a real ``encore serve`` in a subprocess (browser tests, screenshots, the web benchmark,
the simulated pilot), and the tiny seeded models such a server runs on in tests.

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

from encore.errors import EncoreError

logger = logging.getLogger(__name__)

_PASSWORD = re.compile(r"password:\s+(\S+)")
_EMAIL = re.compile(r"e-mail:\s+(\S+)")


class ServerError(EncoreError, RuntimeError):
    """The server did not start, or an operator command against its data failed."""


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

    #: ``ENCORE_ENVIRONMENT`` of the server; ``None`` keeps the caller's
    environment: str | None = "test"

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
        self._launched = 0.0

    @property
    def env(self) -> dict[str, str]:
        """The environment of the server and of the operator's CLI commands (:meth:`cli`)."""
        own = {"ENCORE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1"}
        if self.environment is not None:
            own["ENCORE_ENVIRONMENT"] = self.environment
        return {**os.environ, **own, **self.extra_env}

    def start(self) -> LiveServer:
        """Start the server and wait until it answers (raises with its log otherwise)."""
        return self.launch().wait_ready()

    def launch(self) -> LiveServer:
        """Start the server process without waiting (see :meth:`wait_ready`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "encore.cli", "serve", "--port", str(self.port)]
        if not self.workers:
            command.append("--no-workers")
        command.extend(self.args)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(command, env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._launched = time.monotonic()
        return self

    def wait_ready(self) -> LiveServer:
        """Wait until the launched server answers; read the operator's credentials."""
        if self._proc is None:
            raise ServerError("the server was not launched")
        deadline = self._launched + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerError(f"encore serve exited with {self._proc.returncode}:\n"
                                  f"{self.log()[-3000:]}")
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
            time.sleep(0.2)
        text = self.log()
        if (m := _PASSWORD.search(text)) is not None:
            self.operator_password = m.group(1)
        if (m := _EMAIL.search(text)) is not None:
            self.operator_email = m.group(1)
        logger.info("server at %s (pid %d, data %s)", self.url, self._proc.pid, self.data_dir)
        return self

    def log(self) -> str:
        """Everything the server (and its workers) printed so far."""
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
                logger.warning("worker pid %d of the server is still running; killing it", pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> LiveServer:
        return self.start() if self._proc is None else self.wait_ready()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def build_tiny_models(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Tiny random (seeded) diffusion and similarity models in ``root`` — ``(base model
    folder, similarity model folder)`` — for tests, benchmarks and the tiny pilot: seconds
    to build, 32×16 mel images. Folders already there are kept."""
    from encore.audio.mel import MelConfig
    from encore.diffusion.folder import build_random_model, save_model_folder
    from encore.diffusion.model import tiny_config
    from encore.similarity.config import SimilarityConfig
    from encore.similarity.model import SimilarityModel

    mel = MelConfig(x_res=32, y_res=16)
    base = root / "base"
    if not (base / "unet").is_dir():
        loaded = build_random_model(tiny_config(height=mel.y_res), mel, seed=seed)
        save_model_folder(base, loaded.denoiser, mel, name="v0")
    sim = root / "similarity"
    if not sim.is_dir():
        cfg = SimilarityConfig(
            image_height=mel.y_res, image_width=mel.x_res, pool=1, channels=(8, 8),
            latent_dim=8, codebook_size=16, head_hidden=16, embedding_dim=8,
        )
        SimilarityModel.create(cfg, seed=seed, mel_config=mel).save(sim)
    return base, sim


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
