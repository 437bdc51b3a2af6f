"""The report's plots as blobs (issue 17): stored under their content hash in the blob store
(a local folder, and moto's S3 server), served from another process's context, old ones
pruned."""

from __future__ import annotations

import os
import time

import pytest

from encore.errors import NotFound
from encore.services import report, report_blobs
from encore.services.context import ServiceContext

from .test_report_service import paired_platform  # noqa: F401  (the fixture)

NAMES = ["rating_distributions.png", "ratings_per_version.png", "version_gains.png"]


def _publish(ctx: ServiceContext, **kw) -> list[report_blobs.StoredPlot]:
    return report_blobs.publish_report_plots(ctx, report=report.build_report(ctx, n_resamples=200),
                                             **kw)


def test_plots_are_blobs_named_by_their_content(ctx, paired_platform) -> None:  # noqa: F811
    with pytest.raises(NotFound, match="open the report page"):
        report_blobs.report_plot_png(ctx, "ratings_per_version.png")  # none drawn yet
    plots = _publish(ctx)
    assert sorted(p.name for p in plots) == NAMES
    assert ctx.blobs.list_keys(report_blobs.PLOT_PREFIX) == sorted(p.key for p in plots)
    assert report_blobs.latest_plots(ctx) == {p.name: p.key for p in plots}
    for plot in plots:
        png, exact = report_blobs.report_plot_png(ctx, plot.name, plot.digest)
        assert exact and png[:4] == b"\x89PNG" and report_blobs.plot_key(png) == plot.key
        assert report_blobs.report_plot_png(ctx, plot.name) == (png, False)  # the latest
    assert {p.title for p in plots} >= {"ratings per version"}
    # the same ratings draw the same images: same keys, nothing added
    assert [p.key for p in _publish(ctx)] == [p.key for p in plots]
    assert len(ctx.blobs.list_keys(report_blobs.PLOT_PREFIX)) == 3
    assert not (ctx.settings.data_dir / "web" / "report-plots").exists()  # no local folder
    for bad in ("../encore.db", "x.svg", plots[0].digest + ".png/../x.png"):
        with pytest.raises(NotFound):
            report_blobs.report_plot_png(ctx, bad, plots[0].digest)
    # a digest no longer stored: the latest drawing of that name, not cacheable for good
    gone, exact = report_blobs.report_plot_png(ctx, plots[0].name, "0" * 32)
    assert not exact and report_blobs.plot_key(gone) == plots[0].key


def test_old_plots_are_pruned_and_recent_ones_kept(ctx, paired_platform) -> None:  # noqa: F811
    prefix = report_blobs.PLOT_PREFIX
    stale, recent = f"{prefix}/{'a' * 32}.png", f"{prefix}/{'b' * 32}.png"
    ctx.blobs.put(stale, b"an old drawing", content_type="image/png")
    ctx.blobs.put(recent, b"drawn a minute ago on another host", content_type="image/png")
    path = ctx.blobs.local_path(stale)
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert ctx.blobs.modified(stale) == pytest.approx(time.time() - 7200, abs=5)
    plots = _publish(ctx)
    keys = ctx.blobs.list_keys(prefix)
    assert stale not in keys and recent in keys
    assert set(keys) == {recent, *(p.key for p in plots)}
    # encore blobs gc --min-age 0: every plot but the latest drawing's goes
    assert report_blobs.prune_report_plots(ctx, older_than=0, dry_run=True) == [recent]
    assert ctx.blobs.list_keys(prefix) == sorted(keys)
    assert report_blobs.prune_report_plots(ctx, older_than=0) == [recent]
    assert ctx.blobs.list_keys(prefix) == sorted(p.key for p in plots)
    ctx.blobs.delete(report_blobs.INDEX_KEY)  # without an index only `keep` is kept
    assert report_blobs.prune_report_plots(ctx, keep=[plots[0].key], older_than=0) == \
        sorted(p.key for p in plots[1:])
    assert ctx.blobs.list_keys(prefix) == [plots[0].key]


def test_plots_on_s3_are_served_by_another_host(
    settings, paired_platform, s3_server, tmp_path  # noqa: F811
) -> None:
    storage = {"storage_url": f"s3://{s3_server.new_bucket()}/encore",
               "storage_options": s3_server.storage_options()}
    # the database of paired_platform, the blobs in S3; two hosts with their own data folders
    web1 = ServiceContext.from_settings(settings.model_copy(update=storage), seed=1)
    web2 = ServiceContext.from_settings(settings.model_copy(
        update={**storage, "data_dir": tmp_path / "host2"}), seed=2)
    plots = _publish(web1)
    assert sorted(p.name for p in plots) == NAMES
    assert web2.blobs.list_keys(report_blobs.PLOT_PREFIX) == sorted(p.key for p in plots)
    for plot in plots:
        png, exact = report_blobs.report_plot_png(web2, plot.name, plot.digest)
        assert exact and png[:4] == b"\x89PNG" and report_blobs.plot_key(png) == plot.key
        assert report_blobs.report_plot_png(web2, plot.name) == (png, False)
        assert web2.blobs.fs.info(web2.blobs._path(plot.key))["ContentType"] == "image/png"
    assert abs(web2.blobs.modified(plots[0].key) - time.time()) < 120  # S3's LastModified
    other = f"{report_blobs.PLOT_PREFIX}/{'c' * 32}.png"
    web2.blobs.put(other, b"drawn just now by host 2")
    _publish(web1)  # a recent plot of another host survives a drawing here
    assert web2.blobs.exists(other)
    assert report_blobs.prune_report_plots(web2, older_than=0) == [other]
    assert not web1.blobs.exists(other)
    assert all(web1.blobs.exists(p.key) for p in plots)
