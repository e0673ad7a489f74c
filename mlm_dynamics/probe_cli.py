"""``train-probe`` and ``score-probe``: UD probes fitted on one language, scored on any.

``train-probe`` fits one probe per layer and seed on the train split of one language and saves
them all in one ``.npz``: weights, standardisation, label inventory, the train split's majority
label. ``score-probe`` scores any number of such files on the test split of one language and
writes tidy rows (see :mod:`mlm_dynamics.tables`): ``accuracy`` per layer and seed, and
``majority_accuracy`` (the probe's train majority label on this test split; layer -1). Fitting and
scoring are separate jobs, so adding a language to the transfer set re-scores existing probes
without refitting them. Scoring is a matrix product in numpy: it never imports torch. For ``arc``
the test negatives are drawn with each probe's own seed, so every train language of one seed is
scored on the same test pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mlm_dynamics import probing_tasks
from mlm_dynamics.errors import InputError

PROBE_FORMAT = 1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def language_of(treebank: str | Path) -> str:
    """``results/treebanks/en.json.gz`` -> ``en``."""
    return Path(treebank).name.split(".")[0]


def load_split(treebank: Path, split: str):
    from mlm_dynamics.treebank import load_prepared

    splits = load_prepared(treebank)
    if not splits.get(split):
        raise InputError(f"{treebank}: the {split} split has no sentences")
    return splits[split]


# ---------------------------------------------------------------- the probe file


def save_probe_file(path, task, language, backend, layers, seeds, probes, majority, n_train, args):
    from mlm_dynamics.atomic import save_npz

    classes = probes[0].classes_
    for probe in probes[1:]:
        if not np.array_equal(probe.classes_, classes):  # only arc's draw varies by seed
            raise InputError(f"{args.treebank}: seeds saw different label sets in train")
    save_npz(
        path,
        format=np.array(PROBE_FORMAT),
        task=np.array(task),
        language=np.array(language),
        backend=np.array(backend),
        labels=np.array(probing_tasks.LABELS[task]),
        layers=np.array(layers),
        seeds=np.array(seeds),
        classes=classes,
        coef=np.stack([p.coef_ for p in probes]),
        intercept=np.stack([p.intercept_ for p in probes]),
        mean=np.stack([p.mean_ for p in probes]),
        scale=np.stack([p.scale_ for p in probes]),
        majority=np.array(majority),
        n_train=np.array(n_train),
        l2=np.array(args.l2),
        max_iter=np.array(args.max_iter),
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


def hidden_features(task: str, split_dir: Path) -> int:
    from mlm_dynamics import store

    hidden = np.load(store.layer_file(split_dir, 0), mmap_mode="r").shape[1]
    return hidden if task == "pos" else 3 * hidden


def probe_device(requested: str) -> str:
    """The torch device of the fits: CUDA when asked for and visible, otherwise the CPU (as the
    GPU rules do on a machine without one), said in the log."""
    import torch

    if requested == "cuda" and torch.cuda.is_available():
        log(f"device: cuda ({torch.cuda.get_device_name(0)})")
        return "cuda"
    if requested == "cuda":
        log(f"device: CUDA is not available, fitting on CPU ({torch.get_num_threads()} threads)")
    return "cpu"


# ---------------------------------------------------------------- commands


def fitting_device(args) -> str:
    """The device of ``train-probe``'s fits, checked against its backend."""
    if args.backend == "torch":
        return probe_device(args.device)
    if args.device != "cpu":
        raise InputError(f"--device {args.device}: the {args.backend} backend runs on the CPU")
    return "cpu"


def train(args, task: str, out: str, device: str) -> None:
    from mlm_dynamics.probe import make_probe

    if args.seeds < 1:
        raise InputError("--seeds: must be >= 1")
    if args.l2 < 0:
        raise InputError("--l2: must be >= 0")
    language = args.language or language_of(args.treebank)
    sentences = load_split(args.treebank, "train")
    split_dir = Path(args.activations) / "train"
    layers = probing_tasks.cached_layers(split_dir)
    probes, majority, n_train = [], [], []
    data = None
    for seed in range(args.seeds):
        if data is None or task == "arc":  # only arc's negatives depend on the seed
            data = probing_tasks.build(task, sentences, split_dir, args.treebank, seed)
        if len(np.unique(data.y)) < 2:
            raise InputError(f"{args.treebank}: the train split has a single {task} label")
        start = time.perf_counter()
        probe = make_probe(args.backend, args.l2, args.max_iter, seed, device)
        probe.fit(data.X, data.y)
        train_accuracy = probe.score(data.X, data.y)
        log(
            f"{language} {task} seed {seed}: {len(data.y)} items, {data.X.shape[2]} features,"
            f" {len(layers)} layers fitted in {time.perf_counter() - start:.1f} s ({args.backend}"
            f" on {device}, iterations {np.asarray(probe.n_iter_).tolist()}); train accuracy"
            " per layer " + " ".join(f"{a:.3f}" for a in train_accuracy)
        )
        probes.append(probe)
        majority.append(int(np.bincount(data.y).argmax()))
        n_train.append(len(data.y))
    save_probe_file(
        out, task, language, args.backend, layers, list(range(args.seeds)),
        probes, majority, n_train, args,
    )  # fmt: skip
    log(f"wrote {out}")


def score(args, task: str, probe_paths: list[str]) -> list[dict]:
    """Tidy rows of every probe of one task on the test split of one language."""
    from mlm_dynamics.probe import FittedProbe

    test_lang = args.language or language_of(args.treebank)
    sentences = load_split(args.treebank, "test")
    split_dir = Path(args.activations) / "test"
    layers = probing_tasks.cached_layers(split_dir)
    labels = probing_tasks.LABELS[task]
    test_data = {}  # seed -> TaskData; pos and deprel share one
    records = []
    for path in probe_paths:
        probe_file = load_probe_file(path)
        if str(probe_file["task"]) != task:
            raise InputError(f"{path}: a {probe_file['task']} probe, not {task}")
        if probe_file["layers"].tolist() != layers:
            raise InputError(
                f"{path}: probes of {len(probe_file['layers'])} layers, but {split_dir} caches "
                f"{len(layers)}"
            )
        train_lang = str(probe_file["language"])
        if probe_file["mean"].shape[-1] != hidden_features(task, split_dir):
            raise InputError(
                f"{path}: probes of {probe_file['mean'].shape[-1]} features, but the {task} "
                f"features of {split_dir} have {hidden_features(task, split_dir)}"
            )
        for i, seed in enumerate(probe_file["seeds"].tolist()):
            key = seed if task == "arc" else 0
            if key not in test_data:
                test_data[key] = probing_tasks.build(
                    task, sentences, split_dir, args.treebank, seed
                )
            data = test_data[key]
            probe = FittedProbe(
                *(probe_file[k][i] for k in ("coef", "intercept", "mean", "scale")),
                probe_file["classes"],
            )
            unseen = ~np.isin(data.y, probe.classes_)
            if unseen.any():
                names = sorted({labels[j] for j in data.y[unseen]})
                log(
                    f"{path} (seed {seed}): {unseen.sum()} of {len(data.y)} {test_lang} test "
                    f"items have labels the {train_lang} train split never had "
                    f"({', '.join(names)}); they count as errors"
                )
            accuracy = probe.score(data.X, data.y)
            common = {
                "model": args.model, "step": args.step, "task": task,
                "train_lang": train_lang, "test_lang": test_lang, "seed": seed, "n": len(data.y),
            }  # fmt: skip
            for layer, value in zip(layers, accuracy, strict=True):
                records.append({**common, "layer": layer, "metric": "accuracy", "value": value})
            majority = float(np.mean(data.y == probe_file["majority"][i]))
            records.append(
                {**common, "layer": -1, "metric": "majority_accuracy", "value": majority}
            )
            log(
                f"{train_lang} -> {test_lang} {task} seed {seed}: accuracy per layer "
                + " ".join(f"{a:.3f}" for a in accuracy)
                + f" (majority {majority:.3f})"
            )
    return records


def probe_task(path: str) -> str:
    return str(load_probe_file(path)["task"])


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}")
    parser.add_argument("--activations", required=True, help="one language's cache directory")
    parser.add_argument("--treebank", required=True, type=Path, help="prepared .json.gz")
    parser.add_argument("--language", help="language code (default: from the treebank name)")
    if command == "train-probe":
        parser.description = "Fit one linear probe per task, layer and seed on a train split."
        parser.add_argument("--tasks", nargs="+", required=True, choices=probing_tasks.TASKS)
        parser.add_argument("--out", nargs="+", required=True, help="one .npz per task")
        parser.add_argument("--seeds", type=int, default=1, help="probes per layer (seeds 0..N-1)")
        parser.add_argument("--l2", type=float, default=1e-4, help="penalty, 1 / (C n)")
        parser.add_argument("--max-iter", type=int, default=50, help="L-BFGS iterations")
        parser.add_argument("--backend", choices=["torch", "sklearn"], default="torch")
        parser.add_argument("--threads", type=int, default=1, help="CPU threads of a fit")
        parser.add_argument(
            "--device",
            choices=["cpu", "cuda"],
            default="cpu",
            help="where the torch backend fits (cuda falls back to the CPU when none is visible)",
        )
        args = parser.parse_args(argv)
        if len(args.out) != len(args.tasks):
            raise InputError(f"--out: {len(args.out)} files for {len(args.tasks)} tasks")
        from mlm_dynamics.probe import fitting_threads

        with fitting_threads(args.threads, sklearn=args.backend == "sklearn"):
            device = fitting_device(args)
            for task, out in zip(args.tasks, args.out, strict=True):
                train(args, task, out, device)
    else:
        parser.description = "Score probes (any tasks) on the test split of one language."
        parser.add_argument("--probes", nargs="+", required=True, help="probe .npz files")
        parser.add_argument("--model", required=True)
        parser.add_argument("--step", required=True, type=int)
        parser.add_argument("--out", required=True, help="tidy .parquet")
        args = parser.parse_args(argv)
        by_task: dict[str, list[str]] = {}
        for path in args.probes:
            by_task.setdefault(probe_task(path), []).append(path)
        from mlm_dynamics.atomic import save_table
        from mlm_dynamics.tables import tidy_frame

        records = [row for task in sorted(by_task) for row in score(args, task, by_task[task])]
        save_table(args.out, tidy_frame(records))
        log(f"wrote {len(records)} rows to {args.out}")
