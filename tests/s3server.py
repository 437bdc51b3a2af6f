"""A real S3-compatible server for the tests (moto's server mode in its own process; see
:mod:`encore.store.s3local`); the test is skipped where moto is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from encore.errors import ConfigurationError
from encore.store.s3local import S3Server
from encore.store.s3local import running_s3_server as _running

__all__ = ["S3Server", "running_s3_server"]


@contextmanager
def running_s3_server(log: Path | None = None) -> Iterator[S3Server]:
    try:
        server_cm = _running(log)
        server = server_cm.__enter__()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server_cm.__exit__(None, None, None)
