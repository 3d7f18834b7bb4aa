"""The call store: every call and turn, with its audio, as training data."""

from training.store.store import CallStore, TurnRecord

__all__ = ["CallStore", "TurnRecord"]
