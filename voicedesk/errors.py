"""User-facing errors.

Every failure a user can cause or fix (bad audio, a missing model package, a
bad setting) is raised as a ``VoicedeskError`` whose message is one line that
says what was wrong, with which input, and what to do. The CLI prints it and
exits non-zero; anything else is a bug and keeps its traceback.
"""


class VoicedeskError(Exception):
    """A problem the user can fix; the message is shown as-is on one line."""


class ConfigError(VoicedeskError):
    """The configuration file or an environment override is invalid."""


class ModelError(VoicedeskError):
    """A model is missing, corrupt, or cannot be prepared."""


class AudioError(VoicedeskError):
    """An audio input is missing, unreadable, empty, or in an unusable format."""
