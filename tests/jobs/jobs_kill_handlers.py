"""Handlers for the real-consumer tests (imported by the worker subprocess via --import).

``wait_for_release``: records each attempt, waits until a release file exists (reporting
progress, so the heartbeat keeps moving), then writes its output idempotently and logs one
completion line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from encore.jobs import JobContext, job_handler


@job_handler("wait_for_release")
def wait_for_release(ctx: JobContext) -> None:
    folder = Path(ctx.payload["dir"])
    (folder / f"attempt-{ctx.attempt}").write_text(f"{os.getpid()}\n")
    while not (folder / "release").exists():
        ctx.report_progress(0.5, "waiting for release")
        time.sleep(0.05)
    out = folder / f"out-{ctx.job_id}.txt"
    if not out.exists():  # idempotent: a re-run finds its result already there
        tmp = out.with_suffix(".tmp")
        tmp.write_text(f"job {ctx.job_id}\n")
        os.replace(tmp, out)
    with (folder / "completions.log").open("a") as log:
        log.write(f"{ctx.job_id} attempt {ctx.attempt} pid {os.getpid()}\n")
