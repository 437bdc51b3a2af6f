"""Model versions: v0 is the shipped base model; v1, v2, … come from fine-tuning.

Only ``active`` versions are served, drawn by their A/B weight. A version's files are
complete before its row exists (published atomically).

A version's files live in the blob store (:mod:`encore.store.folders`): its ``folder`` is a
reference ``blob:models/<sha256 of its manifest>``, and every process that needs the files
(a generation worker on any host, a fine-tune) gets a local copy through
:func:`local_folder`, made once per host under ``Settings.resolved_model_cache_dir``. A
``folder`` that is a plain path (versions registered before issue 17, ``import --no-copy``)
is used as is and reaches only the hosts that see that path. ``purged:`` marks a retired
version whose files were deleted (:func:`purge_version`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from encore.errors import Conflict, InvalidInput, NotFound
from encore.services.context import ServiceContext
from encore.store import ModelVersion, VersionStatus, utcnow
from encore.store.folders import (
    delete_folder,
    fetch_folder,
    is_blob_ref,
    publish_folder,
    ref_digest,
)

logger = logging.getLogger(__name__)

BASE_VERSION_NAME = "v0"
#: ``folder`` prefix of a version whose files were purged.
PURGED_PREFIX = "purged:"


def store_folder(ctx: ServiceContext, folder: Path) -> str:
    """Publish a complete model folder to the blob store; return the reference that goes in
    a version's ``folder`` (call it before the transaction that adds the row)."""
    if not (Path(folder) / "unet").is_dir():
        raise InvalidInput(f"{folder} is not a model folder (no unet/)")
    return publish_folder(ctx.blobs, Path(folder))


def local_folder(ctx: ServiceContext, version: ModelVersion) -> Path:
    """A local folder holding ``version``'s files: the host's cached copy of its published
    files (fetched from the blob store the first time), or its path for a local version.

    Raises
    ------
    NotFound
        If the version was purged, or its files are missing.
    """
    folder = version.folder
    if folder.startswith(PURGED_PREFIX):
        raise NotFound(f"the files of version {version.name} were purged")
    if is_blob_ref(folder):
        return fetch_folder(ctx.blobs, folder, ctx.settings.resolved_model_cache_dir)
    path = Path(folder)
    if not path.is_dir():
        raise NotFound(f"the folder {path} of version {version.name} is not on this host")
    return path


def ensure_base_version(ctx: ServiceContext) -> ModelVersion:
    """Register the shipped base model as v0 (active, weight 1) if no version exists yet."""
    with ctx.reading() as session:
        existing = session.scalar(sa.select(ModelVersion).order_by(ModelVersion.id).limit(1))
    if existing is not None:
        return existing
    folder = Path(ctx.settings.base_model_dir)
    if not (folder / "unet").is_dir():
        raise NotFound(f"the base model folder {folder} has no unet/; is the package complete?")
    ref = store_folder(ctx, folder)  # before the transaction (uploads may take a while)
    try:
        with ctx.session() as session:
            if session.scalar(sa.select(ModelVersion.id).limit(1)) is not None:
                return session.scalar(sa.select(ModelVersion).order_by(ModelVersion.id).limit(1))
            version = ModelVersion(
                name=BASE_VERSION_NAME,
                folder=ref,
                status=VersionStatus.ACTIVE,
                ab_weight=1.0,
                activated_at=utcnow(),
                notes="the shipped base model",
            )
            session.add(version)
            session.flush()
            logger.info("registered base model %s as %s", folder, BASE_VERSION_NAME)
            return version
    except sa.exc.IntegrityError:
        # PostgreSQL has no writer lock: concurrent first requests (other threads or web
        # processes) all found no version; the first insert won, the others read it.
        with ctx.reading() as session:
            existing = session.scalar(sa.select(ModelVersion).order_by(ModelVersion.id).limit(1))
        if existing is None:
            raise
        return existing


def active_weights(session: Session) -> dict[int, float]:
    """``{version id: A/B weight}`` of the active versions with a positive weight."""
    rows = session.execute(
        sa.select(ModelVersion.id, ModelVersion.ab_weight).where(
            ModelVersion.status == VersionStatus.ACTIVE, ModelVersion.ab_weight > 0
        )
    ).all()
    return {row.id: float(row.ab_weight) for row in rows}


def list_versions(ctx: ServiceContext) -> list[ModelVersion]:
    with ctx.reading() as session:
        return list(session.scalars(sa.select(ModelVersion).order_by(ModelVersion.id)))


def _version_in(session: Session, version_id: int, *, lock: bool = False) -> ModelVersion:
    """The version row ``version_id`` (locked for update with ``lock``); NotFound if none."""
    version = session.get(ModelVersion, version_id, with_for_update=True if lock else None)
    if version is None:
        raise NotFound(f"model version {version_id} does not exist")
    return version


def parent_in(session: Session, version_id: int, *, to: str) -> ModelVersion:
    """The version ``version_id`` as the parent of new versions; NotFound if none, Conflict
    if it is retired (``to``: what was asked, for the message: "fine-tune")."""
    parent = _version_in(session, version_id)
    if parent.status is VersionStatus.RETIRED:
        raise Conflict(f"version {parent.name} is retired; {to} an active or draft version")
    return parent


def get_version(ctx: ServiceContext, version_id: int) -> ModelVersion:
    with ctx.reading() as session:
        return _version_in(session, version_id)


def version_by_name(ctx: ServiceContext, name: str) -> ModelVersion:
    with ctx.reading() as session:
        version = session.scalar(sa.select(ModelVersion).where(ModelVersion.name == name))
        if version is None:
            raise NotFound(f"model version {name!r} does not exist")
        return version


def _check_weight(ab_weight: float) -> float:
    w = float(ab_weight)
    if not w >= 0 or w != w or w > 1e6:
        raise InvalidInput(f"A/B weight {ab_weight!r} must be a number ≥ 0")
    return w


#: The gate record of a fine-tuned draft whose gate has not finished (activation refused).
GATE_PENDING = {"passed": False, "pending": True,
                "reasons": ["its gate has not finished (`encore versions gate NAME` reruns it)"]}


def gate_failure(version: ModelVersion) -> str | None:
    """Why a version failed its gate (:mod:`encore.services.gating`), or None (passed, or
    never gated: v0, imported versions)."""
    gate = (version.metrics or {}).get("gate")
    if not isinstance(gate, dict) or gate.get("passed", True):
        return None
    return "; ".join(str(r) for r in gate.get("reasons", [])) or "the gate failed"


def activate_version(
    ctx: ServiceContext, *, version_id: int, ab_weight: float = 1.0, force: bool = False
) -> ModelVersion:
    """Serve ``version_id`` with weight ``ab_weight`` (alongside the other active versions).

    Raises
    ------
    Conflict
        The version is retired, or it is a draft that failed its gate and ``force`` is not
        set (the message gives the reasons).
    """
    w = _check_weight(ab_weight)
    with ctx.session() as session:
        version = _version_in(session, version_id)
        if version.status is VersionStatus.RETIRED:
            raise Conflict(f"version {version.name} is retired and cannot be served again")
        failure = gate_failure(version)
        if failure and not force and version.status is VersionStatus.DRAFT:
            raise Conflict(f"version {version.name} failed its gate against its parent ({failure}); "
                           "it stays a draft unless the operator forces its activation "
                           "(`encore versions activate NAME --force`, or the versions page's "
                           "checkbox)")
        if failure and force:
            logger.warning("version %s activated despite its failed gate: %s", version.name, failure)
        version.status = VersionStatus.ACTIVE
        version.ab_weight = w
        version.activated_at = version.activated_at or utcnow()
        return version


def set_ab_weight(ctx: ServiceContext, *, version_id: int, ab_weight: float) -> ModelVersion:
    w = _check_weight(ab_weight)
    with ctx.session() as session:
        version = _version_in(session, version_id)
        version.ab_weight = w
        return version


def retire_version(ctx: ServiceContext, *, version_id: int) -> ModelVersion:
    """Stop serving a version for good (its clips leave the dataset at the next purge)."""
    with ctx.session() as session:
        version = _version_in(session, version_id)
        others = session.scalar(
            sa.select(sa.func.count()).where(
                ModelVersion.status == VersionStatus.ACTIVE,
                ModelVersion.id != version.id,
                ModelVersion.ab_weight > 0,
            )
        )
        if version.status is VersionStatus.ACTIVE and not others:
            raise Conflict(f"{version.name} is the only active version; activate another first")
        version.status = VersionStatus.RETIRED
        version.retired_at = utcnow()
        return version


def next_version_name(session: Session) -> str:
    """The name the next registered version gets: ``v<number of versions>``."""
    count = session.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) or 0
    return f"v{count}"


def register_version(
    session: Session,
    *,
    folder: Path | str,
    parent_id: int | None,
    metrics: dict | None = None,
    notes: str | None = None,
    taste_selection: bool = False,
) -> ModelVersion:
    """Add the row of a complete model folder (draft) inside the caller's transaction.

    ``taste_selection``: the version serves the best of n candidates by the listeners'
    taste model (fine-tuned versions, by ``Settings.taste_selection_new_versions``).

    For callers that must record more in the same transaction (a fine-tune links its run).
    ``folder`` is the reference :func:`store_folder` returned (the files are in the blob
    store), or a local model folder (reachable only where that path exists).
    """
    if is_blob_ref(folder):
        ref_digest(str(folder))  # well-formed
        stored = str(folder)
    elif not (Path(folder) / "unet").is_dir():
        raise InvalidInput(f"{folder} is not a model folder (no unet/)")
    else:
        stored = str(Path(folder).resolve())
    version = ModelVersion(
        name=next_version_name(session),
        folder=stored,
        parent_id=parent_id,
        status=VersionStatus.DRAFT,
        ab_weight=0.0,
        metrics=metrics or {},
        notes=notes,
        taste_selection=taste_selection,
    )
    session.add(version)
    session.flush()
    return version


def publish_version(
    ctx: ServiceContext,
    *,
    folder: Path,
    parent_id: int | None,
    metrics: dict | None = None,
    notes: str | None = None,
) -> ModelVersion:
    """Publish a complete model folder to the blob store and register it as the next
    version (draft until activated)."""
    ref = store_folder(ctx, Path(folder))
    with ctx.session() as session:
        return register_version(session, folder=ref, parent_id=parent_id, metrics=metrics,
                                notes=notes)


def import_version(
    ctx: ServiceContext, folder: Path, *, copy: bool = True, notes: str | None = None
) -> ModelVersion:
    """Make an external model folder (encore's or audio-diffusion's layout) a draft version.

    The folder is loaded once to check that it is a usable model (UNet, mel config,
    scheduler). With ``copy`` (the default) its files are published to the blob store, so
    that the version depends neither on the original nor on this host; otherwise the
    version points at ``folder`` itself (one host only).

    Raises
    ------
    NotFound
        If ``folder`` does not exist or lacks a UNet or mel config.
    InvalidInput
        If it is not a model folder.
    """
    from encore.diffusion.folder import load_model_folder

    source = Path(folder)
    if not (source / "unet").is_dir():
        raise InvalidInput(f"{source} is not a model folder (no unet/)")
    model = load_model_folder(source, device="cpu")
    logger.info("importing %s (%s layout, %d mel bins, %.1f M parameters)", source,
                model.denoiser.config.layout, model.mel_config.y_res,
                model.denoiser.num_parameters() / 1e6)
    notes = notes or f"imported from {source.resolve()}"
    if not copy:
        with ctx.session() as session:
            return register_version(session, folder=source.resolve(), parent_id=None, notes=notes)
    return publish_version(ctx, folder=source, parent_id=None, notes=notes)


def export_version(ctx: ServiceContext, *, version_id: int, target: Path) -> Path:
    """Copy a version's files to the new local folder ``target`` (from any blob store)."""
    import shutil

    version = get_version(ctx, version_id)
    target = Path(target)
    if target.exists():
        raise Conflict(f"{target} already exists; export into a new folder")
    source = local_folder(ctx, version)
    tmp = target.with_name(f".{target.name}.tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def purge_version(ctx: ServiceContext, *, version_id: int) -> int:
    """Delete a retired version's files from the blob store (and this host's cached copy);
    its row stays (clips and ratings refer to it), its ``folder`` marked ``purged:``.
    Returns how many blobs were deleted (0 when another version has the same files).

    Raises
    ------
    Conflict
        If the version is not retired.
    """
    import shutil

    with ctx.session() as session:
        version = _version_in(session, version_id, lock=True)
        if version.status is not VersionStatus.RETIRED:
            raise Conflict(f"{version.name} is {version.status}; retire it before purging its files")
        folder = version.folder
        if folder.startswith(PURGED_PREFIX):
            return 0
        version.folder = PURGED_PREFIX + folder
        shared = session.scalar(
            sa.select(sa.func.count()).where(ModelVersion.folder == folder, ModelVersion.id != version.id)
        )
    if not is_blob_ref(folder) or shared:
        return 0  # a local folder belongs to its owner; shared files stay for the other row
    deleted = delete_folder(ctx.blobs, folder)
    shutil.rmtree(ctx.settings.resolved_model_cache_dir / ref_digest(folder), ignore_errors=True)
    logger.info("purged the files of version %s (%d blobs)", version.name, deleted)
    return deleted


def prune_model_cache(ctx: ServiceContext) -> list[str]:
    """Delete this host's cached copies of versions that are no longer served or drafted
    (retired or purged, or unknown to the database); return the digests removed.

    Safe while workers run: a version that is active or a draft keeps its copy, and a copy
    removed by mistake is fetched again at its next use.
    """
    import shutil

    cache = ctx.settings.resolved_model_cache_dir
    if not cache.is_dir():
        return []
    with ctx.reading() as session:
        rows = session.execute(sa.select(ModelVersion.folder, ModelVersion.status)).all()
    keep = {ref_digest(folder) for folder, status in rows
            if is_blob_ref(folder) and status is not VersionStatus.RETIRED}
    removed = []
    for entry in sorted(cache.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    if removed:
        logger.info("removed %d cached model versions from %s", len(removed), cache)
    return removed
