"""Sentence embeddings (MiniLM, mean-pooled): find the catalogue examples nearest a turn."""

from __future__ import annotations

import numpy as np


class SentenceEmbedder:
    def __init__(self, model_dir: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._model = AutoModel.from_pretrained(model_dir).eval()

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length vectors, one row per text."""
        torch = self._torch
        rows = []
        for i in range(0, len(texts), batch_size):
            batch = self._tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                    max_length=128, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 384), dtype=np.float32)
