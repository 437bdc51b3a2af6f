"""Deployment settings, read once from the environment (prefix ``ENCORE_``) or a ``.env`` file.

The defaults run on one machine with no servers: SQLite, a Huey queue on SQLite and blobs
on the local filesystem, all under ``data_dir``. Model and mel hyper-parameters are not
settings: they travel with a model folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_MODELS_DIR = PACKAGE_DIR / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENCORE_", env_file=".env", extra="ignore")

    # "production" refuses unsafe settings at start (no ENCORE_ALLOWED_HOSTS) and turns on
    # production-only protections (HSTS); "test" is what the test suite runs with.
    environment: Literal["development", "test", "production"] = "development"
    # The folder of the embedded defaults: SQLite database, queue, local blobs, model cache.
    data_dir: Path = Path("var")

    # Scale-out is chosen by URL; empty means "embedded default under data_dir".
    database_url: str = ""
    queue_url: str = ""  # "" -> Huey on SQLite; "redis://host:6379/0" -> Redis
    storage_url: str = ""  # "" -> local folder; "s3://bucket/prefix" -> S3-compatible
    # fsspec options for storage_url, e.g. {"endpoint_url": "http://minio:9000"} (JSON in env).
    storage_options: dict[str, Any] = Field(default_factory=dict)

    # Database connections each process may hold (SQLAlchemy's pool). 0 = sized from the
    # web's route threads: PostgreSQL gets (web_threads or 40) + 10, so that every route
    # thread can hold one at once (SQLAlchemy's default of 5 + 10 made 20 concurrent
    # requests wait 30 s and fail); SQLite gets 50. Mind PostgreSQL's max_connections
    # (100 by default) across all processes: connections open only when used.
    database_pool_size: int = Field(0, ge=0)
    # Connections opened beyond the pool on bursts (closed when returned); -1 = backend default
    # (PostgreSQL 10, SQLite 20).
    database_max_overflow: int = Field(-1, ge=-1)
    # Seconds a caller waits for a free connection before failing; 0 = backend default
    # (PostgreSQL 30, SQLite 60: SQLite writers may queue behind a long transaction).
    database_pool_timeout: float = Field(0.0, ge=0)

    # Jobs (encore.jobs): immediate mode runs jobs synchronously in-process (tests, debugging).
    queue_immediate: bool = False
    # Seconds between the heartbeats a worker writes for its running job (proof of life).
    job_heartbeat_seconds: float = Field(10.0, gt=0)
    # A running job whose heartbeat is older than this is presumed dead and re-queued.
    job_stale_seconds: float = Field(120.0, gt=0)

    # Torch device of generation and training; "auto" takes a GPU when there is one.
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    torch_threads: int = 0  # 0 -> torch's default

    # Audio limits (upload validation).
    max_song_seconds: float = 15 * 60
    min_song_seconds: float = 3.0
    max_upload_bytes: int = 100 * 1024 * 1024

    # Models.
    # The model registered as v0 on the first start (its files are then published to the
    # blob store, so only the host that registers it needs this folder).
    base_model_dir: Path = SHIPPED_MODELS_DIR / "base-v0"
    # Where this host keeps its copies of model versions fetched from the blob store (the
    # blob store is the truth; a copy is made once per host and version). "" = data_dir/cache/models.
    model_cache_dir: Path | None = None
    # The similarity model (song representations, S(a, b)); read from this folder by every
    # process that embeds songs or clips, so each host needs it (it ships in the package).
    similarity_model_dir: Path = SHIPPED_MODELS_DIR / "similarity"

    # Generation defaults (docs/engine.md, "Samplers").
    clip_seconds: float = 5.9
    # Solver of generation and variation: DPM-Solver++ 2M at 12 steps makes a variation at
    # strength 0.7 in 8 UNet calls where DDIM-50 needed 35, with a normalised eval score
    # within 0.004 of DDIM-50's (n = 16; docs/engine.md, "Choosing the default"); "ddim"
    # is the old path (and the only one with eta > 0).
    sampler: Literal["ddim", "dpmpp", "unipc"] = "dpmpp"
    # Steps of the sampler's trajectory (strength re-runs its last round(strength · steps)).
    inference_steps: int = Field(12, ge=1, le=1000)
    # DDIM steps of a merge's inversion and of its decoding each (merges keep the invertible
    # DDIM pair): on the base model 20 reconstructs a song as well as 50 (mean error 0.045
    # vs 0.041) at 40 UNet calls instead of 100.
    merge_steps: int = Field(20, ge=1, le=1000)
    # Song inversions an engine keeps for the next blend of the same song (each 128 kB on
    # the 5.9 s canvas; docs/engine.md, "Inversion cache").
    inversion_cache_items: int = Field(64, ge=1, le=100_000)
    default_strength: float = 0.7
    # Pieces longer than the canvas (docs/engine.md, "Longer pieces"): a request's length
    # when it names none, and the longest a listener may ask for (6, 12, 24 or 48 s; longer
    # pieces cost one window of clip_seconds − overlap per 4.4 s).
    default_piece_seconds: float = Field(12.0, gt=0)
    # The longest piece a listener may ask for (web, API and CLI refuse longer).
    max_piece_seconds: float = Field(48.0, gt=0)
    # Seconds each window shares with the previous one (fixed while it is sampled, so the
    # piece continues seamlessly, up to a cut at its calmest frame in the second half) and
    # the equal-power crossfade that joins their audio (none anywhere else inside a piece).
    piece_overlap_seconds: float = Field(1.5, gt=0)
    # Length of the equal-power crossfade in each overlap (at its calmest moment before the cut).
    piece_crossfade_seconds: float = Field(0.2, gt=0)

    # The loop (docs/feedback.md, docs/finetune.md).
    baseline_probability: float = Field(0.25, ge=0.0, le=1.0)
    # Share of requests served a pending new clip generated for another listener (output
    # agreement for new clips; baseline_probability + this must not exceed 1).
    dispatch_review_share: float = Field(0.3, ge=0.0, le=1.0)
    # Seeds the web process's decision stream (dispatch, A/B draws, clip seeds) so that a
    # simulated pilot is reproducible; None (default) draws fresh entropy.
    random_seed: int | None = None
    min_listen_seconds: float = 5.0
    min_listen_fraction: float = 0.5

    # Best-of-n serving and paired measurement (encore.taste; docs/taste.md).
    # Candidates generated per request (one batch, different seeds).
    best_of_n: int = Field(4, ge=1, le=16)
    # Where in the song a variation's candidates start when the listener chose no start:
    # "distinct" — candidate k from the k-th loudest of the song's disjoint windows (the
    # candidates differ in the part of the song as well as in the seed); "same" — every
    # candidate from the loudest window. Long pieces always start from one window.
    candidate_windows: Literal["distinct", "same"] = "distinct"
    # Share of requests served a uniformly random candidate ("explore"), recorded with its
    # propensity, so that ratings stay an unbiased sample for training and the report.
    explore_epsilon: float = Field(0.2, ge=0.0, le=1.0)
    # Share of generated deliveries (with two or more active versions) that the same listener
    # later gets again from another version, same songs, seeds and strength (paired A/B).
    pair_share: float = Field(0.3, ge=0.0, le=1.0)
    # Refit the taste model after this many new counted ratings (0: only after curation).
    taste_refit_ratings: int = Field(50, ge=0)
    # Ratings a listener needs to be clustered into a taste group on its own taste-model
    # weights; with fewer its group comes from its songs (docs/taste.md, taste groups).
    taste_group_min_ratings: int = Field(8, ge=1)
    # Gate every fine-tuned version against its parent before it may be activated
    # (docs/finetune.md, gating): a panel of songs x seeds varied by both, scored by a taste
    # model fitted on half the ratings per taste group; diversity within the tolerance.
    gate_new_versions: bool = True
    gate_panel_songs: int = Field(8, ge=1)
    gate_panel_seeds: int = Field(3, ge=2)
    # A group passes when the child's mean predicted stars beat the parent's and the lower
    # end of the 95 % paired interval is above minus this margin (stars).
    gate_rating_margin: float = Field(0.05, ge=0.0)
    gate_diversity_tolerance: float = Field(0.10, gt=0.0, lt=1.0)
    # New fine-tuned versions serve with the taste model (v0 serves a uniform pick).
    taste_selection_new_versions: bool = True
    # Curation rule: "centred" (judge a clip against its song's and rater's usual ratings,
    # no reward for closeness) or "paper" (R = mean(r, l, S), new beats nearest baseline).
    curation_rule: Literal["centred", "paper"] = "centred"

    # Curation and purge (encore.feedback; defaults and reasons in docs/feedback.md).
    curation_min_ratings: int = Field(3, ge=1)
    cold_start_top_n: int = Field(100, ge=1)
    cold_start_max_share: float = Field(0.5, gt=0.0, le=1.0)  # at most this share of rated clips
    # Rater noise (stars) assumed by rule B's power calculation where clips have one rater.
    qc_power_sigma_prior: float = Field(0.5, gt=0.0)
    purge_similarity: float = Field(0.95, ge=0.0, le=1.0)
    dataset_max_age_days: float = Field(180.0, ge=0.0)  # 0 disables the age rule
    dataset_max_size: int = Field(1000, ge=1)

    # Fine-tuning (encore.services.finetune; defaults and their measurement in docs/finetune.md).
    corpus_dir: Path | None = None  # the base corpus (replay, evaluation); None = not installed
    finetune_top_n: int = Field(100, ge=1)
    finetune_steps: int = Field(300, ge=1)
    finetune_max_minutes: float = Field(9.0, gt=0)
    finetune_batch_size: int = Field(16, ge=2)
    finetune_lr: float = Field(1e-4, gt=0)
    finetune_replay_fraction: float = Field(0.5, ge=0.0, lt=1.0)
    finetune_parent_replay_clips: int = Field(32, ge=0)  # replay without a corpus (0 = none)
    finetune_eval_clips: int = Field(32, ge=0)  # weight-free eval per new version (0 = skip)
    finetune_eval_steps: int = Field(25, ge=1)
    # The fine-tuning method (docs/finetune.md, "Preference methods"): "paper" (confidence-
    # weighted ε-loss on the top-N dataset clips), "dpo" (Diffusion-DPO on pairs of clips one
    # listener rated for the same songs) or "kto" (Diffusion-KTO on clips liked / disliked
    # against the listener's own mean). Per run: `encore finetune --method`. Default dpo: on the
    # full pilot's campaign it moved the ratings where the paper's rule did not (docs/pilot.md).
    finetune_method: Literal["paper", "dpo", "kto"] = "dpo"
    # A dpo / kto run taken from this default setting (not asked for by name) with fewer pairs
    # / labels than this falls back to the paper method on the curated dataset, and the run
    # records why: a handful of pairs is too little to learn a preference from.
    finetune_min_preference_examples: int = Field(16, ge=1)
    # β of Diffusion-DPO / Diffusion-KTO on per-pixel squared errors: the value measured to
    # move the default model within one iteration without forgetting (docs/finetune.md).
    finetune_dpo_beta: float = Field(2000.0, gt=0)
    # β of Diffusion-KTO, on the same scale as DPO's (measured with it, docs/finetune.md).
    finetune_kto_beta: float = Field(2000.0, gt=0)
    # Weight of the plain ε-loss on the replay crops added to the preference loss (the
    # regulariser that keeps the corpus; the paper's fine-tune replays the same share).
    finetune_preference_replay_weight: float = Field(1.0, ge=0.0)
    # Peak learning rate of dpo / kto runs (a tenth of the paper's): at 1e-4 a DPO run with
    # β 2000 ranked held-out pairs right but forgot the corpus (+14 % loss in 24 steps); at
    # 1e-5 it learned the preference with no forgetting (docs/finetune.md, "Measured").
    finetune_preference_lr: float = Field(1e-5, gt=0)
    # Pairs ranked by the taste model (an unserved best-of-n candidate against the rated
    # served one) are at most this share of a DPO run's pairs: the taste model must not
    # become what the generator learns.
    finetune_taste_pair_share: float = Field(0.3, ge=0.0, lt=1.0)
    # Share of preference timesteps drawn over the whole range (the rest below the default
    # strength's start step); unset: the share of the run's clips made from noise or merged.
    finetune_full_range_share: float | None = Field(None, ge=0.0, le=1.0)
    # Taste-conditioned fine-tunes (docs/finetune.md, "Taste-conditioned generation"; dpo / kto
    # only): the child's UNet gets one embedding per taste group of the listeners, zero at the
    # start. Per run: `encore finetune --conditioned`.
    finetune_conditioned: bool = False
    # Label dropout of a conditioned fine-tune: the share of examples trained with the null
    # label, so that the child keeps an unconditioned prediction (0.1, as classifier-free
    # guidance is usually trained).
    finetune_group_dropout: float = Field(0.1, ge=0.0, le=1.0)
    # The group embedding learns this many times faster than the other weights: Adam moves a
    # weight by about the learning rate per step, so at 1e-5 a zero embedding would stay below
    # 3e-3 in 300 steps against a timestep embedding of ~0.2-0.5 per coordinate.
    finetune_group_lr_scale: float = Field(100.0, gt=0)
    # Classifier-free guidance when a conditioned version serves a listener's group:
    # ε = ε_null + s·(ε_group − ε_null). 1 = the group's prediction alone (one UNet call; any
    # other value runs two, docs/engine.md, "Taste groups").
    guidance_scale: float = Field(1.0, ge=0.0, le=20.0)

    # Sign-up without an invitation code (operators invite by default).
    open_signup: bool = False

    # Log lines as "text" (with the request id in brackets) or "json" (one object per line,
    # for log shippers); the request id is in both (encore.logs).
    log_format: Literal["text", "json"] = "text"
    # Bearer token that GET /metrics requires; "" = no token (then keep /metrics off the
    # public internet at the reverse proxy, docs/deploy.md).
    metrics_token: str = ""

    # Where `encore serve` listens: loopback by default, behind a reverse proxy that
    # terminates TLS (docs/deploy.md); 0.0.0.0 in a container.
    host: str = "127.0.0.1"
    port: int = 8000

    # Web (encore.web).
    trusted_origins: list[str] = []  # extra origins allowed to POST (e.g. behind a proxy)
    web_threads: int = Field(0, ge=0)  # threads for blocking route work; 0 = anyio's 40
    # Seconds a web process reuses a session's user without reading the database; a
    # sign-out or deactivation elsewhere takes up to this long to reach it (0 = no cache).
    session_cache_seconds: float = Field(5.0, ge=0)

    # Rate limits per client address (_ip) or per account (_account) as "count/seconds",
    # at most count requests of that kind in any window of that many seconds (a sliding
    # window; the next one gets 429 with Retry-After), counted where ENCORE_RATE_LIMIT_URL says.
    limit_signin_ip: str = "30/300"
    limit_upload_account: str = "30/600"
    limit_upload_ip: str = "60/600"
    limit_rating_account: str = "60/60"
    limit_rating_ip: str = "300/60"
    # Listening heartbeats per account (the player sends one every 3 s per clip).
    limit_listen_account: str = "120/60"
    # Where the rate limits and the sign-in slow-down count. "" = in the Redis of
    # ENCORE_QUEUE_URL when that is Redis (every web process on every host then shares one
    # budget; windows in whole seconds), else in each web process (N processes allow N
    # times each limit); "redis://host:6379/0" = that Redis; "memory://" = in each process
    # whatever the queue. While the Redis cannot be reached, each process counts alone.
    rate_limit_url: str = ""
    # Put before the rate limits' Redis keys (installations sharing one Redis differ here).
    rate_limit_prefix: str = "encore:limits"

    # Generation (counted in the database, so across every web process): requests for
    # music still being made per listener, and requests per listener per hour.
    max_pending_generations: int = Field(3, ge=1)
    # Requests for music per listener ("count/seconds"), counted in the database.
    limit_music_account: str = "30/3600"
    # Bytes of uploaded songs one account may keep (deleted songs free their space).
    storage_quota_bytes: int = Field(2 * 1000**3, ge=0)

    # Audio limits beyond length and size (decoding cost grows with both).
    max_sample_rate: int = Field(96_000, ge=8_000)
    max_channels: int = Field(8, ge=1)

    # Sign-in slow-down: after each failed sign-in of one account, the next attempt for that
    # account must wait twice as long (from 1 s, at most this); the per-address limit above
    # stays a hard limit.
    signin_max_delay_seconds: float = Field(300.0, ge=0)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or CIDR
    # blocks; "*" = any). Empty (default): none, the peer address is the client.
    trusted_proxies: list[str] = []
    # Host header values served ("*." prefix for subdomains); empty = any host (a warning
    # in production).
    allowed_hosts: list[str] = []
    # Strict-Transport-Security max-age sent in production (0 = not sent).
    hsts_seconds: int = Field(31_536_000, ge=0)
    # Lifetime of an operator-issued password reset link.
    password_reset_hours: float = Field(24.0, gt=0)

    @field_validator("rate_limit_url")
    @classmethod
    def _rate_limit_url_scheme(cls, value: str) -> str:
        if value and value != "memory://" and not value.startswith(
                ("redis://", "rediss://", "unix://")):
            raise ValueError(f"rate_limit_url {value!r}: use redis://host:port/db, rediss://, "
                             "unix:// or memory:// (in each process), or leave it empty")
        return value

    @model_validator(mode="after")
    def _dispatch_shares(self) -> Settings:
        total = self.baseline_probability + self.dispatch_review_share
        if total > 1.0 + 1e-12:
            raise ValueError(
                f"baseline_probability={self.baseline_probability!r} + dispatch_review_share="
                f"{self.dispatch_review_share!r} must not exceed 1"
            )
        return self

    def database_pool_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`encore.store.db.make_engine` (the pool)."""
        from encore.store.db import pool_size_for

        options: dict[str, Any] = {}
        if self.database_pool_timeout:
            options["pool_timeout"] = self.database_pool_timeout
        if self.database_pool_size:
            options["pool_size"] = self.database_pool_size
        elif not self.resolved_database_url.startswith("sqlite"):
            options["pool_size"] = pool_size_for(self.web_threads or 40)
        if self.database_max_overflow >= 0:
            options["max_overflow"] = self.database_max_overflow
        return options

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'encore.db').resolve()}"

    @property
    def resolved_queue_url(self) -> str:
        return self.queue_url or f"sqlite:///{(self.data_dir / 'queue.db').resolve()}"

    @property
    def resolved_rate_limit_url(self) -> str:
        """The Redis URL the rate limits count in, or ``""`` for in-process counters."""
        if self.rate_limit_url:
            return "" if self.rate_limit_url == "memory://" else self.rate_limit_url
        if self.queue_url.startswith(("redis://", "rediss://", "unix://")):
            return self.queue_url
        return ""

    @property
    def resolved_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "cache" / "models").resolve()

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'blobs').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
