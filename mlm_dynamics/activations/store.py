"""The activation cache on disk, shared by every consumer (probes, XNLI, SimAlign).

Layout, one directory per model x step x language x split::

    results/activations/{model}/{step}/{lang}/{split}/layer00.npy  # embeddings (words, hidden) f16
    results/activations/{model}/{step}/{lang}/{split}/layer01.npy  # first transformer layer, ...
    results/activations/{model}/{step}/{lang}/{split}/index.npz    # offsets, word_counts, truncated

Row ``i`` of every layer file is the i-th word of the split in treebank order; sentence ``s`` owns
rows ``offsets[s]:offsets[s + 1]``. The XNLI features (:mod:`mlm_dynamics.xnli`) use the same
``layerNN.npy`` files, one per hidden state, for their sentence-pair vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlm_dynamics.errors import InputError

# One model x step x language of the cache, as the workflow lays it out.
CACHE_DIR = "results/activations/{model}/{step}/{lang}"


def layer_file(split_dir: str | Path, layer: int) -> Path:
    return Path(split_dir) / f"layer{layer:02d}.npy"


def cached_layers(split_dir: str | Path) -> list[int]:
    """The layer numbers of the ``layerNN.npy`` files in ``split_dir``, ascending: 0..N-1."""
    split_dir = Path(split_dir)
    layers = sorted(int(path.stem[len("layer") :]) for path in split_dir.glob("layer[0-9]*.npy"))
    if not layers:
        raise InputError(f"{split_dir}: no layerNN.npy files in the activation cache")
    if layers != list(range(len(layers))):
        raise InputError(f"{split_dir}: layer files are not numbered 00..{len(layers) - 1:02d}")
    return layers


def index_file(split_dir: str | Path) -> Path:
    return Path(split_dir) / "index.npz"


@dataclass(frozen=True)
class SplitIndex:
    offsets: np.ndarray  # (sentences + 1,) row offsets
    word_counts: np.ndarray  # (sentences,)
    truncated: np.ndarray  # (sentences,) words that did not fit the model's positions in one window

    @property
    def n_words(self) -> int:
        return int(self.offsets[-1])


def load_index(split_dir: str | Path) -> SplitIndex:
    with np.load(index_file(split_dir)) as z:
        return SplitIndex(z["offsets"], z["word_counts"], z["truncated"])


def load_layer(split_dir: str | Path, layer: int, dtype=np.float32) -> np.ndarray:
    """One layer's word vectors, (words, hidden), cast to ``dtype`` for numerical work."""
    return np.load(layer_file(split_dir, layer)).astype(dtype, copy=False)


def load_layers(split_dir: str | Path, layers: list[int], dtype=np.float32) -> np.ndarray:
    """Several layers stacked, (layers, words, hidden)."""
    return np.stack([load_layer(split_dir, layer, dtype) for layer in layers])
