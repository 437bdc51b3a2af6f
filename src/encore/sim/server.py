"""A real ``encore serve`` (web app and workers) in a subprocess for the pilot.

It gets its own data folder, a free port on 127.0.0.1 and the pilot's ``ENCORE_*``
settings; the operator's one-time password is read from the first-start banner. The
operator's CLI steps (:meth:`PilotServer.cli`) run ``encore`` with the same environment, so
they act on the same database, blobs and queues. The process handling is
:class:`encore.web.liveserver.LiveServer`'s (the browser tests and benchmarks use it too).
"""

from __future__ import annotations

from pathlib import Path

from encore.web.liveserver import LiveServer, ServerError

__all__ = ["PilotServer", "ServerError"]


class PilotServer(LiveServer):
    """``encore serve`` for a pilot; use as a context manager (:meth:`launch` first to
    start it while other work goes on; entering then waits for it).

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

    environment = None  # the pilot's settings (or the caller's environment) say

    def __init__(
        self,
        data_dir: Path,
        settings: dict[str, str],
        *,
        generate_workers: int = 1,
        startup_timeout: float = 180.0,
    ) -> None:
        super().__init__(data_dir, env=settings, startup_timeout=startup_timeout,
                         args=("--generate-workers", str(generate_workers)))
