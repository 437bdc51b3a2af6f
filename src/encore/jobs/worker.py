"""The job worker: Huey consumers for encore's queues in one process.

``encore worker`` and ``python -m encore.jobs.worker`` run this. One consumer per queue
(``--queue generate``, ``train`` or ``all``), each with ``--workers`` threads (or forked
processes with ``--worker-type process``; threads by default: generation and training
release the GIL inside torch, and a thread worker dies with its process, which makes the
recovery semantics simple). Signals: SIGINT stops gracefully (running jobs finish), a
second SIGINT or SIGTERM stops at once (running jobs are handed back to the queue).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from huey.consumer import Consumer, ConsumerStopped

from encore.errors import InvalidInput
from encore.jobs.queue import Queues, make_queues
from encore.jobs.registry import import_modules, registered_kinds
from encore.jobs.tasks import register_tasks
from encore.store.db import ensure_schema
from encore.store.enums import QueueName

if TYPE_CHECKING:
    from encore.config import Settings

logger = logging.getLogger(__name__)

QueueChoice = Literal["generate", "train", "all"]
WorkerType = Literal["thread", "process"]


def make_consumers(
    queues: Queues,
    queue: QueueChoice = "all",
    *,
    workers: int = 1,
    worker_type: WorkerType = "thread",
    periodic: bool = True,
    max_delay: float = 2.0,
) -> list[Consumer]:
    """Huey consumers for the chosen queue(s) (not started).

    ``max_delay`` caps the polling back-off of an idle worker (seconds).
    """
    names = list(QueueName) if queue == "all" else [QueueName(queue)]
    return [
        Consumer(
            queues.huey(name),
            workers=workers,
            worker_type=worker_type,
            periodic=periodic,
            max_delay=max_delay,
            check_worker_health=True,
        )
        for name in names
    ]


def run_consumers(consumers: list[Consumer]) -> None:
    """Run consumers until a signal stops them (blocks)."""
    if len(consumers) == 1:
        consumers[0].run()
        return
    for consumer in consumers:
        consumer.start()

    def _forward(signum: int, frame: Any) -> None:
        for consumer in consumers:
            consumer._handle_signal(signum, frame)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _forward)
    health = [time.monotonic()] * len(consumers)
    running = list(range(len(consumers)))
    while running:
        for i in list(running):
            try:
                health[i] = consumers[i].loop(health[i])
            except ConsumerStopped:
                consumers[i].huey.notify_interrupted_tasks()
                running.remove(i)
    logger.info("worker exiting")


def run_worker(
    settings: Settings,
    *,
    queue: QueueChoice = "all",
    workers: int = 1,
    worker_type: WorkerType = "thread",
    periodic: bool = True,
    imports: Sequence[str] = (),
) -> None:
    """Import the job handlers, then consume ``queue`` until stopped (blocks).

    Parameters
    ----------
    settings : Settings
        Database and queue URLs, heartbeat and stale timeouts.
    queue : {"generate", "train", "all"}
        Which queue(s) this process consumes.
    workers : int
        Concurrent jobs per queue.
    worker_type : {"thread", "process"}
        Huey worker type (``process`` gives hard time-outs, not on Windows).
    periodic : bool
        Run the periodic job sweep (turn off on all but one host when scaling out).
    imports : sequence of str
        Extra modules that register job handlers.
    """
    if settings.queue_immediate:
        from encore.errors import ConfigurationError

        raise ConfigurationError("cannot run a worker with queue_immediate=true")
    ensure_schema(settings.resolved_database_url)
    register_tasks()
    modules = import_modules(tuple(imports))
    queues = make_queues(settings)
    logger.info(
        "worker on %s, queue %s, %d %s worker(s); extra handler modules %s; kinds %s",
        settings.resolved_queue_url,
        queue,
        workers,
        worker_type,
        modules or "none",
        registered_kinds() or "none",
    )
    run_consumers(
        make_consumers(queues, queue, workers=workers, worker_type=worker_type, periodic=periodic)
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's command-line options (shared with ``encore worker``)."""
    parser.add_argument(
        "--queue", choices=["generate", "train", "all"], default="all", help="queue(s) to consume"
    )
    parser.add_argument("--workers", type=int, default=1, help="concurrent jobs per queue")
    parser.add_argument("--worker-type", choices=["thread", "process"], default="thread")
    parser.add_argument(
        "--no-periodic", action="store_true", help="do not run the periodic job sweep here"
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="also import MODULE (registers more job handlers); repeatable",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m encore.jobs.worker``."""
    from encore.config import Settings

    parser = argparse.ArgumentParser(prog="python -m encore.jobs.worker", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return run_from_args(Settings(), args)


def run_from_args(settings: Settings, args: argparse.Namespace) -> int:
    """Run the worker that the options of :func:`add_arguments` ask for (``encore worker``
    and ``python -m encore.jobs.worker``); returns the exit status.

    Raises
    ------
    InvalidInput
        If ``--workers`` is below 1.
    """
    if args.workers < 1:
        raise InvalidInput(f"--workers must be at least 1, got {args.workers}")
    run_worker(
        settings,
        queue=args.queue,
        workers=args.workers,
        worker_type=args.worker_type,
        periodic=not args.no_periodic,
        imports=args.imports,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
