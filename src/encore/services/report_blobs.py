"""The report's plots as blobs, so that any web process on any host can serve them.

The operator's report page draws the plots (:func:`encore.services.report.report_plots`)
and stores each PNG in the blob store under its content hash,
``reports/plots/<sha256, 32 hex digits>.png`` (the same store as songs and clips: a local
folder or S3), then an index of the latest drawing, ``reports/latest-plots.json``
(``{"ratings_per_version.png": key, …}``). The page links to
``/api/operator/report/plots/<name>.png?v=<digest>``: the image request may reach another
web process, which reads the blob of that digest (the very image the page was drawn with;
browsers may cache it for good), or, without a digest or once it is gone, the latest
drawing of that name.

Old plots are deleted when the report is next drawn, once nobody has drawn them for
``keep_seconds`` (each drawing writes the blob again, which renews its time), and by
``encore blobs gc`` with its ``--min-age``. A page drawn a moment ago on another host
therefore never loses its images to a newer drawing.
"""

from __future__ import annotations

import hashlib
import json
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
#: The latest drawing: ``{plot name: blob key}``.
INDEX_KEY = "reports/latest-plots.json"
#: Plots not drawn again for this long are deleted (seconds).
KEEP_SECONDS = 3600.0
_NAME = re.compile(r"^[a-z0-9_]{1,64}\.png$")
_DIGEST = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class StoredPlot:
    """One plot of the report in the blob store."""

    name: str  # what it shows, e.g. "ratings_per_version.png"
    key: str  # "reports/plots/<digest>.png"

    @property
    def digest(self) -> str:
        """The content hash in the key (the web route's ``v``)."""
        return self.key.rsplit("/", 1)[-1].removesuffix(".png")

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
    index = json.dumps({p.name: p.key for p in plots}, sort_keys=True).encode()
    ctx.blobs.put(INDEX_KEY, index, content_type="application/json")
    prune_report_plots(ctx, keep=[p.key for p in plots], older_than=keep_seconds)
    return plots


def latest_plots(ctx: ServiceContext) -> dict[str, str]:
    """``{plot name: blob key}`` of the latest drawing, by any process (empty before any)."""
    try:
        index = json.loads(ctx.blobs.get(INDEX_KEY))
    except NotFound:
        return {}
    return {str(k): str(v) for k, v in index.items()}


def prune_report_plots(
    ctx: ServiceContext, *, keep: Collection[str] = (), older_than: float = KEEP_SECONDS,
    dry_run: bool = False,
) -> list[str]:
    """Delete the plot blobs last written at least ``older_than`` seconds ago, except
    ``keep`` and the latest drawing's; returns their keys. On a store that cannot tell a
    blob's age, nothing is deleted unless ``older_than`` is 0."""
    now = time.time()
    kept = set(keep) | set(latest_plots(ctx).values())
    old = []
    for key in ctx.blobs.list_keys(PLOT_PREFIX):
        if key in kept:
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


def report_plot_png(
    ctx: ServiceContext, name: str, digest: str | None = None
) -> tuple[bytes, bool]:
    """The PNG of plot ``name`` (``ratings_per_version.png``): the drawing with content hash
    ``digest`` while it is stored, else the latest drawing of that name; and whether it is
    the one of ``digest``.

    Raises
    ------
    NotFound
        When the name is not a plot's, or no drawing of it is stored.
    """
    if not _NAME.match(name):
        raise NotFound(f"no plot named {name!r}")
    if digest is not None and _DIGEST.match(digest):
        try:
            return ctx.blobs.get(f"{PLOT_PREFIX}/{digest}.png"), True
        except NotFound:
            pass  # pruned: the latest drawing instead
    key = latest_plots(ctx).get(name)
    if key is not None:
        try:
            return ctx.blobs.get(key), False
        except NotFound:
            pass
    raise NotFound(f"no plot named {name!r} is stored; open the report page to draw the plots")
