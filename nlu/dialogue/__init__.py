"""Dialogue management: deterministic flows decide, the LLM only recognises and words."""
