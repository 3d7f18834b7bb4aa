"""voicedesk: a speech-first voice assistant for telecom call centres."""

__version__ = "0.1.0"
