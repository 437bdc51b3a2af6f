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
