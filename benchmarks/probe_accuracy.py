"""How close the torch probe's accuracy is to scikit-learn's, by iteration budget.

    python benchmarks/probe_accuracy.py                       # every step, task, language cached
    python benchmarks/probe_accuracy.py --steps 1000 --languages en zh --tasks pos

For every step x task x language of a model's activation cache (the default run's:
results/activations/tiny-xlmr), fits the torch probe with each ``--iterations`` budget and
scikit-learn's ``LogisticRegression`` twice, at its defaults (lbfgs, max_iter 100) and run to its
own convergence test (max_iter 1000), all at the workflow's l2, and scores them on the same
language's test split. It prints, per row and in a summary per task and budget, the largest
accuracy difference over layers (points) of torch vs scikit-learn's default and vs its converged
fit, and how far scikit-learn's default fit is from its converged one. This is what
``probing.max_iter`` trades against time (benchmarks/probe_speed.py times the fits). The torch
probe is deterministic and a fit with budget k is the first k iterations of a longer one, so each
budget is a fit of its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from probe_speed import SKLEARN_CONVERGED_MAX_ITER, SKLEARN_MAX_ITER, workflow_defaults

TOLERANCE = 0.5  # points: the accuracy agreement issue 6 asks for


def study(task, activations, treebank, l2, budgets) -> dict:
    """Largest |accuracy difference| over layers (points) per budget, for one task x language."""
    from mlm_dynamics.probing import registry
    from mlm_dynamics.probing.probe import LinearProbe, SklearnProbe
    from mlm_dynamics.treebanks import load_prepared

    splits = load_prepared(treebank)
    train, test = (
        registry.build(task, splits[split], Path(activations) / split, treebank)
        for split in ("train", "test")
    )
    reference = {
        name: SklearnProbe(l2=l2, max_iter=max_iter).fit(train.X, train.y).score(test.X, test.y)
        for name, max_iter in (
            ("default", SKLEARN_MAX_ITER),
            ("converged", SKLEARN_CONVERGED_MAX_ITER),
        )
    }
    result = {"sklearn_gap": 100 * np.abs(reference["default"] - reference["converged"]).max()}
    for budget in budgets:
        accuracy = LinearProbe(l2=l2, max_iter=budget).fit(train.X, train.y).score(test.X, test.y)
        result[budget] = {
            name: 100 * np.abs(accuracy - value).max() for name, value in reference.items()
        }
    return result


def main() -> None:
    defaults = workflow_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("results/activations/tiny-xlmr"))
    parser.add_argument("--treebanks", type=Path, default=Path("results/treebanks"))
    parser.add_argument("--steps", nargs="+", help="default: every step in --cache")
    parser.add_argument("--languages", nargs="+", help="default: every language of a step")
    parser.add_argument("--tasks", nargs="+", default=["pos", "arc", "deprel"])
    parser.add_argument("--iterations", nargs="+", type=int, default=[10, 20, 30, 40, 50, 60])
    parser.add_argument("--l2", type=float, default=defaults["l2"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from mlm_dynamics.probing.probe import fitting_threads

    steps = args.steps or sorted((p.name for p in args.cache.iterdir() if p.is_dir()), key=int)
    print(
        f"{args.cache}: steps {' '.join(steps)}; l2 {args.l2}; torch budgets {args.iterations}; "
        f"scikit-learn max_iter {SKLEARN_MAX_ITER} (default) and {SKLEARN_CONVERGED_MAX_ITER}"
    )
    print("largest |accuracy difference| over layers, points: torch vs sklearn default / converged")
    rows = []
    with fitting_threads(args.threads):
        for step in steps:
            languages = args.languages or sorted(
                p.name for p in (args.cache / step).iterdir() if p.is_dir()
            )
            for task in args.tasks:
                for language in languages:
                    result = study(
                        task, args.cache / step / language,
                        args.treebanks / f"{language}.json.gz", args.l2, args.iterations,
                    )  # fmt: skip
                    rows.append((task, result))
                    cells = "  ".join(
                        f"{k}: {result[k]['default']:.2f}/{result[k]['converged']:.2f}"
                        for k in args.iterations
                    )
                    print(
                        f"{step:>6s} {task:6s} {language:3s}  {cells}  sklearn default vs "
                        f"converged {result['sklearn_gap']:.2f}",
                        flush=True,
                    )
    print(f"\nsummary: worst over {len(rows) // len(args.tasks)} step x language rows per task")
    print(f"task    budget  vs default (rows > {TOLERANCE})  vs converged (rows > {TOLERANCE})")
    for task in args.tasks:
        results = [result for name, result in rows if name == task]
        for k in args.iterations:
            default = np.array([r[k]["default"] for r in results])
            converged = np.array([r[k]["converged"] for r in results])
            print(
                f"{task:7s} {k:6d}  {default.max():10.2f} ({(default > TOLERANCE).sum():3d})"
                f"        {converged.max():12.2f} ({(converged > TOLERANCE).sum():3d})"
            )
        gap = np.array([r["sklearn_gap"] for r in results])
        print(
            f"{task:7s} sklearn default vs its converged fit: worst {gap.max():.2f} "
            f"({(gap > TOLERANCE).sum()} rows > {TOLERANCE})"
        )


if __name__ == "__main__":
    main()
