"""Creating job rows. Services call :func:`enqueue_job` inside their transaction; the job
reaches a queue only after that transaction commits (see ``encore.jobs.dispatch``)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from encore.errors import InvalidInput
from encore.store.enums import QueueName
from encore.store.models.jobs import Job

#: ``session.info`` key listing the jobs created in the session's current transaction.
NEW_JOBS_KEY = "encore_new_jobs"


def enqueue_job(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    queue: QueueName | str = QueueName.GENERATE,
    max_attempts: int = 3,
) -> Job:
    """Add a queued job to ``session`` and flush it (so it has an id).

    Nothing is sent to a queue here. After the caller commits, the job is dispatched by the
    session factory's after-commit hook (``encore.jobs.dispatch.install_dispatch_hook``)
    or by the next ``dispatch_pending`` sweep; if the transaction rolls back, the job never
    existed.

    Parameters
    ----------
    session : Session
        The caller's session; the caller commits.
    kind : str
        The handler to run (``encore.jobs.registry``), e.g. ``"generate"``.
    payload : dict
        Ids and plain values only (JSON-serialisable), never objects or tensors.
    queue : QueueName
        ``generate`` for short jobs (generation, embedding), ``train`` for fine-tuning.
    max_attempts : int
        How many times the job may be started before a dead worker makes it fail.

    Raises
    ------
    InvalidInput
        If ``kind`` is empty, ``payload`` is not JSON-serialisable, ``queue`` is unknown or
        ``max_attempts`` < 1.
    """
    payload = dict(payload or {})
    if not kind:
        raise InvalidInput("job kind is empty")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"job payload for {kind!r} is not JSON: {exc}") from exc
    try:
        queue = QueueName(queue)
    except ValueError:
        raise InvalidInput(
            f"unknown queue {queue!r}; expected one of {[q.value for q in QueueName]}"
        ) from None
    if max_attempts < 1:
        raise InvalidInput(f"max_attempts must be at least 1, got {max_attempts}")
    job = Job(kind=kind, payload=payload, queue=queue, max_attempts=max_attempts)
    session.add(job)
    session.flush()
    session.info.setdefault(NEW_JOBS_KEY, []).append(job.id)
    return job
