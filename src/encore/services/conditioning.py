"""Taste-conditioned versions in the services (docs/finetune.md, "Taste-conditioned generation").

A conditioned fine-tune (``encore finetune --conditioned``, ``dpo`` / ``kto``) fixes its taste
groups when the run starts: the groups stored with the newest taste-model snapshot that has
them (:func:`encore.services.taste.latest_groups`; :mod:`encore.taste.groups` fits them with
every snapshot), copied onto the run (:func:`run_groups`). Each
example is labelled with the group of the listener whose ratings made it
(:func:`training_conditioning`), and the groups go into the new version's folder
(``taste_groups.json``, :data:`~encore.diffusion.folder.TASTE_GROUPS_FILE`): the group numbers
of a version mean what they meant when it was trained, whatever has been fitted since.

Serving (:func:`serving_group`): a request to a conditioned version is sampled for the
requesting listener's group in that version's groups — the group it was clustered into, else
the one its songs predict (a listener who had no ratings when the version was trained), else
none (no analysed song: the version's unconditioned prediction). An unconditioned version
ignores groups.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from encore.errors import InvalidInput
from encore.services.context import ServiceContext
from encore.services.taste import group_of_listener, latest_groups, listener_profiles
from encore.taste.groups import TasteGroups

logger = logging.getLogger(__name__)

GROUPS_FILE = "taste_groups.json"  # the same name as encore.diffusion.folder.TASTE_GROUPS_FILE


def run_groups(ctx: ServiceContext, examples: Sequence[dict[str, Any]]) -> tuple[TasteGroups, dict[str, Any]]:
    """The taste groups a conditioned run labels its examples with, and their record; every
    example gets ``"group"``: its listener's group (``k``, the null label, where it has none).

    Raises
    ------
    InvalidInput
        No snapshot with taste groups yet (no taste model, or too few listeners with enough
        ratings to cluster).
    """
    latest = latest_groups(ctx)
    if latest is None:
        raise InvalidInput("a taste-conditioned fine-tune needs taste groups, and no taste-model snapshot "
                           "has any yet: they are fitted with each snapshot (`encore taste fit`) once enough "
                           "listeners have rated enough analysed clips")
    snapshot_id, groups = latest
    of = listener_groups(ctx, groups, [int(e["listener_id"]) for e in examples])
    for e in examples:
        g = of[int(e["listener_id"])]
        e["group"] = groups.k if g is None else int(g)
    record = {"taste_model_id": int(snapshot_id), "k": groups.k, "structured": groups.structured,
              "listeners_per_group": list(groups.sizes), "file": GROUPS_FILE}
    logger.info("taste groups for a conditioned fine-tune: k=%d (%s), sizes %s, from taste model %d",
                groups.k, "structured" if groups.structured else "no structure: BIC preferred one group",
                groups.sizes, snapshot_id)
    return groups, record


def listener_groups(ctx: ServiceContext, groups: TasteGroups, listener_ids: Sequence[int]) -> dict[int, int | None]:
    """Each listener's group: fitted, else from its songs, else None."""
    ids = sorted({int(u) for u in listener_ids})
    with ctx.reading() as session:
        profiles = listener_profiles(session, ids)
    return {u: groups.group_for(u, profiles[u]) for u in ids}


def training_conditioning(settings: Mapping[str, Any], examples: Sequence[Mapping[str, Any]]) -> Any:
    """The :class:`~encore.diffusion.preference.Conditioning` of a conditioned run (None for
    another run): the groups its examples were labelled with when it started (:func:`run_groups`)."""
    if not settings.get("conditioned"):
        return None
    from encore.diffusion.preference import Conditioning  # deferred: torch (web start-up)

    groups = TasteGroups.from_dict(settings["taste_groups"])
    return Conditioning(groups.k, [int(e["group"]) for e in examples],
                        dropout=float(settings["group_dropout"]),
                        embedding_lr_scale=float(settings["group_lr_scale"]),
                        record=dict(settings.get("taste_groups_record") or {}))


def version_groups(ctx: ServiceContext, model: Any) -> TasteGroups | None:
    """The taste groups a loaded conditioned version was trained on (cached per folder), or None
    (an unconditioned version, or a folder without them)."""
    if not getattr(model.denoiser, "num_groups", 0) or model.path is None:
        return None
    path = model.path / GROUPS_FILE

    def read() -> TasteGroups | None:
        if not path.is_file():
            logger.warning("%s is conditioned on %d taste groups but has no %s: served unconditioned",
                           model.path, model.denoiser.num_groups, GROUPS_FILE)
            return None
        return TasteGroups.from_json(path.read_text())

    return ctx.cached(("taste-groups", str(path)), read)


def serving_group(ctx: ServiceContext, model: Any, listener_id: int | None) -> int | None:
    """The taste group to sample a conditioned version for ``listener_id`` with (module
    docstring); None for an unconditioned version, no listener, or a listener without a group."""
    if listener_id is None:
        return None
    groups = version_groups(ctx, model)
    if groups is None:
        return None
    group = group_of_listener(ctx, groups, int(listener_id))
    if group is None or group >= model.denoiser.num_groups:
        return None
    return int(group)
