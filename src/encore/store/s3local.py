"""A local S3-compatible server for tests and benchmarks: moto's server mode
(``moto_server``, from PyPI: ``pip install 'moto[server]'``, a dev dependency) as a separate
process on a free local port, and fresh buckets in it.

It speaks the S3 HTTP API (SigV4, multipart uploads, ``Range``, presigned URLs), so s3fs
and boto talk to it as to AWS, MinIO or R2. Data lives in the server's memory. Never a
production store: deployments point ``ENCORE_STORAGE_URL`` at a real one (docs/deploy.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encore.errors import ConfigurationError

#: The credentials moto accepts (any work); given explicitly so no AWS_* variable is read.
S3_KEY = "encore-test"
S3_SECRET = "encore-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    pid: int

    def storage_options(self) -> dict[str, Any]:
        """``Settings.storage_options`` for this server."""
        return {
            "endpoint_url": self.endpoint,
            "key": S3_KEY,
            "secret": S3_SECRET,
        }

    def env(self) -> dict[str, str]:
        """Environment of a process that uses this server for its blobs (with a bucket URL)."""
        import json

        return {"ENCORE_STORAGE_OPTIONS": json.dumps(self.storage_options())}

    def new_bucket(self) -> str:
        """Create an empty bucket; return its name."""
        import s3fs

        name = f"encore-{uuid.uuid4().hex[:12]}"
        fs = s3fs.S3FileSystem(**self.storage_options(), skip_instance_cache=True)
        fs.mkdir(name)
        return name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_server_command() -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


@contextmanager
def running_s3_server(log: Path | None = None) -> Iterator[S3Server]:
    """Start ``moto_server`` on a free port, wait until it answers, stop it afterwards.

    Raises
    ------
    ConfigurationError
        When moto's server is not installed (``pip install 'moto[server]'``).
    """
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"moto's S3 server is not installed ({exc}): pip install 'moto[server]'"
        ) from None
    port = _free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*_moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MOTO_CALL_RESET_API": "false"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not answer within 60 s") from None
                time.sleep(0.1)
        yield S3Server(endpoint=endpoint, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not isinstance(out, int):  # a log file, not subprocess.DEVNULL
            out.close()
