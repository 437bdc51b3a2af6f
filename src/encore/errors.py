"""One exception hierarchy for the whole project.

Every error a user can cause is an :class:`InvalidInput` (or a subclass) whose message
names the offending value. The web layer maps these classes to HTTP status codes and
the job layer to job states, each in exactly one place.
"""

from __future__ import annotations


class EncoreError(Exception):
    """Base class of every error encore raises on purpose."""


class InvalidInput(EncoreError):
    """Malformed or out-of-range input (a file, a form field, an argument)."""


class NotFound(EncoreError):
    """A referenced object (song, clip, model version, file) does not exist."""


class PermissionDenied(EncoreError):
    """The caller may not do this."""


class Conflict(EncoreError):
    """The request clashes with the current state (duplicate, already done, busy)."""


class TooManyRequests(EncoreError):
    """Too many requests of one kind for now (429); ``retry_after`` says when to retry.

    Parameters
    ----------
    message
        Text fit to show to the user (it says when to try again).
    retry_after
        Seconds until the next request of this kind will be accepted.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(EncoreError):
    """Storing this would take an account past its storage quota (413)."""


class ConfigurationError(EncoreError):
    """The settings are inconsistent or unsafe for this environment."""


# --- audio -----------------------------------------------------------------------------


class AudioError(InvalidInput):
    """A song or clip cannot be used as audio. Subclasses say why."""


class NotAudio(AudioError):
    """The bytes are not in any audio format encore reads."""


class UnsupportedAudio(AudioError):
    """A recognised container or codec that encore does not accept."""


class CorruptAudio(AudioError):
    """Recognised audio that cannot be decoded to the end (corrupt or truncated)."""


class SilentAudio(AudioError):
    """Audio with no samples, or only (near-)silence."""


class AudioTooShort(AudioError):
    """Shorter than the minimum duration."""


class AudioTooLong(AudioError):
    """Longer than the configured maximum duration."""


# --- jobs ------------------------------------------------------------------------------


class JobSuperseded(Conflict):
    """This attempt no longer owns its job (it was re-queued after its heartbeat went stale,
    or released at shutdown); the attempt must stop without writing results."""
