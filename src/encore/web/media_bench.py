"""``encore bench media``: the web process's memory while it serves a large song from S3.

Starts moto's S3 server (a separate process) and a real ``encore serve`` (one web process,
no workers) whose blobs live in a bucket of it, stores a song of ``--size-mb`` MB (100 by
default) there and registers it for the operator, then, signed in as the operator:

1. downloads the whole song (``GET /api/songs/<id>/audio``),
2. seeks like a player: ``--ranges`` requests of 1 MB at random offsets, and one open range
   from the middle to the end,

checking every byte against the file. Before each phase the web process's peak resident
size is reset (``/proc/<pid>/clear_refs``, Linux) and read back after it (``VmHWM``), so the
figure printed is the phase's peak growth over the resident size it started from.
Linux only (``/proc``); needs ``moto[server]`` (a dev dependency).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MB = 1024 * 1024
TARGET_GROWTH_MB = 20.0


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _write_song(path: Path, size_bytes: int, seed: int = 0) -> str:
    """A WAV file of about ``size_bytes`` (16-bit stereo noise at 44.1 kHz); its sha256."""
    import soundfile as sf

    frames = (size_bytes - 44) // 4
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16", format="WAV") as f:
        block = 1 << 20
        for start in range(0, frames, block):
            n = min(block, frames - start)
            f.write((rng.standard_normal((n, 2)) * 0.1).astype(np.float32))
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


def _register_song(data_dir: Path, email: str, key: str, size_mb: float, sha: str) -> int:
    import sqlalchemy as sa

    from encore.store import Song, SongStatus, User
    from encore.store.db import make_engine, session_scope

    engine = make_engine(f"sqlite:///{(data_dir / 'encore.db').resolve()}")
    try:
        with session_scope(engine) as session:
            owner = session.scalar(sa.select(User).where(User.email == email))
            song = Song(
                owner_id=owner.id, title=f"{size_mb:.0f} MB song", blob_key=key,
                content_type="audio/wav", duration_seconds=size_mb * MB / (44100 * 4),
                sample_rate=44100, checksum_sha256=sha, status=SongStatus.READY,
            )
            session.add(song)
            session.flush()
            return int(song.id)
    finally:
        engine.dispose()


def run_bench(args: argparse.Namespace) -> int:
    import httpx

    from encore.store.blobs import make_blob_store
    from encore.store.s3local import running_s3_server
    from encore.web.liveserver import LiveServer

    size_mb = float(getattr(args, "size_mb", None) or 100)
    n_ranges = int(getattr(args, "ranges", None) or (10 if args.quick else 40))
    with tempfile.TemporaryDirectory(prefix="encore-bench-media-") as tmp, \
            running_s3_server(Path(tmp) / "moto.log") as s3:
        work = Path(tmp)
        bucket = s3.new_bucket()
        url = f"s3://{bucket}/encore"
        store = make_blob_store(url, **s3.storage_options())
        song_path = work / "song.wav"
        sha = _write_song(song_path, int(size_mb * MB))
        size = song_path.stat().st_size
        key = store.put(store.new_key("songs", ".wav"), song_path, content_type="audio/wav")
        env = {"ENCORE_STORAGE_URL": url, **s3.env()}
        with LiveServer(work / "server", env=env, workers=False) as server:
            pid = server._proc.pid  # type: ignore[union-attr]
            song_id = _register_song(server.data_dir, server.operator_email or "", key, size_mb, sha)
            http = httpx.Client(base_url=server.url, timeout=120)
            r = http.post("/api/auth/signin", json={"email": server.operator_email,
                                                    "password": server.operator_password})
            r.raise_for_status()
            path = f"/api/songs/{song_id}/audio"
            http.get(path, headers={"range": "bytes=0-1023"}).raise_for_status()  # warm the route
            rows = []

            def phase(name: str, requests: list[str | None]) -> None:
                rss0 = _status_kb(pid, "VmRSS")
                reset = _reset_peak(pid)
                sampled = [rss0]
                done = threading.Event()

                def sample() -> None:  # a second reading, independent of VmHWM
                    while not done.wait(0.005):
                        sampled.append(_status_kb(pid, "VmRSS"))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                t0 = time.perf_counter()
                sent = 0
                for header in requests:
                    digest = hashlib.sha256()
                    headers = {"range": header} if header else {}
                    with http.stream("GET", path, headers=headers) as response:
                        if response.status_code not in (200, 206):
                            raise RuntimeError(f"{name}: HTTP {response.status_code}")
                        for chunk in response.iter_bytes(MB):
                            digest.update(chunk)
                            sent += len(chunk)
                    _check(song_path, header, size, digest.hexdigest())
                seconds = time.perf_counter() - t0
                done.set()
                sampler.join()
                peak = _status_kb(pid, "VmHWM") if reset else None
                rss1 = _status_kb(pid, "VmRSS")
                rows.append({
                    "phase": name, "requests": len(requests), "mb_sent": sent / MB,
                    "seconds": seconds, "rss_before_mb": rss0 / 1024, "rss_after_mb": rss1 / 1024,
                    "peak_growth_mb": None if peak is None else (peak - rss0) / 1024,
                    "sampled_growth_mb": (max(sampled) - rss0) / 1024, "samples": len(sampled),
                })

            rng = np.random.default_rng(1)
            starts = rng.integers(0, size - MB, size=n_ranges)
            phase("whole song", [None])
            phase(f"{n_ranges} x 1 MB ranges + middle-to-end",
                  [f"bytes={s}-{s + MB - 1}" for s in starts] + [f"bytes={size // 2}-"])
            http.close()
    print(f"\nserving a {size / MB:.1f} MB song from S3 (moto server) through one "  # noqa: T201
          f"encore web process (pid {pid})")
    print(f"{'phase':<36} {'MB sent':>8} {'s':>6} {'RSS before':>11} {'peak growth':>12} "  # noqa: T201
          f"{'sampled max':>12}")
    for row in rows:
        growth = "n/a" if row["peak_growth_mb"] is None else f"{row['peak_growth_mb']:.1f} MB"
        print(f"{row['phase']:<36} {row['mb_sent']:8.1f} {row['seconds']:6.1f} "  # noqa: T201
              f"{row['rss_before_mb']:8.1f} MB {growth:>12} {row['sampled_growth_mb']:9.1f} MB")
    print("peak growth: VmHWM after the phase (reset before it) minus VmRSS before it; "  # noqa: T201
          "sampled max: the largest VmRSS read every 5 ms during the phase, minus VmRSS before")
    worst = max(max(r["peak_growth_mb"] or 0.0, r["sampled_growth_mb"]) for r in rows)
    verdict = "meets" if worst < TARGET_GROWTH_MB else "misses"
    print(f"largest peak growth {worst:.1f} MB: {verdict} the target (< {TARGET_GROWTH_MB:.0f} MB)")  # noqa: T201
    print(json.dumps({"size_mb": size / MB, "phases": rows}))  # noqa: T201
    return 0 if worst < TARGET_GROWTH_MB else 1


def _check(song: Path, header: str | None, size: int, got: str) -> None:
    start, end = 0, size - 1
    if header:
        first, last = header.removeprefix("bytes=").split("-")
        start, end = int(first), (int(last) if last else size - 1)
    digest = hashlib.sha256()
    with song.open("rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = f.read(min(MB, left))
            digest.update(chunk)
            left -= len(chunk)
    if digest.hexdigest() != got:
        raise RuntimeError(f"bytes served for range {header!r} differ from the song's")

