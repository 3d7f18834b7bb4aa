"""LLM engines behind one streaming interface."""
