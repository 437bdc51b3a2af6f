"""The simulated pilot: listeners with hidden tastes drive a real ``encore serve`` over HTTP
through v0 → v1 → v2, and the operator closes the loop through the platform's operator API
(and CLI where the API has no route).

Protocol (the paper's §6):

1. Start a server with its own data folder; the operator signs in with the first-start
   password; each listener is invited (operator API), signs up and uploads its seed songs.
2. Round 0 serves v0. Each round is ``requests_per_round`` *waves*: in a wave every listener
   asks for music once (requests sent one after another, in a fixed order, so the server's
   seeded dispatch stream sees the same sequence every run), then all listeners at once wait
   for their clip, download it, hear it (features of the decoded audio), play it in real time
   with heartbeats of their played ranges, and rate it.
3. Between rounds the operator curates (rater model, scores, update rule), purges,
   fine-tunes the newest version on the dataset and activates the result with an A/B
   weight: round 1 serves v0 and v1, round 2 v0, v1 and v2.
4. At the end: a last curation (rater verdicts over all ratings), the report (Table 1, the
   change per iteration with 95 % intervals, plots: ``encore report``), the ratings CSV, and
   the rater-quality view, from which the detected adversaries are counted.

Listening is honest: the server clamps listened time to the wall time since the audio was
fetched, so a simulated listener really waits while it "plays". The tiny configuration
keeps that cheap with 1.5 s clips.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encore.errors import ConfigurationError, InvalidInput
from encore.sim.client import ApiClient, ApiError
from encore.sim.config import PilotConfig
from encore.sim.features import decode_features
from encore.sim.listeners import Decision, ListenerSpec, decide
from encore.sim.population import Population, SeedSong, draw_listeners
from encore.sim.server import PilotServer, ServerError
from encore.web.liveserver import build_tiny_models

logger = logging.getLogger(__name__)

PASSWORD = "simulated-listener-password"
# Ratings of new clips: by their requester (generate) or another listener (review).
NEW_CLIP_BRANCHES = ("generate", "review")
Log = Callable[[str], None]


@dataclass(frozen=True)
class RatingEvent:
    """One rating a simulated listener sent (what the simulation knows; the server does not
    know ``appeal`` or ``kind``)."""

    round: int
    wave: int
    listener: str
    kind: str
    delivery_id: int
    song_ids: tuple[int, ...]
    ranges: tuple[tuple[float, float], ...]
    listened_seconds: float
    stars: float
    appeal: float | None
    clip_seconds: float


@dataclass
class RoundRecord:
    round: int
    active_versions: dict[str, float]
    deliveries: list[int] = field(default_factory=list)
    ratings_sent: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class OperatorStep:
    after_round: int
    curation: dict[str, Any]
    dataset_before: int
    dataset_after_curation: int
    purge: dict[str, Any]
    dataset_after_purge: int
    parent: str
    new_version: str
    finetune_seconds: float
    activated: dict[str, float]
    finetune_via: str
    # the platform's gate verdict on the new version (the pilot activates it either way)
    gate: str = "not gated"


@dataclass
class PilotResult:
    """Everything the pilot measured (``summary.json`` in the work folder)."""

    config: str
    population: str
    seed: int
    workdir: str
    listeners: list[dict[str, Any]]
    rounds: list[RoundRecord]
    operator_steps: list[OperatorStep]
    events: list[RatingEvent]
    report: dict[str, Any] | None
    report_text: str
    csv_rows: list[dict[str, str]]
    raters: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    plots: list[str]
    detection: dict[str, Any]
    timings: dict[str, float]
    taste: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("csv_rows")
        return d


# --- the listeners' side ----------------------------------------------------------------------


@dataclass
class Participant:
    spec: ListenerSpec
    index: int
    client: ApiClient
    email: str
    user_id: int = 0
    song_ids: list[int] = field(default_factory=list)


def _choose_inputs(p: Participant, population: Population, rng: np.random.Generator) -> list[int]:
    ids = p.song_ids
    if len(ids) >= 2 and rng.random() < population.blend_share:
        pick = rng.choice(len(ids), size=2, replace=False)
        return [ids[int(i)] for i in sorted(pick)]
    return [ids[int(rng.integers(len(ids)))]]


def play(client: ApiClient, delivery_id: int, decision: Decision, heartbeat: float) -> dict[str, Any]:
    """Play ``decision.ranges`` in real time, sending heartbeats with the ranges played so
    far, then the final flush; returns the server's last listening state."""
    played: list[tuple[float, float]] = []
    for a, b in decision.ranges:
        pos = a
        while pos < b - 1e-9:
            step = min(heartbeat, b - pos)
            client.sleep(step)
            pos += step
            if pos < b - 1e-9:
                client.listen(delivery_id, [*played, (a, round(pos, 3))])
        played.append((a, b))
        if len(played) < len(decision.ranges):
            client.listen(delivery_id, played)
    return client.listen(delivery_id, played, final=True)


def _hear_and_rate(p: Participant, delivery_id: int, song_ids: list[int], round_: int, wave: int,
                   seed: int, cfg: PilotConfig) -> RatingEvent:
    view = p.client.wait_delivery(delivery_id, poll=cfg.poll_seconds)
    audio = p.client.audio(delivery_id)  # opens the delivery: the wall clock starts here
    features, seconds = decode_features(audio)
    clip_seconds = float(view.get("clip_seconds") or seconds)
    min_listen = float(view.get("min_listen_seconds") or 0.0)
    rng = np.random.default_rng([seed, p.index, round_, wave, 1])
    decision = decide(p.spec, features, clip_seconds, min_listen, rng)
    state = play(p.client, delivery_id, decision, cfg.heartbeat_seconds)
    if not state.get("rating_allowed"):
        # The clamp bit (e.g. a very slow request); wait the shortfall like a user would.
        p.client.sleep(max(0.0, min_listen - float(state.get("listened_seconds", 0.0))) + 0.2)
        state = p.client.listen(delivery_id, list(decision.ranges), final=True)
    p.client.rate(delivery_id, decision.stars)
    return RatingEvent(
        round=round_, wave=wave, listener=p.spec.name, kind=p.spec.kind, delivery_id=delivery_id,
        song_ids=tuple(song_ids), ranges=decision.ranges,
        listened_seconds=float(state.get("listened_seconds", 0.0)), stars=decision.stars,
        appeal=decision.appeal, clip_seconds=clip_seconds,
    )


# --- the operator's side ----------------------------------------------------------------------


def _active(versions: list[dict[str, Any]]) -> dict[str, float]:
    return {v["name"]: float(v["ab_weight"]) for v in versions
            if v["status"] == "active" and float(v["ab_weight"]) > 0}


def _finetune_route(op: ApiClient) -> str | None:
    try:
        paths = op.get_json("/api/openapi.json").get("paths", {})
    except ApiError:
        return None
    for path, methods in sorted(paths.items()):
        if "finetune" in path and "post" in methods and "{" not in path.split("finetune")[-1]:
            return path
    return None


def start_finetune(op: ApiClient, server: PilotServer, parent: dict[str, Any],
                   seed: int) -> tuple[str, int | None]:
    """Start fine-tuning ``parent``: the operator API if it has a route, else the CLI
    (``encore finetune --parent NAME``, which queues the run for the server's training
    worker).

    Returns
    -------
    (str, int or None)
        How it was started (for the record) and the run id when known.
    """
    route = _finetune_route(op)
    if route is not None:
        path = route.replace("{version_id}", str(parent["id"]))
        body: dict[str, Any] = {} if "{version_id}" in route else {"parent_version_id": parent["id"]}
        answer = op.post_json(path, body)
        run_id = answer.get("run_id") or (answer.get("run") or {}).get("run_id")
        return f"POST {route}", int(run_id) if run_id is not None else None
    out = server.cli("finetune", "--parent", parent["name"], "--seed", str(seed))
    logger.info("encore finetune: %s", out.strip())
    m = re.search(r"fine-tuning run (\d+)", out)
    return "encore finetune (CLI)", int(m.group(1)) if m else None


def _run_failed(server: PilotServer, run_id: int) -> str | None:
    """The error of a failed fine-tuning run (operator CLI), or None."""
    try:
        view = json.loads(server.cli("finetune", "--status", str(run_id), "--json"))
    except (ServerError, ValueError):
        return None
    return str(view.get("error") or "failed") if view.get("status") == "failed" else None


def wait_new_version(op: ApiClient, parent_id: int, known: set[int], timeout: float,
                     server: PilotServer, run_id: int | None = None) -> dict[str, Any]:
    """Poll the versions until a child of ``parent_id`` appears with its gate finished (and,
    every 30 s, the run's status, so that a failed run stops the pilot with its error)."""
    deadline = time.monotonic() + timeout
    next_status = time.monotonic() + 30.0
    while True:
        for v in op.versions():
            if (v["id"] not in known and v.get("parent_id") == parent_id
                    and not ((v.get("metrics") or {}).get("gate") or {}).get("pending")):
                return v
        if run_id is not None and time.monotonic() > next_status:
            next_status = time.monotonic() + 30.0
            error = _run_failed(server, run_id)
            if error is not None:
                raise ServerError(f"fine-tuning run {run_id} failed: {error}")
        if time.monotonic() > deadline:
            raise ServerError(f"no new version of version {parent_id} after {timeout:.0f} s; "
                              f"server log tail:\n{server.log()[-2000:]}")
        op.sleep(2.0)


def operator_step(op: ApiClient, server: PilotServer, cfg: PilotConfig, after_round: int,
                  seed: int, log: Log) -> OperatorStep:
    """Curate, purge, fine-tune the newest version and activate the result."""
    before = len(op.dataset(include_removed=False))
    curation = op.curate()
    log(f"  curate: {curation.get('message')}")
    after_curation = len(op.dataset(include_removed=False))
    purge = op.purge()
    log(f"  purge: {purge.get('message')}")
    after_purge = len(op.dataset(include_removed=False))
    versions = op.versions()
    parent = max((v for v in versions if v["status"] != "retired"), key=lambda v: v["id"])
    t0 = time.monotonic()
    via, run_id = start_finetune(op, server, parent, seed)
    log(f"  fine-tuning {parent['name']} on the dataset ({after_purge} clips) via {via} …")
    new = wait_new_version(op, parent["id"], {v["id"] for v in versions}, cfg.finetune_timeout,
                           server, run_id)
    seconds = time.monotonic() - t0
    gate = gate_verdict((new.get("metrics") or {}).get("gate"))
    log(f"  {new['name']}: {gate}")
    # The pilot measures every fine-tune, so it activates a version that failed its gate too
    # (forced, as an operator may; docs/pilot.md) and reports the verdict next to the ratings.
    op.activate(new["id"], cfg.ab_weight, force=True)
    active = _active(op.versions())
    log(f"  {new['name']} trained in {seconds:.0f} s and activated; serving {active}")
    return OperatorStep(
        after_round=after_round, curation=curation, dataset_before=before,
        dataset_after_curation=after_curation, purge=purge, dataset_after_purge=after_purge,
        parent=parent["name"], new_version=new["name"], finetune_seconds=round(seconds, 1),
        activated=active, finetune_via=via, gate=gate,
    )


def gate_verdict(gate: dict[str, Any] | None) -> str:
    """The platform's gate verdict of a version in one line."""
    if not gate:
        return "not gated"
    if gate.get("passed"):
        return "gate passed" + "".join(
            f"; group {g['group']} {g['delta']:+.3f} stars" for g in gate.get("groups", []))
    return "gate FAILED: " + "; ".join(str(r) for r in gate.get("reasons", []))


# --- the pilot --------------------------------------------------------------------------------


def seed_song_pool(cfg: PilotConfig, population: Population, seed: int) -> list[SeedSong]:
    from encore.sim.seeds import corpus_seed_songs, synthetic_seed_songs

    if cfg.corpus_dir is not None:
        return corpus_seed_songs(cfg.corpus_dir, cfg.seed_songs, genres=population.genres(),
                                 seconds=cfg.seed_seconds, seed=seed)
    return synthetic_seed_songs(cfg.seed_songs, seconds=cfg.seed_seconds, seed=seed)


def run_pilot(
    population: Population,
    cfg: PilotConfig,
    *,
    rounds: int = 2,
    seed: int = 0,
    workdir: Path,
    log: Log = logger.info,
) -> PilotResult:
    """Run the pilot end to end and return what it measured.

    Parameters
    ----------
    population : Population
    cfg : PilotConfig
    rounds : int >= 0
        Fine-tuning iterations (round 0 is v0 alone; 2 gives v0 → v1 → v2).
    seed : int
        Seeds the listeners, their songs and decisions, and the server's dispatch.
    workdir : Path
        The server's data folder and the pilot's outputs (``report/``, ``summary.json``).
    log : callable
        Progress lines.
    """
    if rounds < 0:
        raise InvalidInput(f"rounds={rounds!r} must be >= 0")
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    server, songs, specs = _start(population, cfg, seed, workdir)
    log(f"pilot {cfg.name}: {len(specs)} listeners "
        f"({sum(s.adversarial for s in specs)} adversarial), {len(songs)} seed songs, "
        f"{rounds + 1} rounds of {population.requests_per_round} requests each")
    timings["setup"] = time.monotonic() - t_start

    with server:
        if server.operator_password is None:
            raise ConfigurationError(f"the server in {server.data_dir} did not print an operator "
                                     "password (not a fresh data folder?)")
        stop = threading.Event()
        op = ApiClient(server.url, stop=stop)
        op.sign_in(server.operator_email or "", server.operator_password)
        t0 = time.monotonic()
        participants = _enrol(server, op, specs, {s.title: s for s in songs}, stop)
        timings["sign_up_and_upload"] = time.monotonic() - t0
        log(f"signed up {len(participants)} listeners and uploaded "
            f"{sum(len(p.song_ids) for p in participants)} songs in {timings['sign_up_and_upload']:.0f} s")

        round_records: list[RoundRecord] = []
        steps: list[OperatorStep] = []
        events: list[RatingEvent] = []
        pool = ThreadPoolExecutor(max_workers=max(1, len(participants)))
        try:
            for r in range(rounds + 1):
                record = _play_round(r, op, participants, population, pool, events, seed, cfg, log)
                round_records.append(record)
                timings[f"round_{r}"] = record.seconds
                if r < rounds:
                    t0 = time.monotonic()
                    steps.append(operator_step(op, server, cfg, r, seed, log))
                    timings[f"operator_after_round_{r}"] = time.monotonic() - t0
        except BaseException:
            stop.set()  # listeners waiting or playing give up at once
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

        t0 = time.monotonic()
        final = _final_report(op, workdir / "report", log)
        timings["report"] = time.monotonic() - t0
        for p in participants:
            p.client.close()
        op.close()

    timings["total"] = time.monotonic() - t_start
    taste_metrics = final["taste"]
    result = PilotResult(
        config=cfg.name, population=population.name, seed=seed, workdir=str(workdir),
        listeners=[{"name": p.spec.name, "kind": p.spec.kind, "group": p.spec.group,
                    "user_id": p.user_id, "songs": list(p.spec.songs)} for p in participants],
        rounds=round_records, operator_steps=steps, events=events, report=final["report"],
        report_text=final["report_text"], csv_rows=final["csv_rows"], raters=final["raters"],
        versions=final["versions"],
        plots=sorted(str(x) for x in (workdir / "report").glob("*.png")),
        detection=_detection(final["raters"], final["users"], participants),
        timings={k: round(v, 1) for k, v in timings.items()},
        taste=taste_metrics if taste_metrics and taste_metrics.get("scores") else None,
    )
    (workdir / "summary.json").write_text(json.dumps(result.to_json(), indent=1, default=str))
    return result


def _start(population: Population, cfg: PilotConfig, seed: int,
           workdir: Path) -> tuple[PilotServer, list[SeedSong], list[ListenerSpec]]:
    """Launch the server (tiny models first if the config asks) and, while it starts, make
    the seed songs and draw the listeners."""
    settings = {**cfg.settings, "ENCORE_RANDOM_SEED": str(seed)}
    if cfg.tiny_models:
        base, sim = build_tiny_models(workdir / "tiny-models", seed=seed)
        settings.setdefault("ENCORE_BASE_MODEL_DIR", str(base))
        settings.setdefault("ENCORE_SIMILARITY_MODEL_DIR", str(sim))
    server = PilotServer(workdir / "server", settings, generate_workers=cfg.generate_workers)
    server.launch()  # it starts while the seed songs are made
    try:
        songs = seed_song_pool(cfg, population, seed)
        rng = np.random.default_rng([seed, 0])
        specs = draw_listeners(population, songs, rng)
    except BaseException:
        server.stop()
        raise
    return server, songs, specs


def _enrol(server: PilotServer, op: ApiClient, specs: list[ListenerSpec],
           by_title: dict[str, SeedSong], stop: threading.Event) -> list[Participant]:
    """Sign every listener up (by the operator's invitation), upload their songs and wait
    until all are processed."""
    participants = []
    for i, spec in enumerate(specs):
        client = ApiClient(server.url, stop=stop)
        email = f"{spec.name}@pilot.invalid"
        user = client.sign_up(email, PASSWORD, spec.name, invitation_code=op.invite())
        p = Participant(spec=spec, index=i, client=client, email=email, user_id=int(user["id"]))
        for title in spec.songs:
            song = by_title[title]
            p.song_ids.append(int(client.upload_song(song.data, song.filename, song.title)["id"]))
        participants.append(p)
    for p in participants:
        for sid in p.song_ids:
            p.client.wait_song_ready(sid)
    return participants


def _play_round(r: int, op: ApiClient, participants: list[Participant], population: Population,
                pool: ThreadPoolExecutor, events: list[RatingEvent], seed: int, cfg: PilotConfig,
                log: Log) -> RoundRecord:
    """Round ``r``: waves of one request per listener (sent in a fixed order, for dispatch),
    each heard and rated in parallel; the ratings go to ``events``."""
    t_round = time.monotonic()
    record = RoundRecord(round=r, active_versions=_active(op.versions()))
    for w in range(population.requests_per_round):
        jobs = []
        for p in participants:  # one after another: a fixed order for dispatch
            choice_rng = np.random.default_rng([seed, p.index, r, w, 0])
            inputs = _choose_inputs(p, population, choice_rng)
            did = p.client.request_music(inputs, population.closeness)
            record.deliveries.append(did)
            jobs.append((p, did, inputs))
        if w == 0:  # v0 is registered by the platform on the first request
            record.active_versions = _active(op.versions())
            log(f"round {r}: serving {record.active_versions}")
        futures = [pool.submit(_hear_and_rate, p, did, inputs, r, w, seed, cfg)
                   for p, did, inputs in jobs]
        for f in futures:
            try:
                ev = f.result()
            except (ApiError, TimeoutError) as exc:
                record.failures.append(str(exc))
                logger.warning("round %d wave %d: %s", r, w, exc)
                continue
            events.append(ev)
            record.ratings_sent += 1
        log(f"  round {r} wave {w + 1}/{population.requests_per_round}: "
            f"{record.ratings_sent} ratings so far ({time.monotonic() - t_round:.0f} s)")
    record.seconds = round(time.monotonic() - t_round, 1)
    return record


def _final_report(op: ApiClient, out: Path, log: Log) -> dict[str, Any]:
    """The final curation (its verdicts on raters use every rating), then the report, its
    plots and the ratings CSV written to ``out``; what the summary needs from the server."""
    final_curation = op.curate()
    log(f"final curation: {final_curation.get('message')}")
    out.mkdir(exist_ok=True)
    report = op.report()
    report_text = format_report(report) if report is not None else "no counted ratings yet"
    (out / "table1.txt").write_text(report_text + "\n")
    for name, data in op.report_plots().items():
        (out / name).write_bytes(data)
    csv_text = op.ratings_csv()
    (out / "ratings_api.csv").write_text(csv_text)
    (out / "served_api.csv").write_text(op.served_csv())  # recomputes the report's guards
    return {
        "report": report,
        "report_text": report_text,
        "csv_rows": list(csv.DictReader(io.StringIO(csv_text))),
        "raters": op.raters(),
        # the final curation fitted a taste snapshot and evaluated it on the later ratings
        "taste": (op.get_json("/api/operator/taste").get("snapshot") or {}).get("metrics"),
        "users": {u["id"]: u for u in op.users()},
        "versions": op.versions(),
    }


def _detection(raters: list[dict[str, Any]], users: dict[Any, dict[str, Any]],
               participants: list[Participant]) -> dict[str, Any]:
    """How many adversaries (and honest listeners) the rater model flagged, by kind, with
    the reasons it gave."""
    flagged_ids = {r["user_id"] for r in raters if r.get("flagged")}
    email_of = {uid: u["email"] for uid, u in users.items()}
    flagged_names = {email_of.get(uid, "").split("@")[0] for uid in flagged_ids}
    adversaries = [p.spec.name for p in participants if p.spec.adversarial]
    honest = [p.spec.name for p in participants if not p.spec.adversarial]
    return {
        "adversaries": len(adversaries),
        "adversaries_flagged": sum(n in flagged_names for n in adversaries),
        "honest": len(honest),
        "honest_flagged": sum(n in flagged_names for n in honest),
        "by_kind": {
            kind: [sum(p.spec.name in flagged_names for p in participants if p.spec.kind == kind),
                   sum(p.spec.kind == kind for p in participants)]
            for kind in sorted({p.spec.kind for p in participants})
        },
        "reasons": {email_of.get(r["user_id"], "?").split("@")[0]: r.get("reasons")
                    for r in raters if r.get("flagged")},
    }


# --- summaries ---------------------------------------------------------------------------------


def report_from_json(data: dict[str, Any]) -> Any:
    """The operator API's report JSON as :class:`encore.feedback.Report` (for formatting)."""
    import dataclasses

    from encore import feedback
    from encore.feedback.stats import Cell, IterationChange, RatingTable

    def build(cls: Any, item: dict[str, Any]) -> Any:
        values = {}
        for f in dataclasses.fields(cls):
            v = item.get(f.name)
            values[f.name] = float("nan") if v is None and f.type in ("float", float) else v
        return cls(**values)

    def table(t: dict[str, Any]) -> RatingTable:
        return RatingTable(
            versions=tuple(t["versions"]), songs=tuple(t["songs"]),
            cells=tuple(build(Cell, c) for c in t["cells"]),
            overall=tuple(build(Cell, c) for c in t["overall"]),
            changes=tuple(build(IterationChange, c) for c in t["changes"]),
            changes_by_song=tuple(build(IterationChange, c) for c in t["changes_by_song"]),
        )

    return feedback.Report(table=table(data["table"]),
                           by_branch={k: table(v) for k, v in data["by_branch"].items()},
                           served=tuple(build(feedback.ServedSet, x) for x in data.get("served") or ()),
                           guards=tuple(build(feedback.ServedGuard, x) for x in data.get("guards") or ()))


def format_report(data: dict[str, Any]) -> str:
    """The report as ``encore report`` prints it (the fair comparison first, then the pooled
    Table 1), plus the change per iteration of each dispatch branch."""
    report = report_from_json(data)
    if data.get("text"):
        lines = [str(data["text"]).rstrip()]
    else:
        from encore.services.report import format_table

        lines = [format_table(report)]
    for branch, sub in report.by_branch.items():
        for ch in sub.changes:
            if not (ch.n_ratings and ch.n_ratings_previous):
                continue
            lines.append(
                f"branch {branch}: {ch.version_id} vs {ch.previous_version_id}: "
                f"{ch.difference:+.2f} stars, {int(ch.level * 100)} % CI "
                f"[{ch.ci_low:+.2f}, {ch.ci_high:+.2f}] (n = {ch.n_ratings} vs {ch.n_ratings_previous})"
            )
    return "\n".join(lines)


def selection_view(result: PilotResult) -> list[dict[str, Any]]:
    """Per round, version and selection mode (taste pick, uniform explore) of the generated
    deliveries: honest listeners' mean stars and mean hidden appeal — what best-of-n bought,
    as only the simulation can see it — and the median S of the served clips to their input
    (the guard: selection must not win by serving near-copies of the song)."""
    row_of = {int(r["delivery_id"]): r for r in result.csv_rows}
    cells: dict[tuple[int, str, str], list[RatingEvent]] = {}
    for e in result.events:
        row = row_of.get(e.delivery_id)
        if row is None or row["branch"] != "generate" or e.kind != "honest":
            continue
        cells.setdefault((e.round, row["version"], row.get("selection") or "-"), []).append(e)
    def median_similarity(evs: list[RatingEvent]) -> float:
        values = [float(row_of[e.delivery_id]["similarity"]) for e in evs
                  if row_of[e.delivery_id].get("similarity") not in (None, "", "None")]
        return float(np.median(values)) if values else float("nan")

    return [
        {"round": r, "version": v, "selection": sel, "n": len(evs),
         "stars": float(np.mean([e.stars for e in evs])),
         "appeal": float(np.mean([e.appeal for e in evs])),
         "similarity": median_similarity(evs)}
        for (r, v, sel), evs in sorted(cells.items())
    ]


def paired_hidden_view(result: PilotResult) -> list[dict[str, Any]]:
    """Pairs (same honest listener, songs, seeds; two versions): mean hidden-appeal and star
    differences, newer minus older version, per version pair."""
    row_of = {int(r["delivery_id"]): r for r in result.csv_rows}
    by_pair: dict[str, list[tuple[RatingEvent, dict[str, str]]]] = {}
    for e in result.events:
        row = row_of.get(e.delivery_id)
        if row is None or not row.get("pair_id") or e.kind != "honest":
            continue
        by_pair.setdefault(row["pair_id"], []).append((e, row))
    version_order = {v["name"]: int(v["id"]) for v in result.versions}
    diffs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for items in by_pair.values():
        if len(items) != 2:
            continue
        (ea, ra), (eb, rb) = sorted(items, key=lambda x: version_order.get(x[1]["version"], 0))
        diffs.setdefault((rb["version"], ra["version"]), []).append(
            (eb.appeal - ea.appeal, eb.stars - ea.stars))  # type: ignore[operator]
    return [
        {"version": b, "reference": a, "pairs": len(d),
         "appeal_diff": float(np.mean([x[0] for x in d])),
         "stars_diff": float(np.mean([x[1] for x in d]))}
        for (b, a), d in sorted(diffs.items())
    ]


def served_versions(result: PilotResult) -> dict[int, dict[str, int]]:
    """Per round, ``{version: ratings}`` of the *generated* clips rated (from the CSV), by
    their requester or, through the review branch, by other listeners."""
    round_of = {d: rec.round for rec in result.rounds for d in rec.deliveries}
    out: dict[int, dict[str, int]] = {rec.round: {} for rec in result.rounds}
    for row in result.csv_rows:
        r = round_of.get(int(row["delivery_id"]))
        if r is None or row["branch"] not in NEW_CLIP_BRANCHES:
            continue
        out[r][row["version"]] = out[r].get(row["version"], 0) + 1
    return out


def hidden_view(result: PilotResult) -> list[dict[str, Any]]:
    """What only the simulation knows, per round and version of the *generated* clips rated:
    the ratings count, the mean stars of all and of honest listeners, and the honest
    listeners' mean hidden appeal (0..1). Within a round the versions are served side by side
    to the same listeners, so these are fair A/B comparisons. For reporting only: nothing
    here goes back to the platform."""
    row_of = {int(r["delivery_id"]): r for r in result.csv_rows}
    cells: dict[tuple[int, str], list[RatingEvent]] = {}
    for e in result.events:
        row = row_of.get(e.delivery_id)
        if row is None or row["branch"] not in NEW_CLIP_BRANCHES:
            continue
        cells.setdefault((e.round, row["version"]), []).append(e)
    out = []
    for (r, version), evs in sorted(cells.items()):
        honest = [e for e in evs if e.kind == "honest"]
        out.append({
            "round": r, "version": version, "n": len(evs), "n_honest": len(honest),
            "stars_all": float(np.mean([e.stars for e in evs])),
            "stars_honest": float(np.mean([e.stars for e in honest])) if honest else float("nan"),
            "appeal_honest": float(np.mean([e.appeal for e in honest])) if honest else float("nan"),
        })
    return out


def format_summary(result: PilotResult) -> str:
    """The pilot's figures as text: Table 1 (``encore report``), changes, counts, detection."""
    lines = [result.report_text.rstrip(), ""]
    lines.append("ratings sent per round: " + ", ".join(
        f"round {r.round}: {r.ratings_sent}" for r in result.rounds))
    for r, counts in served_versions(result).items():
        lines.append(f"round {r} generated clips rated, by version: "
                     + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
    counted = sum(1 for row in result.csv_rows
                  if row["counted"] == "True" and row["rater_flagged"] == "False")
    lines.append(f"ratings stored {len(result.csv_rows)}, used by the report {counted} "
                 f"(flagged raters' ratings excluded)")
    for s in result.operator_steps:
        lines.append(f"after round {s.after_round}: dataset {s.dataset_before} -> "
                     f"{s.dataset_after_curation} (curate) -> {s.dataset_after_purge} (purge); "
                     f"{s.parent} -> {s.new_version} in {s.finetune_seconds:.0f} s; serving {s.activated}; "
                     f"{s.gate}")
    lines.append("hidden view by selection (honest listeners, generated deliveries):")
    for h in selection_view(result):
        lines.append(f"  round {h['round']} {h['version']} {h['selection']}: n={h['n']} "
                     f"mean stars {h['stars']:.2f}, hidden appeal {h['appeal']:.3f}, "
                     f"median S to the input {h['similarity']:.3f}")
    for h in paired_hidden_view(result):
        lines.append(f"  pairs {h['version']} - {h['reference']}: {h['pairs']} pairs, "
                     f"stars {h['stars_diff']:+.2f}, hidden appeal {h['appeal_diff']:+.3f}")
    if result.report is not None and result.report.get("guards"):
        from encore.services.report import guard_lines

        lines.append("guards (the platform's report: served clips' diversity as encore eval "
                     "measures it, median S to the input; vs v0):")
        lines += guard_lines(report_from_json(result.report))
        lines.append(f"  (over encore eval's own features of the served audio: ENCORE_DATA_DIR="
                     f"{Path(result.workdir) / 'server'} encore report --eval-features)")
    if result.taste:
        from encore.commands.taste import format_evaluation

        lines.append(format_evaluation(result.taste))
    lines.append("hidden view (generated clips; the simulation's own knowledge):")
    for h in hidden_view(result):
        lines.append(f"  round {h['round']} {h['version']}: n={h['n']} mean stars {h['stars_all']:.2f}, "
                     f"honest {h['stars_honest']:.2f} (n={h['n_honest']}), "
                     f"honest hidden appeal {h['appeal_honest']:.3f}")
    d = result.detection
    lines.append(f"adversarial listeners detected: {d['adversaries_flagged']} of {d['adversaries']}; "
                 f"honest listeners flagged: {d['honest_flagged']} of {d['honest']}")
    lines.append("by kind (flagged, total): " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in d["by_kind"].items()))
    if result.plots:
        lines.append("plots: " + ", ".join(result.plots))
    lines.append("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items()))
    return "\n".join(lines)
