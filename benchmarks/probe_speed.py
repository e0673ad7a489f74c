"""Probe fitting speed: all layers at once in torch vs scikit-learn layer by layer.

    python benchmarks/probe_speed.py --activations results/activations/tiny-xlmr/400/en \\
        --treebank results/treebanks/en.json.gz --threads 1 --repeats 3
    python benchmarks/probe_speed.py --all results/activations/tiny-xlmr/400 \\
        --languages en zh ko --threads 1       # every task x language: a summary table
    python benchmarks/probe_speed.py            # no cache yet: a random-init tiny XLM-R
    python benchmarks/probe_speed.py --device cuda --threads 16   # the torch probe on a GPU

Fits the probe of one task on every cached layer of one language's train split with both
backends in this one process, alternating them: the torch probe with the workflow's defaults
(``probing.l2`` and ``probing.max_iter`` read from workflow/schemas/config.schema.yaml) and
scikit-learn's ``LogisticRegression`` at the same C = 1 / (l2 n), twice: with its own defaults
(lbfgs, max_iter 100, tol 1e-4), and run to its own convergence test (max_iter 1000, the fit a
researcher gets once they act on the ConvergenceWarning the default raises on every multi-class
probe here). All are scored on the same language's test split. It prints the fitting times (best
of ``--repeats``), the ratios, per layer the accuracy differences and the difference of the
training objectives (mean cross-entropy + l2/2 ||W||^2, in float64; negative: torch got further),
and how far scikit-learn's default fit is from its converged one. Without ``--activations`` it
prepares the bundled English treebank (600 train / 300 test sentences) and extracts a randomly
initialised 4-layer, hidden-128 XLM-R's activations into a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SKLEARN_MAX_ITER = 100  # LogisticRegression's default
SKLEARN_CONVERGED_MAX_ITER = 1000  # enough for its own tol on every probe here (<= 450 used)


def workflow_defaults() -> dict:
    """The probing section's defaults in the workflow's config schema; ``l2`` is one value, the
    middle of the workflow's grid (the workflow picks one per layer on dev; a timing needs one)."""
    from mlm_dynamics.config_check import schema_default

    grid = schema_default("probing.l2")
    grid = grid if isinstance(grid, list) else [grid]
    return {"l2": sorted(grid)[len(grid) // 2], "max_iter": schema_default("probing.max_iter")}


def schema_options(section: str, *skip: str) -> list[str]:
    """A config section's schema defaults as a command's options (``--key value``)."""
    from mlm_dynamics.config_check import schema_default

    options = []
    for key, value in schema_default(section).items():
        if key not in skip:
            options += [f"--{key.replace('_', '-')}", str(value)]
    return options


def random_model_cache(work: Path) -> tuple[Path, Path]:
    """Prepared English treebank + activations of a random-init tiny XLM-R, under ``work``."""
    from mlm_dynamics import pretrain, treebanks
    from mlm_dynamics.activations import extract
    from mlm_dynamics.config_check import schema_default

    texts = sorted(str(p) for p in (REPO / "resources" / "text").glob("*.txt.gz"))
    treebank_file = work / "en.json.gz"
    caps = schema_default("treebanks.max_sentences")
    treebanks.main(
        "prepare-treebank",
        ["--treebank", str(REPO / "resources/ud/UD_English-EWT"), "--language", "en"]
        + [x for split, cap in caps.items() for x in (f"--max-{split}", str(cap))]
        + schema_options("treebanks", "max_sentences")
        + ["--min-sentences", str(schema_default("statistics.min_sentences"))]
        + ["--out", str(treebank_file), "--labels", str(work / "en.labels.json")],
    )
    pretrain.main(
        "train-tokenizer", ["--texts", *texts, "--vocab-size", "4000", "--out", str(work / "tok")]
    )
    pretrain.main(
        "pretrain",
        ["--texts", *texts, "--tokenizer", str(work / "tok"), "--step", "0", "--layers", "4"]
        + schema_options("pretrain", "texts", "vocab_size")
        + ["--hidden-size", "128", "--out", str(work / "model")],
    )
    activations = work / "activations"
    extract.main(
        "extract-activations",
        ["--checkpoint", str(work / "model"), "--treebank", str(treebank_file)]
        + schema_options("activations")
        + ["--out", str(activations)],
    )
    return activations, treebank_file


def training_objective(probe, X: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Mean cross-entropy + l2/2 ||W||^2 per layer, in float64, from the fitted attributes."""
    from scipy.special import logsumexp

    target = np.searchsorted(probe.classes_, y)
    values = []
    for layer in range(X.shape[0]):
        Z = (X[layer].astype(np.float64) - probe.mean_[layer]) / probe.scale_[layer]
        W = probe.coef_[layer].astype(np.float64)
        logits = Z @ W + probe.intercept_[layer]
        if logits.shape[1] == 1:
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        cross_entropy = logsumexp(logits, axis=1) - logits[np.arange(len(y)), target]
        values.append(cross_entropy.mean() + 0.5 * l2 * (W * W).sum())
    return np.array(values)


def compare(task, activations, treebank, l2, max_iter, repeats, device="cpu", verbose=True):
    """Fit the torch probe and both scikit-learn fits on one task x language (alternating; the
    best time of ``repeats``)."""
    from mlm_dynamics.probing import registry
    from mlm_dynamics.probing.probe import LinearProbe, SklearnProbe
    from mlm_dynamics.treebanks import load_prepared

    splits = load_prepared(treebank)
    train, test = (
        registry.build(task, splits[split], Path(activations) / split, treebank)
        for split in ("train", "test")
    )
    layers, n, d = train.X.shape
    if verbose:
        print(
            f"{task} {activations}: {layers} layers, {n} train / {len(test.y)} test items, "
            f"{d} features, {len(np.unique(train.y))} classes, l2 {l2}; torch max_iter "
            f"{max_iter}, sklearn max_iter {SKLEARN_MAX_ITER} and {SKLEARN_CONVERGED_MAX_ITER}"
        )
    probes = {
        "torch": LinearProbe(l2=l2, max_iter=max_iter, device=device),
        "sklearn": SklearnProbe(l2=l2, max_iter=SKLEARN_MAX_ITER),
        "sklearn-converged": SklearnProbe(l2=l2, max_iter=SKLEARN_CONVERGED_MAX_ITER),
    }
    for probe in probes.values():  # imports and first-call costs stay out of the timings
        probe.fit(train.X[:, :200], train.y[:200])
    seconds = {name: np.inf for name in probes}
    for _ in range(repeats):
        for name, probe in probes.items():
            start = time.perf_counter()
            probe.fit(train.X, train.y)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    accuracy = {name: probe.score(test.X, test.y) for name, probe in probes.items()}
    objective = {name: training_objective(p, train.X, train.y, l2) for name, p in probes.items()}
    diff = {
        name: 100 * (accuracy["torch"] - accuracy[name])
        for name in ("sklearn", "sklearn-converged")
    }
    sklearn_gap = 100 * (accuracy["sklearn"] - accuracy["sklearn-converged"])
    result = {
        "seconds": seconds,
        "ratio": {name: seconds[name] / seconds["torch"] for name in diff},
        "max_abs_diff": {name: float(np.abs(value).max()) for name, value in diff.items()},
        "sklearn_gap": float(np.abs(sklearn_gap).max()),
        "max_objective_diff": float((objective["torch"] - objective["sklearn"]).max()),
    }
    if verbose:
        for name, probe in probes.items():
            print(f"{name:17s} fit {seconds[name]:7.2f} s  iterations per layer {probe.n_iter_}")
        for name, ratio in result["ratio"].items():
            print(f"speed-up ({name} time / torch time): {ratio:.1f}x")
        print(
            "layer  torch acc  sklearn acc  converged acc  diff (points)  diff converged"
            "  sklearn - converged  objective torch - sklearn"
        )
        objective_diff = objective["torch"] - objective["sklearn"]
        for layer in range(layers):
            print(
                f"{layer:5d}  {accuracy['torch'][layer]:9.4f}  {accuracy['sklearn'][layer]:11.4f}"
                f"  {accuracy['sklearn-converged'][layer]:13.4f}  {diff['sklearn'][layer]:+13.2f}"
                f"  {diff['sklearn-converged'][layer]:+14.2f}  {sklearn_gap[layer]:+19.2f}"
                f"  {objective_diff[layer]:+.5f}"
            )
        print(
            f"largest |diff|: {result['max_abs_diff']['sklearn']:.2f} points (default), "
            f"{result['max_abs_diff']['sklearn-converged']:.2f} (converged); scikit-learn's "
            f"default vs its converged fit: {result['sklearn_gap']:.2f}"
        )
    return result


def main() -> None:
    defaults = workflow_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activations", type=Path, help="one language's cache directory")
    parser.add_argument("--treebank", type=Path, help="its prepared treebank .json.gz")
    parser.add_argument("--task", default="pos", choices=["pos", "arc", "deprel"])
    parser.add_argument(
        "--all",
        type=Path,
        metavar="STEP_DIR",
        help="a step's cache directory (.../{model}/{step}): every task x language in it",
    )
    parser.add_argument("--languages", nargs="+", help="with --all: these languages only")
    parser.add_argument("--treebanks", type=Path, default=Path("results/treebanks"))
    parser.add_argument("--l2", type=float, default=defaults["l2"])
    parser.add_argument(
        "--max-iter", type=int, default=defaults["max_iter"], help="the torch probe's iterations"
    )
    parser.add_argument("--repeats", type=int, default=1, help="fits per backend; best time kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", default="cpu", help="the torch probe's device (cuda: time includes the copy)"
    )
    parser.add_argument("--work-dir", type=Path, help="keep the random-model cache here")
    args = parser.parse_args()

    from mlm_dynamics.probing.probe import fitting_threads

    print(f"threads {args.threads}, repeats {args.repeats}, torch probe on {args.device}")
    with tempfile.TemporaryDirectory() as tmp, fitting_threads(args.threads):
        if args.all is not None:
            languages = args.languages or sorted(p.name for p in args.all.iterdir() if p.is_dir())
            rows = []
            for task in ("pos", "arc", "deprel"):
                for language in languages:
                    treebank = args.treebanks / f"{language}.json.gz"
                    result = compare(
                        task, args.all / language, treebank, args.l2, args.max_iter,
                        args.repeats, args.device, verbose=False,
                    )  # fmt: skip
                    rows.append((task, language, result))
                    seconds, ratio = result["seconds"], result["ratio"]
                    diff = result["max_abs_diff"]
                    print(
                        f"{task:7s} {language:3s}  torch {seconds['torch']:6.2f} s  sklearn "
                        f"{seconds['sklearn']:6.2f} s  converged "
                        f"{seconds['sklearn-converged']:6.2f} s  ratio {ratio['sklearn']:5.1f}x / "
                        f"{ratio['sklearn-converged']:5.1f}x  "
                        f"max |acc diff| {diff['sklearn']:.2f} / {diff['sklearn-converged']:.2f} "
                        f"points  sklearn vs converged {result['sklearn_gap']:.2f}  objective "
                        f"torch - sklearn {result['max_objective_diff']:+.5f}",
                        flush=True,
                    )
            print(f"\nsummary ({args.all}, torch max_iter {args.max_iter}, l2 {args.l2})")
            print(
                "                 vs sklearn default       vs sklearn converged   sklearn default"
            )
            print("task     lang    ratio  max |acc diff|    ratio  max |acc diff|   vs converged")
            for task, language, result in rows:
                ratio, diff = result["ratio"], result["max_abs_diff"]
                print(
                    f"{task:7s}  {language:4s} {ratio['sklearn']:6.1f}x  {diff['sklearn']:14.2f}"
                    f"  {ratio['sklearn-converged']:6.1f}x  {diff['sklearn-converged']:14.2f}"
                    f"  {result['sklearn_gap']:13.2f}"
                )
            return
        if args.activations is None:
            work = args.work_dir or Path(tmp)
            if (work / "activations").is_dir():
                args.activations, args.treebank = work / "activations", work / "en.json.gz"
            else:
                args.activations, args.treebank = random_model_cache(work)
        compare(
            args.task, args.activations, args.treebank, args.l2, args.max_iter, args.repeats,
            args.device,
        )  # fmt: skip


if __name__ == "__main__":
    main()
