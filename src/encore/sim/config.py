"""Scale settings of the pilot: ``tiny`` (CI, minutes) and ``full`` (the documented run).

Each configuration is the ``ENCORE_*`` settings the pilot's server runs with, plus the
simulation's own knobs. Settings that differ from the platform defaults, and why:

- The full configuration keeps the platform's curation defaults: 3 ratings per clip
  (``ENCORE_CURATION_MIN_RATINGS``), which new clips reach through the review branch
  (``ENCORE_DISPATCH_REVIEW_SHARE``, 30 % of requests are served a pending new clip of
  another listener). Earlier pilots had to run with 1 rating, as a generated clip then
  reached only its requester (docs/pilot.md, *Findings*).
- ``ENCORE_LIMIT_*_IP``: every simulated listener comes from 127.0.0.1, so the per-address
  limits (meant for one person's browser) are raised; the per-account limits stay.
- ``ENCORE_RANDOM_SEED``: the server's dispatch stream is seeded from the pilot's seed.
- tiny only: tiny random models, 1.5 s clips, 3 DDIM steps, a 0.5 s minimum listen and a
  12-step fine-tune, so that the whole loop runs in CI in a few minutes; 2 ratings per clip
  and 40 % review requests, because 8 listeners × 3 waves per round would fill only one or
  two clips to 3 ratings (the first wave has nothing to review), too few for a cold start.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from encore.errors import InvalidInput

#: Listening clamps to wall time: a listener really waits while "playing". The full pilot
#: therefore spends about one clip length per wave of requests on listening.
COMMON_SETTINGS = {
    "ENCORE_ENVIRONMENT": "test",
    "ENCORE_LIMIT_SIGNIN_IP": "100000/60",
    "ENCORE_LIMIT_UPLOAD_IP": "100000/60",
    "ENCORE_LIMIT_RATING_IP": "100000/60",
    # Simulated listeners ask and listen faster than people (issue 18's per-listener limits).
    "ENCORE_LIMIT_MUSIC_ACCOUNT": "100000/60",
    "ENCORE_LIMIT_LISTEN_ACCOUNT": "100000/60",
    "ENCORE_MAX_PENDING_GENERATIONS": "1000",
    # The pilot measures the paper's loop on clips of one canvas (issue 19's longer pieces
    # would make every round several times slower).
    "ENCORE_DEFAULT_PIECE_SECONDS": "5.9",
}


@dataclass(frozen=True)
class PilotConfig:
    """How big the pilot is.

    Attributes
    ----------
    name : str
        ``"tiny"`` or ``"full"``.
    settings : dict of str to str
        ``ENCORE_*`` settings of the pilot's server (``COMMON_SETTINGS`` included).
    population : str
        The default population (a shipped name or a path).
    seed_songs : int
        Size of the shared pool of seed songs (the paper had 10 songs).
    seed_seconds : float
        Length of each seed song.
    corpus_dir : Path or None
        Corpus to take seed songs from; None: synthetic songs.
    tiny_models : bool
        Build tiny random models in the work folder (no shipped model needed).
    generate_workers : int
        Generation threads of the server's worker.
    heartbeat_seconds : float
        Listening heartbeat period.
    poll_seconds : float
        How often a listener polls its delivery while the music is made.
    ab_weight : float
        A/B weight given to each new version (older active versions keep theirs).
    finetune_timeout : float
        Seconds to wait for a fine-tuning run.
    """

    name: str
    settings: dict[str, str]
    population: str
    seed_songs: int
    seed_seconds: float
    corpus_dir: Path | None = None
    tiny_models: bool = False
    generate_workers: int = 1
    heartbeat_seconds: float = 2.0
    poll_seconds: float = 1.0
    ab_weight: float = 1.0
    finetune_timeout: float = 3600.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def with_settings(self, **changes: str) -> PilotConfig:
        return replace(self, settings={**self.settings, **changes})


def tiny_config() -> PilotConfig:
    """The CI configuration (a couple of minutes on 2 cores)."""
    return PilotConfig(
        name="tiny",
        settings={
            **COMMON_SETTINGS,
            "ENCORE_CLIP_SECONDS": "1.5",
            "ENCORE_DEFAULT_PIECE_SECONDS": "1.5",
            "ENCORE_INFERENCE_STEPS": "3",
            "ENCORE_MIN_LISTEN_SECONDS": "0.5",
            "ENCORE_MIN_SONG_SECONDS": "1",
            "ENCORE_COLD_START_TOP_N": "10",
            "ENCORE_CURATION_MIN_RATINGS": "2",
            "ENCORE_DISPATCH_REVIEW_SHARE": "0.4",
            "ENCORE_TORCH_THREADS": "1",
            "ENCORE_FINETUNE_STEPS": "12",
            "ENCORE_FINETUNE_BATCH_SIZE": "4",
            "ENCORE_FINETUNE_PARENT_REPLAY_CLIPS": "4",
            "ENCORE_FINETUNE_EVAL_CLIPS": "0",
            "ENCORE_FINETUNE_EVAL_STEPS": "3",
        },
        population="tiny",
        seed_songs=4,
        seed_seconds=4.0,
        tiny_models=True,
        heartbeat_seconds=0.5,
        poll_seconds=0.2,
        finetune_timeout=600.0,
    )


def full_config(corpus_dir: Path | None) -> PilotConfig:
    """The documented pilot: the shipped models, platform defaults for clips, sampler and steps.

    Earlier pilots ran 25 DDIM steps to fit an hour; the platform's default (DPM-Solver++,
    12 steps, docs/engine.md) is cheaper still, which is what leaves room for best-of-n.
    """
    settings = {
        **COMMON_SETTINGS,
        # The weight-free evaluation of each new version (32 extra generations) is not part
        # of the loop; `encore eval` can run it afterwards on the pilot's model folders.
        "ENCORE_FINETUNE_EVAL_CLIPS": "0",
        # One torch thread per process: on shared cores, OpenMP threads that wait for each
        # other under oversubscription made one generation take minutes (measured: 450 s).
        "ENCORE_TORCH_THREADS": "1",
    }
    if corpus_dir is not None:
        settings["ENCORE_CORPUS_DIR"] = str(corpus_dir)
    return PilotConfig(
        name="full",
        settings=settings,
        population="default",
        seed_songs=10,
        seed_seconds=12.0,
        corpus_dir=corpus_dir,
        # two generation workers of one torch thread each: both cores (the pilot owns the
        # machine; one two-thread worker leaves a core idle while it decodes and encodes)
        generate_workers=2,
        heartbeat_seconds=2.0,
        poll_seconds=2.0,
    )


def pilot_config(name: str, *, corpus_dir: Path | None = None) -> PilotConfig:
    """``tiny`` or ``full``.

    Raises
    ------
    InvalidInput
        An unknown name.
    """
    if name == "tiny":
        return tiny_config()
    if name == "full":
        return full_config(corpus_dir)
    raise InvalidInput(f"pilot configuration {name!r} is not 'tiny' or 'full'")
