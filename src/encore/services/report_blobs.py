"""The report's plots as blobs, so that any web process on any host can serve them.

The operator's report page draws the plots (:func:`encore.services.report.report_plots`)
and stores each PNG in the blob store under its content hash,
``reports/plots/<sha256, 32 hex digits>.png`` (the same store as songs and clips: a local
folder or S3). The page links to those keys; the image request may reach another web
process, which reads the blob. A plot that did not change keeps its key, so browsers may
cache it for good.

Old plots are deleted when the report is next drawn, once nobody has drawn them for
``keep_seconds`` (each drawing writes the blob again, which renews its time), and by
``encore blobs gc`` with its ``--min-age``. A page drawn a moment ago on another host
therefore never loses its images to a newer drawing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from encore import feedback
from encore.errors import NotFound
from encore.services import report as report_service

if TYPE_CHECKING:
    from encore.services.context import ServiceContext

logger = logging.getLogger(__name__)

#: Blob prefix of the report's plots.
PLOT_PREFIX = "reports/plots"
#: Plots not drawn again for this long are deleted (seconds).
KEEP_SECONDS = 3600.0
_FILE_NAME = re.compile(r"^[0-9a-f]{32}\.png$")


@dataclass(frozen=True)
class StoredPlot:
    """One plot of the report in the blob store."""

    name: str  # what it shows, e.g. "ratings_per_version.png"
    key: str  # "reports/plots/<digest>.png"

    @property
    def file_name(self) -> str:
        """The last part of the key (what the web route takes)."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def title(self) -> str:
        return self.name.removesuffix(".png").replace("_", " ")


def plot_key(png: bytes) -> str:
    """The blob key of a plot: its content hash."""
    return f"{PLOT_PREFIX}/{hashlib.sha256(png).hexdigest()[:32]}.png"


def publish_report_plots(
    ctx: ServiceContext, *, report: feedback.Report | None = None,
    keep_seconds: float = KEEP_SECONDS,
) -> list[StoredPlot]:
    """Draw the report's plots, store them as blobs and delete plots older than
    ``keep_seconds`` that this drawing did not make; returns the plots in drawing order
    (none while no rating counts)."""
    plots = []
    with tempfile.TemporaryDirectory(prefix="encore-report-plots-") as tmp:
        for path in report_service.report_plots(ctx, Path(tmp), report=report):
            png = path.read_bytes()
            # written again even when it exists: that renews its time (see prune)
            key = ctx.blobs.put(plot_key(png), png, content_type="image/png")
            plots.append(StoredPlot(path.name, key))
    prune_report_plots(ctx, keep=[p.key for p in plots], older_than=keep_seconds)
    return plots


def prune_report_plots(
    ctx: ServiceContext, *, keep: Collection[str] = (), older_than: float = KEEP_SECONDS,
    dry_run: bool = False,
) -> list[str]:
    """Delete the plot blobs last written at least ``older_than`` seconds ago, except
    ``keep``; returns their keys. On a store that cannot tell a blob's age, nothing is
    deleted unless ``older_than`` is 0."""
    now = time.time()
    old = []
    for key in ctx.blobs.list_keys(PLOT_PREFIX):
        if key in keep:
            continue
        if older_than > 0:
            try:
                age = now - ctx.blobs.modified(key)
            except NotFound:
                continue  # deleted meanwhile by another process
            except NotImplementedError:
                logger.info("report plots: the blob store cannot tell their age; none pruned")
                return []
            if age < older_than:
                continue
        old.append(key)
    if not dry_run:
        for key in old:
            ctx.blobs.delete(key)
    return old


def report_plot_png(ctx: ServiceContext, file_name: str) -> bytes:
    """The PNG of the stored plot ``file_name`` (``<digest>.png``).

    Raises
    ------
    NotFound
        When the name is not a plot's, or the plot is not (or no longer) stored.
    """
    if not _FILE_NAME.match(file_name):
        raise NotFound(f"no plot named {file_name!r}")
    try:
        return ctx.blobs.get(f"{PLOT_PREFIX}/{file_name}")
    except NotFound:
        raise NotFound(
            f"no plot named {file_name!r} (plots are kept {KEEP_SECONDS / 3600:g} h after their "
            "last drawing); open the report page to draw them again"
        ) from None
