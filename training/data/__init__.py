"""Turning stored calls into training data: cleaning, PII redaction, annotation, datasets."""
