"""``encore bench web``: concurrent listeners posting listens and ratings over HTTP.

Starts a real ``encore serve`` (SQLite, workers, tiny seeded models so that setting up the
deliveries takes seconds), signs up ``--clients`` listeners and gives each a ready clip.
Then two phases, every listener at once:

1. **saturation**: each client posts its listening heartbeats (``POST /listens``) back to
   back, as fast as the server answers: the most writes per second the server sustains
   (latency here is mostly queueing: with C clients in flight, latency ≈ C / throughput);
2. **paced**: each client posts a heartbeat every ``clients / TARGET_RATE`` seconds, then
   rates its clip, so that the offered load is :data:`TARGET_RATE` writes per second: the
   latency a listener sees at that load.

The timed phases send their requests with :class:`RawClient`, a minimal keep-alive HTTP/1.1
client on asyncio streams: the clients share the machine's two cores with the server, and
httpx spends about 3 ms of CPU per request (measured: 32 % of a core at 105 requests/s),
which at 300 requests/s would take most of a core from the server being measured. Setup
(sign-up, upload, generation) uses httpx.

Prints writes per second and p50/p99 latency of each phase, and checks that the listen
events and ratings stored equal those sent. Not a test: figures to compare against the
target (≥ 300 writes/s with p99 ≤ 50 ms on SQLite on 2 cores).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encore.errors import InvalidInput

logger = logging.getLogger(__name__)

PASSWORD = "bench-password-123"
HEARTBEATS_PER_CLIP = 60  # per client and phase (--heartbeats)
CLIPS_PER_CLIENT = 1
TARGET_RATE = 300.0  # offered writes per second in the paced phase
#: A connection idle this long is reopened before the next request: uvicorn closes idle
#: keep-alive connections after 5 s, and a request written to one it closed gets no answer.
REOPEN_AFTER_IDLE_SECONDS = 4.0


class RawClient:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads status and body.

    Enough HTTP for this benchmark's server (uvicorn: ``Content-Length`` bodies, no chunked
    responses to these routes); anything else raises.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        fixed = {"host": f"{self.host}:{self.port}", "content-type": "application/json", **headers}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_answer = 0.0

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST ``body`` as JSON; returns (status, response body)."""
        import json

        if self._writer is not None and time.monotonic() - self._last_answer >= REOPEN_AFTER_IDLE_SECONDS:
            await self.close()  # the server may have closed it: never send into a closed one
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        data = json.dumps(body).encode()
        self._writer.write(
            f"POST {path} HTTP/1.1\r\n{self._head}content-length: {len(data)}\r\n\r\n".encode() + data
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding":
                raise RuntimeError(f"unexpected transfer-encoding {value.strip()} from {path}")
        answer = await self._reader.readexactly(length) if length else b""
        self._last_answer = time.monotonic()
        return status, answer

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._reader, self._writer = self._writer, None, None
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass  # closed by the server already


def _cpu_times() -> list[int] | None:
    """The machine's CPU time counters (``/proc/stat``), or ``None`` off Linux."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def _steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time taken by the hypervisor between two readings (``steal``): on a
    shared virtual machine, the part of the 2 cores that the benchmark did not get."""
    if not before or not after or len(before) < 8:
        return None
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8])
    return delta[7] / total if total > 0 else None


@dataclass
class Tally:
    """Latencies (seconds) and outcomes of the write requests."""

    latencies: list[float] = field(default_factory=list)
    rating_latencies: list[float] = field(default_factory=list)
    steal: float | None = None
    listens_ok: int = 0
    ratings_ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def _song(seed: int) -> bytes:
    import io

    import soundfile as sf

    sr = 22050
    rng = np.random.default_rng(seed)
    t = np.arange(int(2.0 * sr)) / sr
    y = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 660, size=3))
    buf = io.BytesIO()
    sf.write(buf, (0.2 * y / np.abs(y).max()).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


async def _setup_client(http: Any, index: int) -> tuple[str, list[int]]:
    """Sign up, upload a song, ask for ``CLIPS_PER_CLIENT`` clips; returns (csrf, deliveries)."""
    body = {"email": f"bench{index}@example.org", "password": PASSWORD, "display_name": f"b{index}"}
    r = await http.post("/api/auth/signup", json=body)
    r.raise_for_status()
    csrf = r.json()["csrf_token"]
    headers = {"x-csrf-token": csrf}
    r = await http.post("/api/songs", files={"file": ("s.wav", _song(index), "audio/wav")}, headers=headers)
    r.raise_for_status()
    song_id = r.json()["song"]["id"]
    deliveries = []
    for _ in range(CLIPS_PER_CLIENT):
        for _attempt in range(600):  # the song is embedded by the worker first
            r = await http.post("/api/music", json={"song_ids": [song_id]}, headers=headers)
            if r.status_code != 409:
                break
            await asyncio.sleep(0.1)
        r.raise_for_status()
        deliveries.append(int(r.json()["delivery_id"]))
    return csrf, deliveries


async def _get(http: Any, path: str) -> Any:
    """GET with one retry: an idle keep-alive connection may close just as it is reused."""
    import httpx

    try:
        return await http.get(path)
    except httpx.RemoteProtocolError:
        return await http.get(path)


async def _wait_ready(http: Any, delivery_id: int) -> None:
    for _ in range(3000):
        view = (await _get(http, f"/api/deliveries/{delivery_id}")).json()
        if view["status"] == "ready":
            await _get(http, f"/api/deliveries/{delivery_id}/audio")  # the player fetches the audio
            return
        if view["status"] == "failed":
            raise RuntimeError(f"delivery {delivery_id} failed: {view['message']}")
        await asyncio.sleep(0.1)
    raise TimeoutError(f"delivery {delivery_id} not ready")


async def _listen_and_rate(
    http: RawClient, deliveries: list[int], tally: Tally, *, interval: float = 0.0,
    rate: bool = True, heartbeats: int = HEARTBEATS_PER_CLIP,
) -> None:
    """Heartbeats (every ``interval`` seconds; 0 = back to back), then one rating per clip."""
    rng = np.random.default_rng(len(deliveries) * 7919 + deliveries[0])
    loop = asyncio.get_running_loop()
    next_at = loop.time() + float(rng.uniform(0, interval))  # clients start out of step
    for delivery_id in deliveries:
        base = f"/api/deliveries/{delivery_id}"
        for beat in range(1, heartbeats + 1):
            if interval:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += interval
            end = round(beat / heartbeats, 3)  # played up to here (1-second clips)
            t0 = time.perf_counter()
            status, _ = await http.post(f"{base}/listens", {"ranges": [[0.0, end]]})
            tally.latencies.append(time.perf_counter() - t0)
            if status == 200:
                tally.listens_ok += 1
            else:
                tally.error(f"listen {status}")
        if not rate:
            continue
        if interval:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
        stars = float(rng.integers(2, 11)) / 2
        t0 = time.perf_counter()
        status, text = await http.post(f"{base}/rating", {"stars": stars})
        tally.latencies.append(time.perf_counter() - t0)
        tally.rating_latencies.append(tally.latencies[-1])
        if status == 201:
            tally.ratings_ok += 1
        else:
            tally.error(f"rating {status}: {text[:120]!r}")


def _stored_counts(data_dir: Path, database_url: str | None = None) -> tuple[int, int]:
    import sqlalchemy as sa

    from encore.store import ListenEvent, Rating
    from encore.store.db import make_engine

    engine = make_engine(database_url or f"sqlite:///{(data_dir / 'encore.db').resolve()}")
    try:
        with engine.connect() as conn:
            listens = conn.scalar(sa.select(sa.func.count()).select_from(ListenEvent)) or 0
            ratings = conn.scalar(sa.select(sa.func.count()).select_from(Rating)) or 0
        return int(listens), int(ratings)
    finally:
        engine.dispose()


async def _bench(
    url: str, clients: int, heartbeats: int
) -> tuple[list[tuple[str, Tally, float]], float]:
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    https = [httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) for _ in range(clients)]
    try:
        t0 = time.perf_counter()
        setups = []
        for start in range(0, clients, 8):  # sign-ups hash passwords: a few at a time
            batch = https[start : start + 8]
            setups += await asyncio.gather(
                *(_setup_client(h, start + i) for i, h in enumerate(batch))
            )
        await asyncio.gather(
            *(_wait_ready(h, d) for h, (_, ds) in zip(https, setups, strict=True) for d in ds)
        )
        setup_seconds = time.perf_counter() - t0
        await asyncio.sleep(1.1)  # the wall-clock clamp: a 1-second clip can be fully heard
        from encore.web.security import SESSION_COOKIE

        raws = [
            RawClient(url, {"cookie": f"{SESSION_COOKIE}={h.cookies.get(SESSION_COOKIE)}",
                            "x-csrf-token": csrf})
            for h, (csrf, _) in zip(https, setups, strict=True)
        ]
        phases = []
        try:
            for name, interval, rate in (
                ("saturation", 0.0, False),
                (f"paced at {TARGET_RATE:.0f}/s", clients / TARGET_RATE, True),
            ):
                tally = Tally()
                cpu0 = _cpu_times()
                t0 = time.perf_counter()
                await asyncio.gather(
                    *(
                        _listen_and_rate(raw, ds, tally, interval=interval, rate=rate,
                                         heartbeats=heartbeats)
                        for raw, (_, ds) in zip(raws, setups, strict=True)
                    )
                )
                phases.append((name, tally, time.perf_counter() - t0))
                tally.steal = _steal_share(cpu0, _cpu_times())
        finally:
            await asyncio.gather(*(raw.close() for raw in raws))
        return phases, setup_seconds
    finally:
        await asyncio.gather(*(h.aclose() for h in https))


def run_bench(args: Any) -> int:
    """Entry point of ``encore bench web`` (prints the figures)."""
    from encore.web.liveserver import LiveServer, build_tiny_models

    clients = int(getattr(args, "clients", None) or (20 if args.quick else 50))
    heartbeats = int(getattr(args, "heartbeats", None) or (20 if args.quick else HEARTBEATS_PER_CLIP))
    if clients < 1 or heartbeats < 1:
        raise InvalidInput(f"--clients {clients} and --heartbeats {heartbeats} must be at least 1")
    with tempfile.TemporaryDirectory(prefix="encore-bench-web-") as tmp:
        root = Path(tmp)
        base, sim = build_tiny_models(root / "models")
        env = {
            "ENCORE_BASE_MODEL_DIR": str(base),
            "ENCORE_SIMILARITY_MODEL_DIR": str(sim),
            "ENCORE_OPEN_SIGNUP": "true",
            "ENCORE_CLIP_SECONDS": "1.0",
            "ENCORE_INFERENCE_STEPS": "2",
            "ENCORE_MIN_LISTEN_SECONDS": "0.5",
            "ENCORE_MIN_SONG_SECONDS": "1",
            "ENCORE_BASELINE_PROBABILITY": "0",
            "ENCORE_DISPATCH_REVIEW_SHARE": "0",  # every request generates, as before
            "ENCORE_TORCH_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            # one address sends everything here: lift the per-address limits
            "ENCORE_LIMIT_SIGNIN_IP": "100000/60",
            "ENCORE_LIMIT_UPLOAD_IP": "100000/60",
            "ENCORE_LIMIT_RATING_IP": "100000/60",
            "ENCORE_LIMIT_LISTEN_ACCOUNT": "100000/60",  # heartbeats back to back
        }
        # PostgreSQL and Redis instead of the embedded SQLite files (an empty database: the
        # server migrates it; a Redis database the benchmark may fill).
        database_url = getattr(args, "database_url", None)
        if database_url:
            env["ENCORE_DATABASE_URL"] = database_url
        if getattr(args, "queue_url", None):
            env["ENCORE_QUEUE_URL"] = args.queue_url
        web_workers = int(getattr(args, "web_workers", 1) or 1)
        if web_workers < 1:
            raise InvalidInput(f"--web-workers {web_workers}: must be at least 1")
        with LiveServer(root / "var", env=env, args=("--web-workers", str(web_workers))) as server:
            backend = "PostgreSQL" if database_url else "SQLite"
            queue = "Redis" if getattr(args, "queue_url", None) else "Huey on SQLite"
            print(f"server {server.url} ({web_workers} web process(es), {backend}, {queue}); "  # noqa: T201
                  f"{clients} clients × {CLIPS_PER_CLIENT} clips × "
                  f"({heartbeats} listens per phase + 1 rating)")
            phases, setup = asyncio.run(_bench(server.url, clients, heartbeats))
            listens, ratings = _stored_counts(server.data_dir, database_url)
    print(f"setup (sign-up, upload, generation): {setup:.1f} s")  # noqa: T201
    errors: dict[str, int] = {}
    for name, tally, seconds in phases:
        sent = len(tally.latencies)
        ms = sorted(x * 1000 for x in tally.latencies)
        p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
        print(  # noqa: T201
            f"{name}: {sent} writes in {seconds:.2f} s = {sent / seconds:.0f} writes/s; "
            f"latency p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
            + (f"; CPU steal {100 * tally.steal:.0f} %" if tally.steal is not None else "")
        )
        if tally.rating_latencies:
            rms = sorted(x * 1000 for x in tally.rating_latencies)
            print(f"  of which {len(rms)} ratings: p50 {statistics.median(rms):.1f} ms, "  # noqa: T201
                  f"max {rms[-1]:.1f} ms")
        for key, count in tally.errors.items():
            errors[key] = errors.get(key, 0) + count
    listens_ok = sum(t.listens_ok for _, t, _ in phases)
    ratings_ok = sum(t.ratings_ok for _, t, _ in phases)
    print(f"listens: {listens_ok} accepted, {listens} stored; "  # noqa: T201
          f"ratings: {ratings_ok} accepted, {ratings} stored")
    if errors:
        print(f"errors: {errors}")  # noqa: T201
    ok = listens == listens_ok and ratings == ratings_ok and not errors
    print("stored == sent: " + ("yes" if ok else "NO"))  # noqa: T201
    return 0 if ok else 1
