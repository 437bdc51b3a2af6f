from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from encore.errors import InvalidInput
from encore.feedback import DatasetClip, purge

NOW = datetime(2026, 6, 1, 12, 0)


def _clip(cid: str, score: float, *, days: float = 1.0, version: str = "v1",
          conf: float = 0.5) -> DatasetClip:
    return DatasetClip(cid, score, conf, added_at=NOW - timedelta(days=days), version_id=version)


def _sim(n: int, pairs: dict[tuple[int, int], float]) -> np.ndarray:
    s = np.full((n, n), 0.1)
    np.fill_diagonal(s, 1.0)
    for (i, j), v in pairs.items():
        s[i, j] = s[j, i] = v
    return s


def test_keeps_the_better_of_near_duplicates_and_records_why() -> None:
    ds = [_clip("low", 0.4), _clip("high", 0.7), _clip("other", 0.5)]
    r = purge(ds, _sim(3, {(0, 1): 0.97}), now=NOW)
    assert set(r.kept) == {"high", "other"}
    (rm,) = r.removed
    assert (rm.clip_id, rm.rule, rm.kept_clip_id) == ("low", "near_duplicate", "high")
    assert "near-duplicate" in rm.reason and "'high'" in rm.reason and "R=0.7000" in rm.reason


def test_threshold_is_strict() -> None:
    ds = [_clip("a", 0.4), _clip("b", 0.7)]
    assert purge(ds, _sim(2, {(0, 1): 0.95}), now=NOW).removed == ()


def test_chains_are_resolved_from_best_to_worst() -> None:
    # a~b and b~c but not a~c: b leaves (duplicate of a), c stays since b is gone
    ds = [_clip("c", 0.5), _clip("b", 0.6), _clip("a", 0.9)]
    r = purge(ds, _sim(3, {(0, 1): 0.99, (1, 2): 0.99}), now=NOW)
    assert r.kept == ("a", "c")
    assert [(x.clip_id, x.kept_clip_id) for x in r.removed] == [("b", "a")]


def test_old_clips_and_retired_versions_leave_with_reasons() -> None:
    ds = [_clip("old", 0.9, days=200), _clip("retired", 0.9, version="v0"),
          _clip("fresh", 0.3, days=10)]
    r = purge(ds, None, now=NOW, retired_versions={"v0"}, max_age=timedelta(days=180))
    assert r.kept == ("fresh",)
    by_id = {x.clip_id: x for x in r.removed}
    assert by_id["old"].rule == "too_old" and "200.0 days" in by_id["old"].reason
    assert by_id["retired"].rule == "retired_version" and "'v0'" in by_id["retired"].reason
    assert by_id["old"].kept_clip_id is None


def test_clips_that_leave_anyway_do_not_knock_out_their_twins() -> None:
    ds = [_clip("retired_twin", 0.9, version="v0"), _clip("keeper", 0.5)]
    r = purge(ds, _sim(2, {(0, 1): 0.99}), now=NOW, retired_versions=["v0"])
    assert r.kept == ("keeper",)


def test_cap_removes_the_lowest_r_first() -> None:
    ds = [_clip(f"c{i}", s) for i, s in enumerate([0.3, 0.9, 0.5, 0.7, 0.1])]
    r = purge(ds, None, now=NOW, max_size=3)
    assert r.kept == ("c1", "c3", "c2")
    assert [x.clip_id for x in r.removed] == ["c0", "c4"]
    assert all(x.rule == "over_capacity" and x.kept_clip_id == "c2" for x in r.removed)
    assert "capped at 3" in r.removed[0].reason


def test_ties_are_broken_deterministically() -> None:
    # equal R: higher confidence, then newer, then smaller id
    ds = [_clip("z", 0.5, conf=0.5, days=5), _clip("y", 0.5, conf=0.9, days=5),
          _clip("x", 0.5, conf=0.5, days=1), _clip("w", 0.5, conf=0.5, days=5)]
    assert purge(ds, None, now=NOW).kept == ("y", "x", "w", "z")
    twins = purge(ds[2:], _sim(2, {(0, 1): 0.99}), now=NOW)
    assert twins.kept == ("x",)  # newer of two equal clips


def test_every_clip_is_accounted_for(rng: np.random.Generator) -> None:
    n = 40
    ds = [_clip(f"c{i:02d}", float(rng.uniform(0, 1)), days=float(rng.uniform(0, 300)),
                version=str(rng.choice(["v0", "v1", "v2"]))) for i in range(n)]
    a = rng.uniform(0.5, 1.0, (n, n))
    r = purge(ds, (a + a.T) / 2, now=NOW, retired_versions={"v0"}, max_size=5)
    assert len(r.kept) <= 5
    assert sorted([*r.kept, *(x.clip_id for x in r.removed)]) == sorted(d.clip_id for d in ds)
    assert all(x.reason for x in r.removed)
    assert r == purge(ds, (a + a.T) / 2, now=NOW, retired_versions={"v0"}, max_size=5)


def test_bad_inputs_raise() -> None:
    ds = [_clip("a", 0.4), _clip("b", 0.7)]
    with pytest.raises(InvalidInput, match="not symmetric"):
        purge(ds, np.array([[1.0, 0.2], [0.3, 1.0]]), now=NOW)
    with pytest.raises(InvalidInput, match="now is required"):
        purge(ds, None)
    with pytest.raises(InvalidInput, match="has no added_at"):
        purge([DatasetClip("a", 0.5)], None, now=NOW)
    with pytest.raises(InvalidInput, match="max_size=0"):
        purge(ds, None, now=NOW, max_size=0)
