"""Model versions: v0 is the shipped base model; v1, v2, … come from fine-tuning.

Only ``active`` versions are served, drawn by their A/B weight. A version's files are
complete before its row exists (published atomically).
"""

from __future__ import annotations

import logging
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


def publish_version(
    ctx: ServiceContext,
    *,
    folder: Path,
    parent_id: int | None,
    metrics: dict | None = None,
    notes: str | None = None,
) -> ModelVersion:
    """Register a complete model folder as the next version (draft until activated)."""
    if not (Path(folder) / "unet").is_dir():
        raise InvalidInput(f"{folder} is not a model folder (no unet/)")
    with ctx.session() as session:
        count = session.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) or 0
        version = ModelVersion(
            name=f"v{count}",
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
