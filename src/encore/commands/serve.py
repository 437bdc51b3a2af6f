"""``encore serve``: the whole platform from one command.

Migrates the database, creates the operator on first start (and prints how to sign in),
starts one job-worker process per queue (generation, training) and serves the web app
with uvicorn at http://127.0.0.1:8000 on embedded defaults (SQLite, local files, the
shipped models). Stopping the server (Ctrl-C) stops the workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds a worker gets to finish its running job after SIGINT before it is killed.
WORKER_STOP_SECONDS = 15.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="start the platform: web app and job workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=None, help="address to listen on (default: settings, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: settings, 8000)")
    parser.add_argument(
        "--no-workers", action="store_true", help="serve the web app only (workers run elsewhere)"
    )
    parser.add_argument(
        "--generate-workers", type=int, default=1, metavar="N",
        help="concurrent generation jobs (threads in the generation worker)",
    )
    parser.add_argument(
        "--web-workers", type=int, default=1, metavar="N",
        help="web server processes (rate-limit counters are per process)",
    )
    parser.set_defaults(handler=serve)


def worker_commands(generate_workers: int = 1) -> list[list[str]]:
    """The worker processes ``encore serve`` starts: one per queue.

    The training worker does not run the periodic sweep (the generation worker does), so
    the sweep runs once per installation.
    """
    base = [sys.executable, "-m", "encore.jobs.worker"]
    return [
        [*base, "--queue", "generate", "--workers", str(generate_workers)],
        [*base, "--queue", "train", "--no-periodic"],
    ]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when ``encore serve`` dies (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed server
        pass


PR_SET_PDEATHSIG = 1


def start_workers(commands: list[list[str]]) -> list[subprocess.Popen[bytes]]:
    """Start the worker processes (they inherit the environment, hence the settings).

    Each worker gets its own session, so Ctrl-C in the terminal reaches only the server,
    which then stops the workers once, gracefully (a second SIGINT would make a worker drop
    its running job). If the server is killed outright, its workers get SIGTERM (Linux).
    """
    procs = []
    for command in commands:
        procs.append(
            subprocess.Popen(
                command,
                env=os.environ.copy(),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        )
        logger.info("started worker pid %d: %s", procs[-1].pid, " ".join(command[2:]))
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = WORKER_STOP_SECONDS) -> None:
    """Ask each worker to stop gracefully (SIGINT), then kill those still running."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("worker pid %d did not stop in %.0f s; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait()


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from encore.config import get_settings
    from encore.errors import InvalidInput
    from encore.services import accounts
    from encore.store.db import upgrade
    from encore.web.app import create_app
    from encore.web.security import check_settings

    settings = get_settings()
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    check_settings(settings)  # before touching anything: no insecure production start
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if args.web_workers < 1:
        raise InvalidInput(f"--web-workers must be at least 1, got {args.web_workers}")
    app = create_app(settings)  # also checks that the app can be built before forking
    email, password = accounts.ensure_operator(app.state.ctx)

    url = f"http://{settings.host}:{settings.port}"
    print(f"\nencore is starting at {url}")  # noqa: T201
    if password is not None:
        print(  # noqa: T201
            f"  first start: operator account created\n"
            f"    e-mail:   {email}\n"
            f"    password: {password}\n"
            f"  sign in at {url}/signin and keep this password (it is shown only once).\n"
        )
    else:
        print(f"  operator: {email} (password set on the first start)\n")  # noqa: T201

    procs = [] if args.no_workers else start_workers(worker_commands(args.generate_workers))
    try:
        if args.web_workers == 1:
            # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from
            # 127.0.0.1; the app applies ENCORE_TRUSTED_PROXIES itself (default none).
            uvicorn.run(
                app, host=settings.host, port=settings.port, log_level="info",
                access_log=False, proxy_headers=False,
            )
        else:  # each process builds its own app from the same (environment) settings
            uvicorn.run(
                "encore.web.app:create_app", factory=True, workers=args.web_workers,
                host=settings.host, port=settings.port, log_level="info", access_log=False,
                proxy_headers=False,
            )
    finally:
        stop_workers(procs)
    return 0
