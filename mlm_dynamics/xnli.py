"""XNLI: a sentence-pair probe trained on one language and scored on every language.

Data: per language ``{lang}.train.tsv``, ``{lang}.dev.tsv`` and ``{lang}.test.tsv`` (or
``.jsonl``) in a directory, in XNLI's column layout: a tab-separated header naming ``premise``,
``hypothesis`` and ``label`` (XNLI 1.0's ``sentence1``, ``sentence2`` and ``gold_label`` are read
too; other columns are ignored), or one JSON object a line with those keys. Labels are
``entailment``, ``neutral``, ``contradiction`` or their ids 0, 1, 2 as in ``facebook/xnli``. The
dev split is XNLI's validation set (``validation`` on the hub). With ``--data hub`` the
``facebook/xnli`` dataset is loaded through the ``datasets`` library at a pinned revision
(``--hub-revision``, best a commit sha): the revision is resolved to its commit on the hub
(``HF_ENDPOINT``) first, so that a missing revision or an unreachable hub is one clear error, and
``datasets`` is then asked for that commit. With ``HF_HUB_OFFLINE=1`` the ``datasets`` cache
answers instead, for a full commit sha only, and only if what it holds was prepared from that
commit (``datasets`` would otherwise fall back to whichever revision it cached last).
Where every split came from (the directory's file and its sha256, or the hub repository, the
revision asked for, its commit and the sha256 of each data file) is written to ``source.json`` in
the features directory, and the probe copies the records of every language into its score
table's metadata (``DataFrame.attrs["xnli_data"]``, kept in the parquet file).

``xnli-features`` encodes premise and hypothesis separately and pools each sentence's subword
vectors (special tokens excluded) for every hidden state (``--pooling``, ``activations.pooling``:
``auto`` is the mean for a masked LM and the last subword, the only one that has read the whole
sentence, for a causal LM; recorded in ``source.json`` and in the score rows' ``pooling``),
caching per split (train, dev, test) the activation cache's ``layerNN.npy`` files
(:mod:`mlm_dynamics.activations.store`), float16 ``(pairs, 2, hidden)`` (premise u,
hypothesis v), and ``labels.npy``.
Splits larger than ``--max-train`` / ``--max-dev`` / ``--max-test`` are subsampled: the same
seeded choice of row numbers for every language, so translated splits keep the same pairs.

``xnli-probe`` fits a multinomial logistic-regression probe per layer on ``[u; v; |u - v|; u * v]``
of one language's train split, each layer's L2 strength chosen from the ``--l2`` grid by accuracy
on that language's dev split (``probe.fit_l2_grid``; test is never read for it), and scores it on
the test split of every language (split ``test`` rows) and on its own language's dev split (split
``dev`` rows: what any choice made from scores, such as a layer, reads). As for the UD probes,
seed 0 fits on the whole train split and each further seed on a bootstrap resample of the
training pairs (keyed by seed, language and ``train``), so the spread over seeds is the
probe-training variance. Metrics, per layer and probe seed:

- ``accuracy``: correct pairs / pairs;
- ``majority_accuracy``: the accuracy of always answering the train split's majority label (one
  row per seed and evaluation set, at the baseline layer of :mod:`mlm_dynamics.analysis.tables`).

Each carries a 95% (``--confidence``) percentile bootstrap interval over sentence pairs (``ci_low``,
``ci_high``): the pairs of one evaluation set are resampled with the matrix that
``stats.Bootstrap.weights`` keys by (seed, language, split), so every probe, layer, step and
training language scored on that set sees the same resamples. A dev or test set with fewer pairs
than ``--min-sentences`` is refused. The per-pair correctness of every probe (``stats.ItemScores``,
one pair = one unit) goes to ``--items`` (``.npz``), so later statistics need no refit.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mlm_dynamics.activations import store
from mlm_dynamics.errors import InputError

LABELS = ("entailment", "neutral", "contradiction")
COLUMNS = {
    "premise": ("premise", "sentence1"),
    "hypothesis": ("hypothesis", "sentence2"),
    "label": ("label", "gold_label"),
}
SPLITS = ("train", "dev", "test")
HUB_REPO = "facebook/xnli"
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
COMMIT = re.compile(r"[0-9a-f]{40}")
SOURCE_FILE = "source.json"  # beside the split directories: where each split's pairs came from
SUBSAMPLE_SEED = 13
LABELS_FILE = "labels.npy"  # beside the layer files of each split
SENTENCES_PER_CHUNK = 512  # bounds the float32 word vectors held at once


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Pairs:
    premises: list[str]
    hypotheses: list[str]
    labels: np.ndarray  # (pairs,) ids into LABELS
    source: dict = field(default_factory=dict, compare=False)  # where the pairs came from

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Pairs:
        return Pairs(
            [self.premises[i] for i in rows],
            [self.hypotheses[i] for i in rows],
            self.labels[rows],
            self.source,
        )


# ---------------------------------------------------------------- reading


def label_id(value, where: str) -> int:
    text = str(value).strip()
    if text in LABELS:
        return LABELS.index(text)
    if text in {"0", "1", "2"}:
        return int(text)
    raise InputError(f"{where}: label {text!r} is not one of {', '.join(LABELS)} or 0, 1, 2")


def check_pair(premise, hypothesis, where: str) -> tuple[str, str]:
    for name, text in (("premise", premise), ("hypothesis", hypothesis)):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: empty {name}")
    return premise.strip(), hypothesis.strip()


def read_tsv(path: Path) -> Pairs:
    premises, hypotheses, labels = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        # XNLI's text holds bare quotes: no quoting, a tab always separates.
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header is None:
            raise InputError(f"{path}:1: empty file (expected a header)")
        columns = {}
        for key, names in COLUMNS.items():
            found = [name for name in names if name in header]
            if not found:
                raise InputError(f"{path}:1: header has no {' or '.join(names)} column")
            columns[key] = header.index(found[0])
        for number, row in enumerate(rows, start=2):
            where = f"{path}:{number}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InputError(f"{where}: {len(row)} columns, the header has {len(header)}")
            premise, hypothesis = check_pair(
                row[columns["premise"]], row[columns["hypothesis"]], where
            )
            labels.append(label_id(row[columns["label"]], where))
            premises.append(premise)
            hypotheses.append(hypothesis)
    return Pairs(premises, hypotheses, np.array(labels, dtype=np.int64))


def read_jsonl(path: Path) -> Pairs:
    premises, hypotheses, labels = [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not all(k in record for k in COLUMNS):
                raise InputError(f"{where}: expected an object with premise, hypothesis, label")
            premise, hypothesis = check_pair(record["premise"], record["hypothesis"], where)
            labels.append(label_id(record["label"], where))
            premises.append(premise)
            hypotheses.append(hypothesis)
    return Pairs(premises, hypotheses, np.array(labels, dtype=np.int64))


def split_file(data_dir: str | Path, lang: str, split: str) -> Path:
    candidates = [Path(data_dir) / f"{lang}.{split}.{ext}" for ext in ("tsv", "jsonl")]
    found = [path for path in candidates if path.is_file()]
    if len(found) != 1:
        what = "no" if not found else "both"
        raise InputError(
            f"{data_dir}: {what} {candidates[0].name} / {candidates[1].name} for XNLI {split}"
        )
    return found[0]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_offline() -> bool:
    import datasets

    return bool(datasets.config.HF_HUB_OFFLINE)


def resolve_hub_commit(revision: str, where: str) -> str:
    """The commit of ``revision`` of facebook/xnli on the hub: one request, no retries, so that
    a missing revision or an unreachable hub is one clear error (``datasets`` retries for half a
    minute, then falls back to any cached revision)."""
    import datasets
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = datasets.config.HF_ENDPOINT
    try:
        info = HfApi(endpoint=endpoint).dataset_info(HUB_REPO, revision=revision, timeout=30)
    except RevisionNotFoundError:
        raise InputError(
            f"xnli.hub_revision: {where}: {HUB_REPO} has no revision {revision!r}"
        ) from None
    except RepositoryNotFoundError:
        raise InputError(f"xnli.data: {where}: no dataset {HUB_REPO} on {endpoint}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise InputError(f"xnli.data: {where}: {endpoint} answered HTTP {status}") from None
    except Exception as exc:  # the transport's own errors: refused, timed out, no such host
        raise InputError(
            f"xnli.data: {where}: cannot reach the hub at {endpoint} ({type(exc).__name__}: "
            f"{exc}); set HF_HUB_OFFLINE=1 to use the datasets cache"
        ) from None
    if not info.sha or not COMMIT.fullmatch(info.sha):
        raise InputError(f"xnli.data: {where}: {endpoint} gave no commit for {revision!r}")
    return info.sha


def data_file_checksums(data_files, commit: str) -> dict[str, str | None]:
    """Path in the repo -> sha256 of the file ``datasets`` read (from the hub's file cache)."""
    from huggingface_hub import try_to_load_from_cache

    prefix = f"hf://datasets/{HUB_REPO}@{commit}/"
    checksums = {}
    for url in data_files or []:
        name = str(url).removeprefix(prefix)
        local = try_to_load_from_cache(HUB_REPO, name, revision=commit, repo_type="dataset")
        checksums[name] = sha256_file(local) if isinstance(local, str) else None
    return checksums


@functools.cache
def hub_dataset(lang: str, revision: str):
    """facebook/xnli's configuration ``lang`` at ``revision``, prepared: (builder, commit)."""
    import datasets
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx

    where = f"{HUB_REPO}@{revision} {lang}"
    offline = hub_offline()
    if offline:
        if not COMMIT.fullmatch(revision):
            raise InputError(
                f"xnli.hub_revision: {where}: offline (HF_HUB_OFFLINE), the datasets cache can "
                "only be checked against a full 40-hex commit sha"
            )
        cached = Path(datasets.config.HF_DATASETS_CACHE) / HUB_REPO.replace("/", "___") / lang
        if not any(cached.glob(f"*/{revision}")):
            raise InputError(
                f"xnli.hub_revision: {where}: offline (HF_HUB_OFFLINE), and the datasets cache "
                f"({datasets.config.HF_DATASETS_CACHE}) holds no {lang} prepared from {revision}"
            )
        commit = revision
    else:
        commit = resolve_hub_commit(revision, where)
    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    try:
        if offline:  # its warning that it uses "the latest cached version": checked below
            datasets.logging.set_verbosity_error()
        builder = datasets.load_dataset_builder(HUB_REPO, lang, revision=commit)
        datasets.logging.set_verbosity(verbosity)
        if builder.hash != commit:
            raise InputError(
                f"xnli.hub_revision: {where}: the datasets cache holds {HUB_REPO} prepared from "
                f"commit {builder.hash}, not {commit}"
                + (" (offline: HF_HUB_OFFLINE is set)" if offline else "")
            )
        builder.download_and_prepare()
    except InputError:
        raise
    except ValueError as exc:  # BuilderConfig 'xx' not found. Available: [...]
        raise InputError(f"xnli.languages: {where}: no such configuration ({exc})") from None
    except (OSError, datasets.exceptions.DatasetsError, HfHubHTTPError, httpx.HTTPError) as exc:
        # ConnectionError, DatasetNotFoundError (FileNotFoundError), the hub gone mid-way
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"xnli.data: {where}: {type(exc).__name__}: {reason}") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
    return builder, commit


def load_hub(lang: str, split: str, revision: str) -> Pairs:
    if not revision:
        raise InputError("xnli.hub_revision: 'hub' data needs a pinned revision of facebook/xnli")
    name = HUB_SPLITS[split]
    builder, commit = hub_dataset(lang, revision)
    where = f"{HUB_REPO}@{revision} {lang} {name}"
    if name not in (builder.info.splits or {}):
        raise InputError(f"xnli.data: {where}: no {name} split")
    table = builder.as_dataset(split=name).with_format("arrow")[:]
    missing = [key for key in COLUMNS if key not in table.column_names]
    if missing:
        raise InputError(f"xnli.data: {where}: no {', '.join(missing)} column")
    columns = {key: table.column(key).to_pylist() for key in COLUMNS}
    premises, hypotheses = [], []
    for i, (premise, hypothesis) in enumerate(
        zip(columns["premise"], columns["hypothesis"], strict=True)
    ):
        premise, hypothesis = check_pair(premise, hypothesis, f"{where} row {i}")
        premises.append(premise)
        hypotheses.append(hypothesis)
    labels = np.asarray(columns["label"], dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= len(LABELS)))
    if len(bad):
        raise InputError(f"{where} row {bad[0]}: label {labels[bad[0]]} is not 0, 1 or 2")
    data_files = (builder.config.data_files or {}).get(name)
    source = {
        "repo": HUB_REPO, "revision": revision, "commit": commit, "config": lang, "split": name,
        "files": data_file_checksums(data_files, commit),
    }  # fmt: skip
    return Pairs(premises, hypotheses, labels, source)


def load_pairs(data: str, lang: str, split: str, hub_revision: str = "") -> Pairs:
    """One language's split, from a directory of TSV/JSONL files or from the hub."""
    if data == "hub":
        return load_hub(lang, split, hub_revision)
    if not data:
        raise InputError("xnli.data: no XNLI data configured")
    path = split_file(data, lang, split)
    pairs = read_jsonl(path) if path.suffix == ".jsonl" else read_tsv(path)
    if len(pairs) == 0:
        raise InputError(f"{path}: no sentence pairs")
    return replace(pairs, source={"path": str(path), "sha256": sha256_file(path)})


def subsample(pairs: Pairs, limit: int) -> Pairs:
    """At most ``limit`` pairs: the same seeded row numbers for any split of the same size."""
    if len(pairs) <= limit:
        return pairs
    rows = np.sort(np.random.default_rng(SUBSAMPLE_SEED).choice(len(pairs), limit, replace=False))
    return pairs.take(rows)


# ---------------------------------------------------------------- features


def sentence_vectors(encoder, texts: list[str], *, pooling: str, batch_tokens: int) -> np.ndarray:
    """Each text's vector, (hidden states, texts, hidden): the mean of its subword vectors
    (specials excluded) for pooling ``mean``, else its first or last subword's vector (a causal
    LM's last subword is the only one that has read the whole sentence).

    Word vectors from the activation encoder are pooled the same way; for ``mean``, weighting
    each word by its number of subwords gives back the mean over the sentence's subwords.
    """
    result = np.empty((encoder.n_hidden_states, len(texts), encoder.hidden_size), np.float32)
    for start in range(0, len(texts), SENTENCES_PER_CHUNK):
        chunk = [text.split() for text in texts[start : start + SENTENCES_PER_CHUNK]]
        words, plan = encoder.extract(chunk, pooling=pooling, batch_tokens=batch_tokens)
        starts = plan.offsets[:-1]
        if pooling == "first":
            result[:, start : start + len(chunk)] = words[:, starts]
        elif pooling == "last":
            result[:, start : start + len(chunk)] = words[:, plan.offsets[1:] - 1]
        else:
            rows = np.concatenate([window.word_rows for window in plan.windows])
            subwords = np.bincount(rows, minlength=plan.n_words).astype(np.float32)
            sums = np.add.reduceat(words * subwords[None, :, None], starts, axis=1)
            result[:, start : start + len(chunk)] = (
                sums / np.add.reduceat(subwords, starts)[:, None]
            )
    return result


def write_features(encoder, pairs: Pairs, split_dir: Path, pooling: str, batch_tokens: int) -> None:
    """``layerNN.npy`` float16 (pairs, 2, hidden) and ``labels.npy`` in ``split_dir``."""
    split_dir.mkdir(parents=True)
    vectors = functools.partial(sentence_vectors, pooling=pooling, batch_tokens=batch_tokens)
    premises, hypotheses = vectors(encoder, pairs.premises), vectors(encoder, pairs.hypotheses)
    for layer in range(encoder.n_hidden_states):
        pair_vectors = np.stack([premises[layer], hypotheses[layer]], axis=1)
        np.save(store.layer_file(split_dir, layer), pair_vectors.astype(np.float16))
    np.save(split_dir / LABELS_FILE, pairs.labels)


def load_features(split_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Probe features (layers, pairs, 4 hidden): [u; v; |u - v|; u * v], and the labels."""
    split_dir = Path(split_dir)
    if not (split_dir / LABELS_FILE).is_file():
        raise InputError(f"{split_dir}: no XNLI features (layerNN.npy, {LABELS_FILE})")
    layers = []
    for layer in store.cached_layers(split_dir):
        uv = store.load_layer(split_dir, layer)
        u, v = uv[:, 0], uv[:, 1]
        layers.append(np.concatenate([u, v, np.abs(u - v), u * v], axis=1))
    return np.stack(layers), np.load(split_dir / LABELS_FILE)


# ---------------------------------------------------------------- commands


def features_main(args) -> None:
    from mlm_dynamics.activations.extract import Encoder
    from mlm_dynamics.atomic import atomic_dir

    limits = {"train": args.max_train, "dev": args.max_dev, "test": args.max_test}
    splits, sources = {}, {}
    for split in SPLITS:
        pairs = load_pairs(args.data, args.language, split, args.hub_revision)
        splits[split] = subsample(pairs, limits[split])
        sources[split] = {**pairs.source, "pairs": len(pairs), "used": len(splits[split])}
        log(f"{args.language} {split}: {len(splits[split])} of {len(pairs)} pairs")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = Encoder.from_checkpoint(args.checkpoint, args.tokenizer)
    pooling = encoder.pooling(args.pooling)
    log(f"sentence vectors: pooling {pooling} of each sentence's subwords")
    source = {"language": args.language, "data": args.data, "splits": sources, "pooling": pooling}
    with atomic_dir(args.out) as tmp:
        for split, pairs in splits.items():
            write_features(encoder, pairs, tmp / split, pooling, args.batch_tokens)
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out}")


def read_source(features_dir: str | Path) -> dict | None:
    """The features directory's ``source.json`` (None for features written before it existed)."""
    path = Path(features_dir) / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg})") from None


def evaluation_sets(features: dict[str, Path], train_language: str):
    """(language, split) -> its features directory: every language's test split, then the
    training language's own dev split."""
    sets = {(lang, "test"): path / "test" for lang, path in features.items()}
    sets[(train_language, "dev")] = features[train_language] / "dev"
    return sets


def training_rows(pairs: int, seed: int, language: str) -> np.ndarray:
    """The training pairs of probe seed ``seed``: all of them for seed 0, else a bootstrap
    resample of them (a pair drawn ``k`` times appears ``k`` times)."""
    from mlm_dynamics.probing.pipeline import Units, training_rows

    return training_rows(Units.each_own(pairs), seed, language, "train")


def fit_seed(args, train, dev, seed: int):
    """The probe of seed ``seed``, each layer's L2 strength chosen on the training language's
    dev split: on all training pairs (seed 0) or a resample of them."""
    from mlm_dynamics.probing.probe import fit_l2_grid

    (X_train, y_train), (X_dev, y_dev) = train, dev
    rows = training_rows(len(y_train), seed, args.train_language)
    search = fit_l2_grid(
        X_train[:, rows], y_train[rows], X_dev, y_dev, args.l2,
        backend=args.backend, max_iter=args.max_iter, seed=seed,
    )  # fmt: skip
    log(
        f"seed {seed}: fitted {X_train.shape[0]} layers on {len(rows)} pairs; L2 per layer "
        f"(chosen on {args.train_language} dev) {' '.join(f'{v:g}' for v in search.l2)}"
    )
    return search.probe


def score_seed(args, probe, seed: int, data, weights, majority, bootstrap):
    """The rows and per-pair item scores of one probe seed on every evaluation set."""
    from mlm_dynamics.probing import pipeline

    rows, items = [], []
    for (lang, split), (X, y) in data.items():
        correct = probe.predict(X) == y[None, :]  # (layers, pairs)
        layers, pairs = list(range(correct.shape[0])), pipeline.Units.each_own(len(y))
        common = dict(model=args.model, step=args.step, task="xnli", train_lang=args.train_language,
                      test_lang=lang, split=split, seed=seed)  # fmt: skip
        rows += pipeline.probe_rows(
            common, layers, correct, y == majority, pairs, weights[lang, split], bootstrap
        )
        items.append(pipeline.item_scores(common, layers, correct, pairs))
        accuracy = correct.mean(axis=1)
        log(
            f"{args.train_language} -> {lang} {split}: accuracy {accuracy.min():.3f} to "
            f"{accuracy.max():.3f} over layers ({len(y)} pairs)"
        )
    return rows, items


def probe_main(args) -> None:
    from mlm_dynamics import stats
    from mlm_dynamics.analysis.tables import tidy_frame
    from mlm_dynamics.atomic import save_table

    bootstrap = stats.from_arguments(args)
    if args.seeds < 1:
        raise InputError("--seeds: must be >= 1")
    if min(args.l2) < 0:
        raise InputError("--l2: must be >= 0")
    features = {Path(path).name: Path(path) for path in args.features}
    if args.train_language not in features:
        raise InputError(f"--features: no directory of the training language {args.train_language}")
    train = load_features(features[args.train_language] / "train")
    sets = evaluation_sets(features, args.train_language)
    data = {key: load_features(path) for key, path in sets.items()}
    # Refuse a too-small set before any fitting.
    weights = {
        (lang, split): bootstrap.weights(
            len(y), lang, split, f"{sets[lang, split]} (XNLI {lang} {split})"
        )
        for (lang, split), (_, y) in data.items()
    }
    majority = np.bincount(train[1], minlength=len(LABELS)).argmax()
    rows, items = [], []
    for seed in range(args.seeds):
        probe = fit_seed(args, train, data[args.train_language, "dev"], seed)
        seed_rows, seed_items = score_seed(args, probe, seed, data, weights, majority, bootstrap)
        rows += seed_rows
        items += seed_items
    poolings = {(read_source(path) or {}).get("pooling", "") for path in features.values()}
    if len(poolings) > 1:
        raise InputError(f"--features: sentence vectors of different poolings {sorted(poolings)}")
    pooling = poolings.pop()
    table = tidy_frame([{**row, "pooling": pooling} for row in rows])
    # Where every language's pairs came from (source.json): kept in the parquet's metadata.
    table.attrs["xnli_data"] = {lang: read_source(path) for lang, path in features.items()}
    save_table(args.out, table)
    stats.save_item_scores(args.items, items, model=args.model, step=args.step)


def main(command: str, argv: list[str]) -> None:
    from mlm_dynamics import stats
    from mlm_dynamics.activations.extract import AUTO_POOLING, POOLINGS

    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}", description=__doc__)
    if command == "xnli-features":
        parser.add_argument("--checkpoint", required=True, help="Hugging Face-format directory")
        parser.add_argument("--tokenizer", help="tokenizer directory (default: the checkpoint)")
        parser.add_argument("--data", required=True, help="directory of TSV/JSONL files, or hub")
        parser.add_argument(
            "--hub-revision", required=True, help="pinned facebook/xnli revision (or '')"
        )
        parser.add_argument("--language", required=True)
        parser.add_argument("--max-train", type=int, required=True, help="xnli.max_train")
        parser.add_argument("--max-dev", type=int, required=True, help="xnli.max_dev")
        parser.add_argument("--max-test", type=int, required=True, help="xnli.max_test")
        parser.add_argument("--batch-tokens", type=int, required=True, help="xnli.batch_tokens")
        parser.add_argument(
            "--pooling", choices=[AUTO_POOLING, *POOLINGS], required=True,
            help="activations.pooling: of each sentence's subwords",
        )  # fmt: skip
        parser.add_argument("--threads", type=int, help="CPU threads for torch")
        parser.add_argument("--out", required=True, help="output directory ({split}/layerNN.npy)")
        features_main(parser.parse_args(argv))
    else:
        parser.add_argument(
            "--features", nargs="+", required=True,
            help="the features directory of every XNLI language (named by its language)",
        )  # fmt: skip
        parser.add_argument("--train-language", required=True)
        parser.add_argument("--backend", choices=("torch", "sklearn"), required=True)
        parser.add_argument(
            "--l2", type=float, nargs="+", required=True, help="L2 grid (chosen on dev)"
        )
        parser.add_argument("--max-iter", type=int, required=True, help="probing.max_iter")
        parser.add_argument("--seeds", type=int, required=True, help="probing.seeds")
        parser.add_argument("--model", required=True)
        parser.add_argument("--step", type=int, required=True)
        parser.add_argument("--out", required=True, help="tidy score table (.parquet)")
        parser.add_argument("--items", required=True, help="per-pair correctness (.npz)")
        stats.add_arguments(parser)
        probe_main(parser.parse_args(argv))
