"""The activation cache on disk, shared by every consumer (probes, XNLI, SimAlign).

Layout, one directory per model x step x language x split::

    results/activations/{model}/{step}/{lang}/{split}/layer00.npy  # embeddings (words, hidden) f16
    results/activations/{model}/{step}/{lang}/{split}/layer01.npy  # first transformer layer, ...
    results/activations/{model}/{step}/{lang}/{split}/index.npz    # per sentence: see SplitIndex

Row ``i`` of every layer file is the i-th word of the split in treebank order; sentence ``s`` owns
rows ``offsets[s]:offsets[s + 1]``. The XNLI features (:mod:`mlm_dynamics.xnli`) use the same
``layerNN.npy`` files, one per hidden state, for their sentence-pair vectors.

``index.npz`` holds one int64 array per name, :class:`SplitIndex` its one reader and writer:

- ``offsets`` (sentences + 1,): row offsets; ``word_counts`` (sentences,): words per sentence;
- ``truncated`` (sentences,): words that did not fit the model's positions in one window;
- the tokenizer's coverage, per sentence (``COVERAGE_FIELDS``): ``subword_counts``, the subwords
  its words became; ``unk_word_counts``, its words holding at least one unknown token (the
  tokenizer's ``unk_token_id``); ``unk_subword_counts``, its unknown subwords. A word the
  tokenizer drops entirely is read as one unknown token (:mod:`mlm_dynamics.activations.extract`)
  and counts so; a tokenizer without an unknown token (byte-level) counts none. Caches written
  before these were recorded lack them: they load as None (unknown), never as zero.
- ``pooling`` (a 0-d string array): how each word's subword vectors became its vector (``mean``,
  ``first`` or ``last``: ``activations.pooling`` as resolved for the model's kind); None in a
  cache written before it was recorded.
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


# The tokenizer's coverage in the index, per sentence (None in a cache written before them).
COVERAGE_FIELDS = ("subword_counts", "unk_word_counts", "unk_subword_counts")


@dataclass(frozen=True)
class SplitIndex:
    """The ``index.npz`` of one split (the module docstring lists its arrays)."""

    offsets: np.ndarray  # (sentences + 1,) row offsets
    word_counts: np.ndarray  # (sentences,)
    truncated: np.ndarray  # (sentences,) words that did not fit the model's positions in one window
    subword_counts: np.ndarray | None = None  # (sentences,) subwords of the sentence's words
    unk_word_counts: np.ndarray | None = None  # (sentences,) words with an unknown subword
    unk_subword_counts: np.ndarray | None = None  # (sentences,) unknown subwords
    pooling: str | None = None  # mean, first or last

    @property
    def n_words(self) -> int:
        return int(self.offsets[-1])

    @property
    def has_coverage(self) -> bool:
        """Whether the tokenizer's coverage was recorded (caches written before lack it)."""
        return all(getattr(self, name) is not None for name in COVERAGE_FIELDS)

    def unk_shares(self) -> tuple[float, float] | None:
        """(share of words holding an unknown token, share of unknown subwords) of the split;
        None where the coverage is unknown, NaN for a split without words."""
        if not self.has_coverage:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return (
                float(np.divide(self.unk_word_counts.sum(), self.word_counts.sum())),
                float(np.divide(self.unk_subword_counts.sum(), self.subword_counts.sum())),
            )

    def save(self, split_dir: str | Path) -> None:
        """Write ``index.npz`` in ``split_dir`` (the coverage arrays where known)."""
        arrays = dict(offsets=self.offsets, word_counts=self.word_counts, truncated=self.truncated)
        for name in COVERAGE_FIELDS:
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name), dtype=np.int64)
        if self.pooling is not None:
            arrays["pooling"] = np.array(self.pooling)  # unicode, read back without pickle
        np.savez(index_file(split_dir), **arrays)


def load_index(split_dir: str | Path) -> SplitIndex:
    with np.load(index_file(split_dir)) as z:
        coverage = {name: z[name] for name in COVERAGE_FIELDS if name in z.files}
        pooling = str(z["pooling"]) if "pooling" in z.files else None
        return SplitIndex(
            z["offsets"], z["word_counts"], z["truncated"], **coverage, pooling=pooling
        )


def cache_pooling(cache_dir: str | Path) -> str | None:
    """The pooling one model x step x language's cache recorded (None: written before it was
    recorded), the same for all its splits."""
    found = {
        load_index(index.parent).pooling for index in sorted(Path(cache_dir).glob("*/index.npz"))
    }
    if len(found) > 1:
        raise InputError(
            f"{cache_dir}: splits cached with different poolings {sorted(map(str, found))}"
        )
    return found.pop() if found else None


def load_layer(split_dir: str | Path, layer: int, dtype=np.float32) -> np.ndarray:
    """One layer's word vectors, (words, hidden), cast to ``dtype`` for numerical work."""
    return np.load(layer_file(split_dir, layer)).astype(dtype, copy=False)


def load_layers(split_dir: str | Path, layers: list[int], dtype=np.float32) -> np.ndarray:
    """Several layers stacked, (layers, words, hidden)."""
    return np.stack([load_layer(split_dir, layer, dtype) for layer in layers])
