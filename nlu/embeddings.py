"""Sentence embeddings (MiniLM, mean-pooled): find the catalogue examples nearest a turn."""

from __future__ import annotations

from typing import Any

import numpy as np


def mean_pooled(model: Any, tokenizer: Any, texts: list[str], max_length: int = 128) -> Any:
    """Unit-length mean-pooled vectors of ``texts`` as a torch tensor (with gradients when
    the caller trains): the pooling all-MiniLM-L6-v2 was trained with."""
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class SentenceEmbedder:
    def __init__(self, model_dir: str, max_length: int = 128) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.max_length = max_length
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self._model = AutoModel.from_pretrained(model_dir).eval()

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length vectors, one row per text (batched by length, so little is padding)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            with self._torch.inference_mode():
                vectors = mean_pooled(self._model, self._tokenizer, [texts[i] for i in rows],
                                      self.max_length)
            out[rows] = vectors.numpy()
        return out
