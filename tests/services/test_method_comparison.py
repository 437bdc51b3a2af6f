"""``encore finetune compare`` (issue 16: every method on the same campaign's data, one table):
a tiny installation with real ratings, taste groups and a curated dataset, real tiny models;
each method's child is trained, judged on one panel by one gating taste model, and nothing is
published or activated."""

from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa

from encore import cli, config
from encore.diffusion.folder import load_model_folder
from encore.errors import InvalidInput
from encore.services import accounts, comparison, gating, preferences, taste, versions
from encore.services.context import ServiceContext
from encore.store import ModelVersion, TrainingRun

from .finetune_helpers import add_dataset_clips
from .test_taste_groups import six_raters

TINY = {"steps": 2, "batch_size": 4, "eval_every": 2, "eval_crops": 4, "parent_replay_clips": 2,
        "eval_steps": 2, "eval_clips": 0, "taste_pair_share": 0.0}


def _campaign(ctx, make_listener, song_bytes) -> None:
    """Six raters (two ratings each of their own song's variations: pairs and labels), a taste
    snapshot with its groups, three curated dataset clips; a small gating panel."""
    ctx.settings.best_of_n = 1
    ctx.settings.gate_panel_songs = 3
    ctx.settings.gate_panel_seeds = 2
    six_raters(ctx, make_listener, song_bytes)
    taste.fit_snapshot(ctx, reason="manual", evaluate=False)
    add_dataset_clips(ctx, [0.9, 0.6, 0.8], [1.0, 0.5, 0.8])


def _served_state(ctx) -> list[tuple]:
    with ctx.reading() as session:
        rows = session.scalars(sa.select(ModelVersion).order_by(ModelVersion.id)).all()
        return [(v.id, v.name, str(v.status), v.ab_weight, v.folder) for v in rows]


def test_every_method_is_trained_and_judged_on_one_panel_and_nothing_is_published(
    ctx, make_listener, song_bytes, monkeypatch
) -> None:
    _campaign(ctx, make_listener, song_bytes)
    v0 = versions.ensure_base_version(ctx)
    before = _served_state(ctx)
    fits = []
    real_fit = gating.gating_taste_model
    monkeypatch.setattr(gating, "gating_taste_model", lambda c: fits.append(1) or real_fit(c))
    renders = []
    real_render = gating._render_panel
    monkeypatch.setattr(gating, "_render_panel", lambda c, engine, *a: renders.append(
        str(engine.model.path)) or real_render(c, engine, *a))

    report = comparison.compare_methods(ctx, parent_version_id=v0.id, settings=TINY,
                                        methods="paper,dpo,kto,dpo+conditioned")
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["paper", "dpo", "kto", "dpo+conditioned"]
    assert all(r["error"] is None and r["gate"]["passed"] in (True, False) for r in rows.values())
    # the same data: the examples each method would start a run with, read once
    pairs, _ = preferences.build_examples(ctx, "dpo", taste_share=0.0)
    labels, _ = preferences.build_examples(ctx, "kto", taste_share=0.0)
    assert rows["paper"]["examples"] == 3 and rows["paper"]["unit"] == "clips"
    assert rows["dpo"]["examples"] == rows["dpo+conditioned"]["examples"] == len(pairs) > 0
    assert rows["kto"]["examples"] == len(labels) > 0
    assert all(r["train"] + r["heldout"] + r["dropped"] == r["examples"] for r in rows.values())
    # too few examples for the default method's minimum: named here, so run, and said so
    assert "would fall back to paper" in rows["dpo"]["fallback"] and rows["paper"]["fallback"] is None
    # one parent, one panel, one gating taste model (fitted once), the parent rendered once
    assert len(fits) == 1
    assert {r["parent_id"] if "parent_id" in r else report["parent_id"] for r in rows.values()} == {v0.id}
    assert all(r["panel"]["songs"] == report["panel"]["songs"] and r["panel"]["seeds"] == report["panel"]["seeds"]
               for r in rows.values())
    assert all(r["taste_model"] == report["taste_model"] for r in rows.values())
    assert all([g["listeners"] for g in r["groups"]] == report["groups"] for r in rows.values())
    parent_path = str(load_model_folder(versions.local_folder(ctx, v0), device="cpu").path)
    assert renders.count(parent_path) == 1 and len(renders) > 4
    # each child trained by its own method; the conditioned one on the snapshot's groups
    for label, row in rows.items():
        child = load_model_folder(row["model_dir"], device="cpu")
        assert child.meta["training"]["comparison_method"] == label
        assert row["steps"] == 2 and row["train_seconds"] > 0
    cond = load_model_folder(rows["dpo+conditioned"]["model_dir"], device="cpu")
    assert cond.denoiser.num_groups == rows["dpo+conditioned"]["taste_groups"]["k"] >= 2
    assert load_model_folder(rows["dpo"]["model_dir"], device="cpu").denoiser.num_groups == 0
    # nothing published, activated or recorded as a run; the report is kept beside the children
    assert _served_state(ctx) == before
    with ctx.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(TrainingRun)) == 0
    stored = json.loads((ctx.settings.data_dir / "compare" / report["comparison"] / "comparison.json").read_text())
    assert [r["method"] for r in stored["rows"]] == list(rows)
    table = comparison.table(report)
    assert len(table.splitlines()) == 2 + 4
    assert all(f"| {label} |" in table for label in rows)


def test_a_method_that_cannot_run_gets_its_row_and_bad_methods_are_refused(ctx, make_listener, song_bytes) -> None:
    v0 = versions.ensure_base_version(ctx)
    for bad, message in (("", "no method"), ("paper,sft", "unknown method 'sft'"),
                         ("dpo,dpo", "named twice"), ("paper+conditioned", "not a method")):
        with pytest.raises(InvalidInput, match=message):
            comparison.compare_methods(ctx, parent_version_id=v0.id, methods=bad)
    with pytest.raises(InvalidInput, match="chosen per method"):
        comparison.compare_methods(ctx, parent_version_id=v0.id, methods="dpo", settings={"method": "kto"})
    assert not (ctx.settings.data_dir / "compare").exists()

    ctx.settings.best_of_n = 1
    ctx.settings.gate_panel_songs = 2
    ctx.settings.gate_panel_seeds = 2
    six_raters(ctx, make_listener, song_bytes)  # ratings, but no dataset and no stored groups
    report = comparison.compare_methods(ctx, parent_version_id=v0.id, methods="kto,paper,kto+conditioned",
                                        settings={**TINY, "steps": 1})
    rows = {r["method"]: r for r in report["rows"]}
    assert rows["kto"]["error"] is None and rows["kto"]["steps"] == 1
    assert "curated dataset is empty" in rows["paper"]["error"] and "gate" not in rows["paper"]
    assert "no taste-model snapshot" in rows["kto+conditioned"]["error"]
    assert "not run: the curated dataset is empty" in comparison.table(report)


@pytest.mark.usefixtures("installation")  # env settings of a configured installation
def test_the_cli_prints_the_table_and_writes_csv(song_bytes, capsys, tmp_path, env_settings) -> None:
    # as the services' test settings: tiny clips, generated at once
    env_settings(ENCORE_QUEUE_IMMEDIATE="true", ENCORE_CLIP_SECONDS="1", ENCORE_DEFAULT_PIECE_SECONDS="1",
                 ENCORE_INFERENCE_STEPS="3", ENCORE_MIN_LISTEN_SECONDS="0.5", ENCORE_MIN_SONG_SECONDS="1",
                 ENCORE_GATE_PANEL_SONGS="2")
    ctx = ServiceContext.from_settings(config.get_settings())
    counter = iter(range(100))
    six_raters(ctx, lambda: accounts.create_user(ctx, email=f"l{next(counter)}@example.org",
                                                 password="listener-pass"), song_bytes)
    assert cli.main(["finetune", "compare", "--methods", "dpo,paper,bogus"]) == 2
    assert "unknown method 'bogus'" in capsys.readouterr().err

    out = tmp_path / "methods.csv"
    assert cli.main(["finetune", "compare", "--methods", "kto", "--steps", "1", "--eval-clips", "0",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "comparing kto from v0" in printed and "| kto | 12 labelled clips" in printed
    assert "nothing published" in printed
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["kto"] and rows[0]["steps"] == "1"
    assert rows[0]["gate_passed"] in ("True", "False") and rows[0]["group0_delta"] != ""
    assert [v.name for v in versions.list_versions(ctx)] == ["v0"]
