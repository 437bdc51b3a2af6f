"""Model versions: v0 is the shipped base model; v1, v2, … come from fine-tuning.

Only ``active`` versions are served, drawn by their A/B weight. A version's files are
complete before its row exists (published atomically).
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

logger = logging.getLogger(__name__)

BASE_VERSION_NAME = "v0"


def ensure_base_version(ctx: ServiceContext) -> ModelVersion:
    """Register the shipped base model as v0 (active, weight 1) if no version exists yet."""
    with ctx.reading() as session:
        existing = session.scalar(sa.select(ModelVersion).order_by(ModelVersion.id).limit(1))
    if existing is not None:
        return existing
    folder = Path(ctx.settings.base_model_dir)
    if not (folder / "unet").is_dir():
        raise NotFound(f"the base model folder {folder} has no unet/; is the package complete?")
    with ctx.session() as session:
        if session.scalar(sa.select(ModelVersion.id).limit(1)) is not None:
            return session.scalar(sa.select(ModelVersion).order_by(ModelVersion.id).limit(1))
        version = ModelVersion(
            name=BASE_VERSION_NAME,
            folder=str(folder.resolve()),
            status=VersionStatus.ACTIVE,
            ab_weight=1.0,
            activated_at=utcnow(),
            notes="the shipped base model",
        )
        session.add(version)
        session.flush()
        logger.info("registered base model %s as %s", folder, BASE_VERSION_NAME)
        return version


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


def get_version(ctx: ServiceContext, version_id: int) -> ModelVersion:
    with ctx.reading() as session:
        version = session.get(ModelVersion, version_id)
        if version is None:
            raise NotFound(f"model version {version_id} does not exist")
        return version


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


def activate_version(ctx: ServiceContext, *, version_id: int, ab_weight: float = 1.0) -> ModelVersion:
    """Serve ``version_id`` with weight ``ab_weight`` (alongside the other active versions)."""
    w = _check_weight(ab_weight)
    with ctx.session() as session:
        version = session.get(ModelVersion, version_id)
        if version is None:
            raise NotFound(f"model version {version_id} does not exist")
        if version.status is VersionStatus.RETIRED:
            raise Conflict(f"version {version.name} is retired and cannot be served again")
        version.status = VersionStatus.ACTIVE
        version.ab_weight = w
        version.activated_at = version.activated_at or utcnow()
        return version


def set_ab_weight(ctx: ServiceContext, *, version_id: int, ab_weight: float) -> ModelVersion:
    w = _check_weight(ab_weight)
    with ctx.session() as session:
        version = session.get(ModelVersion, version_id)
        if version is None:
            raise NotFound(f"model version {version_id} does not exist")
        version.ab_weight = w
        return version


def retire_version(ctx: ServiceContext, *, version_id: int) -> ModelVersion:
    """Stop serving a version for good (its clips leave the dataset at the next purge)."""
    with ctx.session() as session:
        version = session.get(ModelVersion, version_id)
        if version is None:
            raise NotFound(f"model version {version_id} does not exist")
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
    folder: Path,
    parent_id: int | None,
    metrics: dict | None = None,
    notes: str | None = None,
) -> ModelVersion:
    """Add the row of a complete model folder (draft) inside the caller's transaction.

    For callers that must record more in the same transaction (a fine-tune links its run).
    """
    if not (Path(folder) / "unet").is_dir():
        raise InvalidInput(f"{folder} is not a model folder (no unet/)")
    version = ModelVersion(
        name=next_version_name(session),
        folder=str(Path(folder).resolve()),
        parent_id=parent_id,
        status=VersionStatus.DRAFT,
        ab_weight=0.0,
        metrics=metrics or {},
        notes=notes,
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
    """Register a complete model folder as the next version (draft until activated)."""
    with ctx.session() as session:
        return register_version(session, folder=folder, parent_id=parent_id, metrics=metrics,
                                notes=notes)


def import_version(
    ctx: ServiceContext, folder: Path, *, copy: bool = True, notes: str | None = None
) -> ModelVersion:
    """Make an external model folder (encore's or audio-diffusion's layout) a draft version.

    The folder is loaded once to check that it is a usable model (UNet, mel config,
    scheduler). With ``copy`` (the default) it is first copied, atomically, to
    ``data_dir/models/import-<n>`` so that the version does not depend on the original;
    otherwise the version points at ``folder`` itself.

    Raises
    ------
    NotFound
        If ``folder`` does not exist or lacks a UNet or mel config.
    InvalidInput
        If it is not a model folder.
    """
    import shutil
    import tempfile

    from encore.diffusion.folder import load_model_folder

    source = Path(folder)
    if not (source / "unet").is_dir():
        raise InvalidInput(f"{source} is not a model folder (no unet/)")
    model = load_model_folder(source, device="cpu")
    logger.info("importing %s (%s layout, %d mel bins, %.1f M parameters)", source,
                model.denoiser.config.layout, model.mel_config.y_res,
                model.denoiser.num_parameters() / 1e6)
    target = source.resolve()
    if copy:
        models_dir = (ctx.settings.data_dir / "models").resolve()
        models_dir.mkdir(parents=True, exist_ok=True)
        n = 1
        while (models_dir / f"import-{n}").exists():
            n += 1
        target = models_dir / f"import-{n}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=models_dir))
        try:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return publish_version(ctx, folder=target, parent_id=None,
                           notes=notes or f"imported from {source.resolve()}")
