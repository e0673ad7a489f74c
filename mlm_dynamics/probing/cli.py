"""``train-probe`` and ``score-probe``: UD probes fitted on one language, scored on any.
``train-probe`` fits one probe per layer and seed on the train split of one language and saves them
all in one ``.npz``: weights, standardisation, label inventory, the train split's majority label.
The L2 strength of each layer is chosen from ``--l2`` (a grid) by accuracy on the language's **dev**
split (:func:`mlm_dynamics.probing.probe.fit_l2_grid`); test is never read there. How stable that
choice is, is stored beside it (``l2_stability``, seed 0: per layer, the share of the dev split's
bootstrap resamples, the very draw of score-probe's dev rows, in which the same value would win by
the same rule, ties to the larger value). Seed 0 fits on the whole train split; each further seed
fits on a bootstrap resample of the training *sentences*, so the spread over seeds is the
probe-training variance (for a convex probe the initial weights alone would vary nothing). For a
task with a control task (``pos``, ``deprel``) named in ``--controls`` the file also holds a
control probe (:mod:`mlm_dynamics.probing.control`) fitted on control labels, and with ``--mdl``
the online codelength of a task that has one (``pos``, :mod:`mlm_dynamics.probing.mdl`). Every task
comes from :mod:`mlm_dynamics.probing.registry`; for an optional task (``morph-<Feature>``) that
the language lacks (too few words carrying the feature in train or dev, or a single value), the
file is written marked ``absent`` with the reason and no probe.

``score-probe`` scores any number of such files on one language and writes tidy rows (see
:mod:`mlm_dynamics.analysis.tables`) for its test split (every probe) and its dev split (the
language's own probes: what the layer choices read): ``accuracy`` per layer and seed,
``majority_accuracy`` (the probe's train majority label, at ``tables.BASELINE_LAYER``), and for
own-language probes with a control ``control_accuracy`` and ``selectivity`` (accuracy - control
accuracy). Every value has a bootstrap interval over the split's sentences
(:mod:`mlm_dynamics.stats`, resamples shared by every job that scores the same split, so differences
are paired), and the per-item correctness goes to ``--items`` so later statistics need no refit.
Own-language probes add, on dev, seed 0, per layer, the L2 choice: ``l2`` (the value chosen),
``l2_stability`` (how often a dev resample chooses it again: itself a bootstrap summary) and
``l2_on_grid_edge`` (1 when it is the grid's smallest or largest value, of two or more), without
an interval (a probe file from before ``l2_stability`` was stored gives none of them). A job that
scores pos probes also gives the tokenizer's coverage of the language (``tokenizer_rows``), from
the activation cache's index: task ``tokenizer``, per split, ``unk_word_share`` and
``unk_subword_share`` with their intervals (none from a cache that did not record it).
Scoring is a matrix product in numpy: it never imports torch. For ``arc`` the test negatives are
drawn with each probe's own seed, so every train language of one seed is scored on the same test
pairs. An absent probe gives no rows, and a language that lacks an optional task (on train and dev,
or on test) is scored on nothing of it: a probe of one language is scored on another only when both
have the feature.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlm_dynamics import stats
from mlm_dynamics.activations import store
from mlm_dynamics.errors import InputError
from mlm_dynamics.probing import pipeline, registry
from mlm_dynamics.probing.pipeline import interval_rows  # tests score synthetic items with it

PROBE_FORMAT = 2
# The control labels' draw (Hewitt & Liang: one fixed random assignment per word type).
CONTROL_SEED = 0
# The split name keying the resamples of the training sentences of probe seeds >= 1: its own,
# so that the bootstrap of scores on the train split (MDL) does not share this draw.
REFIT_SPLIT = "train-refit"
# The tokenizer's coverage rows: their task, and the probing task whose scoring job gives them
# (once per job, beside that task's rows, so that no two score files of one language hold them).
TOKENIZER_TASK = "tokenizer"
TOKENIZER_ROWS_WITH = "pos"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def language_of(treebank: str | Path) -> str:
    """``results/treebanks/en.json.gz`` -> ``en``."""
    return Path(treebank).name.split(".")[0]


def load_splits(treebank: Path, names: tuple[str, ...]):
    """The named splits of a prepared treebank, each refused in one line when empty."""
    from mlm_dynamics.treebanks import load_prepared

    splits = load_prepared(treebank)
    for split in names:
        if not splits.get(split):
            raise InputError(f"{treebank}: the {split} split has no sentences")
    return splits


# ---------------------------------------------------------------- the probe file

FITTED = ("coef", "intercept", "mean", "scale")


def fitted_arrays(probes, prefix: str = "") -> dict[str, np.ndarray]:
    """The fitted attributes of per-seed probes, stacked over seeds."""
    return {prefix + key: np.stack([getattr(p, key + "_") for p in probes]) for key in FITTED}


def save_probe_file(path, task, language, args, layers, fits: list[dict], excluded=None) -> None:
    from mlm_dynamics.atomic import save_npz

    classes = fits[0]["search"].probe.classes_
    for fit in fits[1:]:  # a resample of the sentences can miss a rare label
        if not np.array_equal(fit["search"].probe.classes_, classes):
            raise InputError(
                f"{args.treebank}: seed {fit['seed']} saw a different {task.name} label set in "
                "train (a rare label missed by its resample of the sentences); use fewer seeds"
            )
    arrays = dict(
        format=np.array(PROBE_FORMAT),
        task=np.array(task.name),
        language=np.array(language),
        backend=np.array(args.backend),
        labels=np.array(task.labels),
        layers=np.array(layers),
        seeds=np.array([fit["seed"] for fit in fits]),
        classes=classes,
        majority=np.array([fit["majority"] for fit in fits]),
        n_train=np.array([fit["n_train"] for fit in fits]),
        l2_grid=np.array(args.l2, dtype=np.float64),
        l2=np.stack([fit["search"].l2 for fit in fits]),
        dev_accuracy=np.stack([fit["search"].dev_accuracy for fit in fits]),
        max_iter=np.array(args.max_iter),
        **fitted_arrays([fit["search"].probe for fit in fits]),
        **excluded_arrays(excluded),
    )
    if "l2_stability" in fits[0]:
        arrays.update(l2_stability=fits[0]["l2_stability"])
    control = fits[0].get("control")
    if control is not None:
        arrays.update(fitted_arrays([control], "control_"))
        arrays.update(control_classes=control.classes_)
    code = fits[0].get("mdl")
    if code is not None:
        arrays.update(
            mdl_codelength=code.codelength,
            mdl_uniform=np.array(code.uniform_codelength),
            mdl_block_ends=np.array(code.block_ends),
            mdl_item_bits=code.item_bits.astype(np.float32),
            mdl_units=fits[0]["units"],
            mdl_classes=np.array(len(task.labels)),
        )
    save_npz(path, **arrays)


def excluded_arrays(excluded: dict[str, int] | None) -> dict[str, np.ndarray]:
    """``excluded_<reason>``: the train words a task left out, by reason (none for most tasks)."""
    return {f"excluded_{reason}": np.array(n) for reason, n in (excluded or {}).items()}


def save_absent_file(path, task, language, reason: str, excluded=None) -> None:
    """The probe file of a language that lacks an optional task: no probe, the reason why."""
    from mlm_dynamics.atomic import save_npz

    save_npz(
        path,
        format=np.array(PROBE_FORMAT),
        task=np.array(task.name),
        language=np.array(language),
        labels=np.array(task.labels),
        absent=np.array(reason),
        **excluded_arrays(excluded),
    )


def load_probe_file(path: Path) -> dict:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such probe file")
    try:
        with np.load(path) as z:
            probe = {key: z[key] for key in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a probe file ({exc})") from None
    if int(probe.get("format", -1)) != PROBE_FORMAT:
        raise InputError(f"{path}: not a probe file of format {PROBE_FORMAT}")
    return probe


def fitted_probe(probe_file: dict, i: int, prefix: str = ""):
    from mlm_dynamics.probing.probe import FittedProbe

    classes = probe_file[prefix + "classes" if prefix else "classes"]
    return FittedProbe(*(probe_file[prefix + key][i] for key in FITTED), classes)


def hidden_features(task, split_dir: Path) -> int:
    from mlm_dynamics.activations import store

    hidden = np.load(store.layer_file(split_dir, 0), mmap_mode="r").shape[1]
    return registry.get(task).n_features(hidden)


def probe_device(requested: str) -> str:
    """The torch device of the fits ("cuda" or "cpu"): the workflow's one device choice
    (:func:`mlm_dynamics.devices.select_device`: CUDA when asked for and visible, otherwise the
    CPU, as the GPU rules do on a machine without one), said in the log."""
    from mlm_dynamics.devices import select_device

    return select_device(requested).type


# ---------------------------------------------------------------- train-probe


def fitting_device(args) -> str:
    """The device of ``train-probe``'s fits, checked against its backend."""
    if args.backend == "torch":
        return probe_device(args.device)
    if args.device != "cpu":
        raise InputError(f"--device {args.device}: the {args.backend} backend runs on the CPU")
    return "cpu"


def fit_one(args, task, data, dev, device, seed):
    from mlm_dynamics.probing.probe import fit_l2_grid

    return fit_l2_grid(
        data.X, data.y, dev.X, dev.y, args.l2,
        backend=args.backend, max_iter=args.max_iter, seed=seed, device=device,
    )  # fmt: skip


def fit_control(args, control, l2, device):
    """The control probe: the same probe as the real task's, each layer at the L2 strength the
    real task chose on dev (Hewitt & Liang compare probes of equal complexity), fitted on the
    control labels."""
    from mlm_dynamics.probing.probe import make_probe

    return make_probe(args.backend, l2, args.max_iter, 0, device).fit(control.X, control.y)


def online_code(args, task, data, device, l2):
    """The online codelength of the train split (Voita & Titov), each layer's probes at the L2
    strength chosen on dev for that layer."""
    from mlm_dynamics.probing.mdl import online_codelength
    from mlm_dynamics.probing.probe import make_probe

    def fit(X, y):
        return make_probe(args.backend, l2, args.max_iter, 0, device).fit(X, y)

    return online_codelength(data.X, data.y, len(task.labels), fit)


def l2_stability(search, dev, weights: np.ndarray) -> np.ndarray:
    """Per layer, the share of the dev resamples ``weights`` (resamples, sentences) in which the
    L2 value chosen on the whole dev split is chosen again by the same rule (the most dev items
    right, ties to the larger value): each value's per-item dev correctness
    (``search.dev_correct``) summed per sentence of ``dev`` (its ``units``), then per resample."""
    order = np.argsort(search.grid, kind="stable")  # ascending: ties go to the last
    correct = np.moveaxis(search.dev_correct[order], 2, 0)  # (items, values, layers)
    sums = stats.unit_sums(correct, dev.units, dev.n_units)
    resampled = np.tensordot(weights, sums, axes=1)  # (resamples, values, layers) items right
    chosen = np.searchsorted(np.asarray(search.grid)[order], search.l2)
    return np.array(
        [stats.choice_stability(resampled[:, :, layer], int(value), prefer_last=True)
         for layer, value in enumerate(chosen)]
    )  # fmt: skip


def log_excluded(language: str, task, excluded: dict[str, int], n_items: int) -> None:
    if any(excluded.values()):
        reasons = {"ambiguous": "with several values (ambiguous)",
                   "other_value": "with a value outside the universal inventory"}  # fmt: skip
        left_out = ", ".join(f"{n} {reasons.get(reason, reason)}"
                             for reason, n in excluded.items() if n)  # fmt: skip
        log(f"{language} {task.name}: {n_items} train {task.item_noun}; left out: {left_out}")


def train(args, name: str, out: str, device: str, bootstrap: stats.Bootstrap) -> None:
    from mlm_dynamics.probing.control import control_labels

    task = registry.get(name)
    if args.seeds < 1:
        raise InputError("--seeds: must be >= 1")
    if min(args.l2) < 0:
        raise InputError("--l2: must be >= 0")
    language = args.language or language_of(args.treebank)
    splits = load_splits(args.treebank, ("train", "dev"))
    excluded = None
    if task.optional:
        train_items = registry.split_items(task, splits["train"], 0, args.treebank)
        excluded = train_items.excluded
        log_excluded(language, task, excluded, len(train_items.labels))
        reason = registry.absent_reason(task, splits, args.treebank, ("train", "dev"))
        if reason is not None:
            save_absent_file(out, task, language, reason, excluded)
            log(f"{language} lacks {task.name}: {reason}; wrote {out} (marked absent, no probe)")
            return
    train_dir, dev_dir = Path(args.activations) / "train", Path(args.activations) / "dev"
    layers = store.cached_layers(train_dir)
    # the dev rows' resamples (score-probe's): how stable the L2 choice is over them
    where = f"{args.treebank} (dev split)"
    dev_weights = bootstrap.weights(len(splits["dev"]), language, "dev", where)
    fits = []
    full = dev = None
    for seed in range(args.seeds):
        if full is None or task.seeded:  # only a seeded task's items (arc's) depend on the seed
            full = registry.build(task, splits["train"], train_dir, args.treebank, seed)
            dev = registry.build(task, splits["dev"], dev_dir, args.treebank, seed)
        data = full  # seed 0: all rows (the train split itself, no copy)
        if seed > 0:
            data = full.subset(pipeline.training_rows(full, seed, language, REFIT_SPLIT))
        if len(np.unique(data.y)) < 2:
            raise InputError(f"{args.treebank}: the train split has a single {task.name} label")
        start = time.perf_counter()
        search = fit_one(args, task, data, dev, device, seed)
        fit = {"seed": seed, "search": search, "n_train": len(data.y), "units": data.units}
        fit["majority"] = int(np.bincount(data.y).argmax())
        log(
            f"{language} {task.name} seed {seed}: {len(data.y)} items, {data.X.shape[2]} features,"
            f" {len(layers)} layers x {len(args.l2)} L2 values fitted in"
            f" {time.perf_counter() - start:.1f} s ({args.backend} on {device}); L2 per layer"
            f" (chosen on dev) {' '.join(f'{v:g}' for v in search.l2)}; dev accuracy per layer "
            + " ".join(f"{a:.3f}" for a in search.dev_accuracy.max(axis=0))
        )
        if seed == 0:
            fit["l2_stability"] = l2_stability(search, dev, dev_weights)
            log(
                f"{language} {task.name}: L2 choice stability per layer (share of "
                f"{len(dev_weights)} dev resamples choosing it again) "
                + " ".join(f"{v:.2f}" for v in fit["l2_stability"])
            )
        if seed == 0 and task.name in args.controls and task.has_control:
            control = registry.TaskData(
                data.X,
                control_labels(task, splits["train"], splits["train"], language, CONTROL_SEED),
                data.units,
                data.n_units,
            )
            fit["control"] = fit_control(args, control, search.l2, device)
            y_dev = control_labels(task, splits["dev"], splits["train"], language, CONTROL_SEED)
            log(
                f"{language} {task.name} control (the same L2 per layer): dev accuracy per layer "
                + " ".join(f"{a:.3f}" for a in fit["control"].score(dev.X, y_dev))
            )
        if seed == 0 and args.mdl and task.mdl:
            fit["mdl"] = online_code(args, task, data, device, search.l2)
            log(
                f"{language} {task.name} MDL: online codelength per layer (kbit) "
                + " ".join(f"{c / 1000:.1f}" for c in fit["mdl"].codelength)
                + f", uniform {fit['mdl'].uniform_codelength / 1000:.1f}"
            )
        fits.append(fit)
    save_probe_file(out, task, language, args, layers, fits, excluded)
    log(f"wrote {out}")


# ---------------------------------------------------------------- score-probe


def check_probe_file(path, probe_file, task, layers, split_dir) -> None:
    if str(probe_file["task"]) != task.name:
        raise InputError(f"{path}: a {probe_file['task']} probe, not {task.name}")
    if probe_file["layers"].tolist() != layers:
        raise InputError(
            f"{path}: probes of {len(probe_file['layers'])} layers, but {split_dir} caches "
            f"{len(layers)}"
        )
    if probe_file["mean"].shape[-1] != hidden_features(task, split_dir):
        raise InputError(
            f"{path}: probes of {probe_file['mean'].shape[-1]} features, but the {task.name} "
            f"features of {split_dir} have {hidden_features(task, split_dir)}"
        )


def warn_unseen(path, seed, data, probe, labels, test_lang, train_lang) -> None:
    unseen = ~np.isin(data.y, probe.classes_)
    if unseen.any():
        names = sorted({labels[j] for j in data.y[unseen]})
        log(
            f"{path} (seed {seed}): {unseen.sum()} of {len(data.y)} {test_lang} items have "
            f"labels the {train_lang} train split never had ({', '.join(names)}); they count as "
            "errors"
        )


def mdl_rows(common, probe_file, bootstrap):
    """MDL rows of an own-language pos probe, split train (the online code is on train):
    codelength (bits) and compression per layer. Their interval resamples the train sentences'
    per-item bits of the one online code (the prefix fits are not redone per resample)."""
    item_bits = probe_file["mdl_item_bits"].astype(np.float64)  # (layers, items)
    units = probe_file["mdl_units"]
    n_units = int(units.max()) + 1
    weights = bootstrap.weights(
        n_units, common["train_lang"], "train", f"{common['train_lang']} (train split, MDL)"
    )
    unit_bits = stats.unit_sums(item_bits.T, units, n_units)  # (units, layers)
    per_item = np.log2(int(probe_file["mdl_classes"]))
    unit_uniform = np.bincount(units, minlength=n_units) * per_item
    codelength = weights @ unit_bits
    compression = (weights @ unit_uniform)[:, None] / codelength
    rows = []
    base = {**common, "split": "train", "n": len(units)}
    for metric, point, samples in (
        ("mdl_codelength", probe_file["mdl_codelength"], codelength),
        ("mdl_compression", float(probe_file["mdl_uniform"]) / probe_file["mdl_codelength"],
         compression),
    ):  # fmt: skip
        low, high = bootstrap.interval(samples)
        for layer, value, lo, hi in zip(probe_file["layers"].tolist(), point, low, high,
                                        strict=True):  # fmt: skip
            rows.append({**base, "layer": layer, "metric": metric, "value": float(value),
                         "ci_low": lo, "ci_high": hi})  # fmt: skip
    return rows


def l2_rows(common, layers, probe_file, n: int) -> list[dict]:
    """The dev rows of the L2 choice of seed 0, per layer: ``l2`` (the value chosen),
    ``l2_stability`` (the share of dev resamples choosing it again, stored by train-probe) and
    ``l2_on_grid_edge`` (1.0 for the grid's smallest or largest value, of two or more, else 0.0),
    without an interval (the stability is itself a bootstrap summary); ``n`` is the dev items."""
    grid, chosen = probe_file["l2_grid"], probe_file["l2"][0]
    edge = (len(grid) > 1) & ((chosen == grid.min()) | (chosen == grid.max()))
    metrics = {"l2": chosen, "l2_stability": probe_file["l2_stability"], "l2_on_grid_edge": edge}
    return [
        {**common, "layer": layer, "metric": metric, "value": float(value), "ci_low": np.nan,
         "ci_high": np.nan, "n": n}
        for metric, values in metrics.items()
        for layer, value in zip(layers, values, strict=True)
    ]  # fmt: skip


def tokenizer_rows(args, bootstrap) -> list[dict]:
    """The tokenizer's coverage of the language, per split (train, dev, test), from its cache's
    index: ``unk_word_share`` (words holding the unknown token; ``n`` the words) and
    ``unk_subword_share`` (unknown subwords; ``n`` the subwords), task ``tokenizer``, at
    ``tables.BASELINE_LAYER`` (they read no layer), seed 0, each with its bootstrap interval over
    the split's sentences (the split's own resamples; none for a split too small for one). A
    cache written before the coverage was recorded gives no rows: unknown is not zero."""
    from mlm_dynamics.analysis.tables import BASELINE_LAYER

    language = args.language or language_of(args.treebank)
    rows = []
    for split in ("train", "dev", "test"):
        index = store.load_index(Path(args.activations) / split)
        if not index.has_coverage:
            log(f"{args.activations}/{split}: a cache index without the tokenizer's coverage: "
                "no tokenizer rows")  # fmt: skip
            continue
        n_sentences = len(index.word_counts)
        weights = None
        if n_sentences >= bootstrap.min_sentences:
            where = f"{args.treebank} ({split} split)"
            weights = bootstrap.weights(n_sentences, language, split, where)
        common = {
            "model": args.model, "step": args.step, "task": TOKENIZER_TASK, "split": split,
            "train_lang": language, "test_lang": language, "seed": 0, "layer": BASELINE_LAYER,
        }  # fmt: skip
        words, subwords = index.unk_shares()
        for metric, share, unknown, total in (
            ("unk_word_share", words, index.unk_word_counts, index.word_counts),
            ("unk_subword_share", subwords, index.unk_subword_counts, index.subword_counts),
        ):
            low = high = np.nan
            if weights is not None:
                low, high = bootstrap.interval(stats.resampled_ratios(weights, unknown, total))
            rows.append({**common, "metric": metric, "value": share, "ci_low": low,
                         "ci_high": high, "n": int(total.sum())})  # fmt: skip
        too_few = "" if weights is not None else " (too few sentences for an interval)"
        log(f"{language} {split}: the unknown token in {words:.1%} of words, {subwords:.1%} of "
            f"subwords{too_few}")  # fmt: skip
    return rows


def lacking(task, splits, treebank) -> dict[str, str | None]:
    """Per split (dev, test): why the language is scored on nothing of an optional task there
    (it lacks the task on train and dev, or its test split has too few items), else None."""
    own = registry.absent_reason(task, splits, treebank, ("train", "dev"))
    return {"dev": own, "test": own or registry.absent_reason(task, splits, treebank, ("test",))}


def check_absent(path, probe_file, task, test_lang, own_reason, treebank) -> None:
    """An absent probe file must be of an optional task, and the language's own probe file must
    agree with its treebank on whether the language has the task."""
    absent = "absent" in probe_file
    if absent and not task.optional:
        raise InputError(f"{path}: marked absent, but every language has the {task.name} task")
    if str(probe_file["language"]) == test_lang and absent != (own_reason is not None):
        has = "lacks" if absent else "has"
        raise InputError(
            f"{path}: the probe file says {test_lang} {has} {task.name}, {treebank} says "
            f"otherwise ({own_reason or 'it has it'}): probe file and treebank out of step"
        )


@dataclass(frozen=True)
class Scoring:
    """One ``score-probe`` job of one task on one language."""

    args: argparse.Namespace
    task: registry.ProbingTask
    test_lang: str
    splits: dict  # the language's treebank: train (for control labels), dev, test
    bootstrap: stats.Bootstrap
    item_scores: list  # every probe's stats.ItemScores, in the order scored


@dataclass
class EvaluationSet:
    """One split the probes are scored on: its sentences, cache and bootstrap resamples."""

    split: str
    sentences: list
    directory: Path
    layers: list[int]
    weights: np.ndarray
    data: dict = field(default_factory=dict)  # seed -> TaskData; pos and deprel share one

    def task_data(self, job: Scoring, seed: int) -> registry.TaskData:
        """The split's items of the task (only a seeded task's, arc's, depend on the seed)."""
        key = seed if job.task.seeded else 0
        if key not in self.data:
            self.data[key] = registry.build(
                job.task, self.sentences, self.directory, job.args.treebank, seed
            )
        return self.data[key]


def evaluation_set(job: Scoring, split: str) -> EvaluationSet:
    """The split's cache and resamples, refused in one line when it is too small."""
    directory = Path(job.args.activations) / split
    layers = store.cached_layers(directory)
    sentences = job.splits[split]
    where = f"{job.args.treebank} ({split} split)"
    weights = job.bootstrap.weights(len(sentences), job.test_lang, split, where)
    return EvaluationSet(split, sentences, directory, layers, weights)


def scored_on(job: Scoring, evaluation: EvaluationSet, path, probe_file) -> bool:
    """Whether a (present) probe is scored on the split, once checked against its cache: dev
    scores the training language's own probes only."""
    check_probe_file(path, probe_file, job.task, evaluation.layers, evaluation.directory)
    train_lang = str(probe_file["language"])
    if evaluation.split == "dev" and train_lang != job.test_lang:
        return False  # dev serves the training language's own choices only
    if train_lang != job.test_lang and not job.task.transferable:
        raise InputError(
            f"{path}: a {train_lang} {job.task.name} probe cannot be scored on {job.test_lang} "
            "(the task is not transferable: its labels are the language's own)"
        )
    return True


def control_rows(job: Scoring, evaluation: EvaluationSet, probe_file, data, correct, common):
    """``control_accuracy`` and ``selectivity`` (accuracy - control accuracy) per layer of an
    own-language probe that has a control probe; the control's item scores go to the job."""
    from mlm_dynamics.probing.control import control_labels

    task, layers = job.task, evaluation.layers
    train = job.splits["train"]
    y = control_labels(task, evaluation.sentences, train, job.test_lang, CONTROL_SEED)
    control = fitted_probe(probe_file, 0, "control_").predict(data.X) == y
    difference = correct.astype(np.float64) - control
    job.item_scores.append(
        pipeline.item_scores(common, layers, control, data, f"{task.name}:control")
    )
    return [
        row
        for metric, values in (("control_accuracy", control), ("selectivity", difference))
        for row in interval_rows(
            common, layers, values, data, evaluation.weights, job.bootstrap, metric
        )
    ]


def score_seed(job: Scoring, evaluation: EvaluationSet, path, probe_file, i: int, seed: int):
    """The rows of probe seed ``seed`` (the file's ``i``-th) on one split; its item scores go
    to the job."""
    task, split, test_lang = job.task, evaluation.split, job.test_lang
    train_lang = str(probe_file["language"])
    data = evaluation.task_data(job, seed)
    probe = fitted_probe(probe_file, i)
    warn_unseen(path, seed, data, probe, task.labels, test_lang, train_lang)
    correct = probe.predict(data.X) == data.y[None, :]
    majority = data.y == probe_file["majority"][i]
    common = {
        "model": job.args.model, "step": job.args.step, "task": task.name, "split": split,
        "train_lang": train_lang, "test_lang": test_lang, "seed": seed,
    }  # fmt: skip
    records = pipeline.probe_rows(
        common, evaluation.layers, correct, majority, data, evaluation.weights, job.bootstrap
    )
    job.item_scores.append(pipeline.item_scores(common, evaluation.layers, correct, data))
    log(
        f"{train_lang} -> {test_lang} {task.name} {split} seed {seed}: accuracy per layer "
        + " ".join(f"{a:.3f}" for a in correct.mean(axis=1))
        + f" (majority {majority.mean():.3f})"
    )
    own = train_lang == test_lang
    if i == 0 and "control_coef" in probe_file and own:
        records += control_rows(job, evaluation, probe_file, data, correct, common)
    if split == "test" and "mdl_codelength" in probe_file and own:
        records += mdl_rows(common, probe_file, job.bootstrap)
    if i == 0 and split == "dev" and "l2_stability" in probe_file and own:
        records += l2_rows(common, evaluation.layers, probe_file, len(data.y))
    return records


def score_split(job: Scoring, evaluation: EvaluationSet, probe_files: dict) -> list[dict]:
    """The rows of every probe seed scored on one split, probe file by probe file."""
    records = []
    for path, probe_file in probe_files.items():
        if "absent" in probe_file or not scored_on(job, evaluation, path, probe_file):
            continue
        for i, seed in enumerate(probe_file["seeds"].tolist()):
            records += score_seed(job, evaluation, path, probe_file, i, seed)
    return records


def score(args, name: str, probe_paths: list[str], bootstrap, item_scores: list) -> list[dict]:
    """Tidy rows of every probe of one task on the dev and test splits of one language."""
    task = registry.get(name)
    test_lang = args.language or language_of(args.treebank)
    splits = load_splits(args.treebank, ("train", "dev", "test"))
    job = Scoring(args, task, test_lang, splits, bootstrap, item_scores)
    probe_files = {path: load_probe_file(path) for path in probe_paths}
    lacks = lacking(task, splits, args.treebank)
    for path, probe_file in probe_files.items():
        check_absent(path, probe_file, task, test_lang, lacks["dev"], args.treebank)
        if "absent" in probe_file:
            log(f"{path}: {probe_file['language']} lacks {task.name} ({probe_file['absent']}): "
                "not scored")  # fmt: skip
    records = []
    for split in ("dev", "test"):
        evaluation = evaluation_set(job, split)
        if lacks[split] is not None:
            log(f"{test_lang} lacks {task.name} ({lacks[split]}): no {split} rows")
            continue
        records += score_split(job, evaluation, probe_files)
    return records


def probe_task(path: str) -> str:
    return str(load_probe_file(path)["task"])


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}")
    parser.add_argument("--activations", required=True, help="one language's cache directory")
    parser.add_argument("--treebank", required=True, type=Path, help="prepared .json.gz")
    parser.add_argument("--language", help="language code (default: from the treebank name)")
    if command == "train-probe":
        from mlm_dynamics.probing.control import CONTROLLED

        parser.description = "Fit one linear probe per task, layer and seed on a train split."
        parser.add_argument(
            "--tasks", nargs="+", required=True, choices=list(registry.TASKS), metavar="TASK",
            help=f"probing tasks (of {', '.join(registry.TASKS)})",
        )  # fmt: skip
        parser.add_argument("--out", nargs="+", required=True, help="one .npz per task")
        parser.add_argument(
            "--seeds", type=int, required=True,
            help="probes per layer: seed 0 on all train sentences, seeds 1.. on resamples",
        )  # fmt: skip
        parser.add_argument(
            "--l2", type=float, nargs="+", required=True,
            help="L2 grid (1 / (C n)); each layer's value is chosen on dev",
        )  # fmt: skip
        parser.add_argument("--max-iter", type=int, required=True, help="L-BFGS iterations")
        parser.add_argument("--backend", choices=["torch", "sklearn"], required=True)
        parser.add_argument("--threads", type=int, default=1, help="CPU threads of a fit")
        parser.add_argument(
            "--device",
            choices=["cpu", "cuda"],
            required=True,
            help="where the torch backend fits (cuda falls back to the CPU when none is visible)",
        )
        parser.add_argument(
            "--controls", nargs="*", default=[], choices=CONTROLLED,
            help="tasks that also get a control probe (Hewitt & Liang)",
        )  # fmt: skip
        parser.add_argument(
            "--mdl", action="store_true",
            help="online codelength of the tasks that have one "
            f"({', '.join(name for name, task in registry.TASKS.items() if task.mdl)})",
        )  # fmt: skip
        stats.add_arguments(parser)  # the dev resamples of the L2 choice's stability
        args = parser.parse_args(argv)
        if len(args.out) != len(args.tasks):
            raise InputError(f"--out: {len(args.out)} files for {len(args.tasks)} tasks")
        bootstrap = stats.from_arguments(args)
        from mlm_dynamics.probing.probe import fitting_threads

        with fitting_threads(args.threads, sklearn=args.backend == "sklearn"):
            device = fitting_device(args)
            for task, out in zip(args.tasks, args.out, strict=True):
                train(args, task, out, device, bootstrap)
    else:
        parser.description = "Score probes (any tasks) on the dev and test splits of a language."
        parser.add_argument("--probes", nargs="+", required=True, help="probe .npz files")
        parser.add_argument("--model", required=True)
        parser.add_argument("--step", required=True, type=int)
        parser.add_argument("--out", required=True, help="tidy .parquet")
        parser.add_argument("--items", required=True, help="per-item correctness, .npz")
        stats.add_arguments(parser)
        args = parser.parse_args(argv)
        bootstrap = stats.from_arguments(args)
        by_task: dict[str, list[str]] = {}
        for path in args.probes:
            by_task.setdefault(probe_task(path), []).append(path)
        from mlm_dynamics.analysis.tables import tidy_frame
        from mlm_dynamics.atomic import save_table

        item_scores: list = []
        records = [
            row
            for task in sorted(by_task)
            for row in score(args, task, by_task[task], bootstrap, item_scores)
        ]
        if TOKENIZER_ROWS_WITH in by_task:
            records += tokenizer_rows(args, bootstrap)
        pooling = store.cache_pooling(args.activations) or ""
        records = [{**row, "pooling": pooling} for row in records]
        stats.save_item_scores(args.items, item_scores, model=args.model, step=args.step)
        save_table(args.out, tidy_frame(records))
        log(f"wrote {len(records)} rows to {args.out} and {len(item_scores)} item sets")
