"""Probe fitting speed: all layers at once in torch vs scikit-learn layer by layer.

    python benchmarks/probe_speed.py --activations results/activations/tiny-xlmr/400/en \\
        --treebank results/treebanks/en.json.gz
    python benchmarks/probe_speed.py            # no cache yet: a random-init tiny XLM-R

Fits the pos probe of every cached layer of one language's train split with both backends in
this one process (same l2, same standardisation, 2 threads each), scores both on the test split
and prints the fitting times, their ratio and the accuracy difference per layer. Without
``--activations`` it prepares the bundled English treebank (600 train / 300 test sentences) and
extracts a randomly initialised 4-layer, hidden-128 XLM-R's activations into a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def random_model_cache(work: Path) -> tuple[Path, Path]:
    """Prepared English treebank + activations of a random-init tiny XLM-R, under ``work``."""
    from mlm_dynamics import extract, pretrain, treebank

    texts = sorted(str(p) for p in (REPO / "resources" / "text").glob("*.txt.gz"))
    treebank_file = work / "en.json.gz"
    treebank.main(
        "prepare-treebank",
        ["--treebank", str(REPO / "resources/ud/UD_English-EWT"), "--language", "en"]
        + ["--out", str(treebank_file), "--labels", str(work / "en.labels.json")],
    )
    pretrain.main(
        "train-tokenizer", ["--texts", *texts, "--vocab-size", "4000", "--out", str(work / "tok")]
    )
    pretrain.main(
        "pretrain",
        ["--texts", *texts, "--tokenizer", str(work / "tok"), "--step", "0", "--layers", "4"]
        + ["--hidden-size", "128", "--out", str(work / "model")],
    )
    activations = work / "activations"
    extract.main(
        "extract-activations",
        ["--checkpoint", str(work / "model"), "--treebank", str(treebank_file)]
        + ["--out", str(activations)],
    )
    return activations, treebank_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activations", type=Path, help="one language's cache directory")
    parser.add_argument("--treebank", type=Path, help="its prepared treebank .json.gz")
    parser.add_argument("--task", default="pos", choices=["pos", "arc", "deprel"])
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=100, help="scikit-learn's iterations")
    parser.add_argument("--torch-max-iter", type=int, help="torch's (default: --max-iter)")
    parser.add_argument("--repeats", type=int, default=1, help="fits per backend; best time kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, help="keep the random-model cache here")
    args = parser.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    from mlm_dynamics import probing_tasks
    from mlm_dynamics.probe import LinearProbe, SklearnProbe
    from mlm_dynamics.treebank import load_prepared

    torch.set_num_threads(args.threads)
    torch_max_iter = args.torch_max_iter or args.max_iter
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(args.threads):
        if args.activations is None:
            work = args.work_dir or Path(tmp)
            if (work / "activations").is_dir():
                args.activations, args.treebank = work / "activations", work / "en.json.gz"
            else:
                args.activations, args.treebank = random_model_cache(work)
        splits = load_prepared(args.treebank)
        train, test = (
            probing_tasks.build(args.task, splits[split], args.activations / split, args.treebank)
            for split in ("train", "test")
        )
        layers, n, d = train.X.shape
        print(
            f"{args.task}: {layers} layers, {n} train / {len(test.y)} test items, {d} features, "
            f"l2 {args.l2}, max_iter {args.max_iter} (torch {torch_max_iter}),"
            f" threads {args.threads}"
        )
        results = {}
        for name, probe in (
            ("torch", LinearProbe(l2=args.l2, max_iter=torch_max_iter)),
            ("sklearn", SklearnProbe(l2=args.l2, max_iter=args.max_iter)),
        ):
            seconds = np.inf
            for _ in range(args.repeats):
                start = time.perf_counter()
                probe.fit(train.X, train.y)
                seconds = min(seconds, time.perf_counter() - start)
            results[name] = (seconds, probe.score(test.X, test.y), probe.n_iter_)
            print(f"{name:8s} fit {seconds:7.2f} s  iterations per layer {probe.n_iter_.tolist()}")

    (torch_s, torch_acc, _), (sk_s, sk_acc, _) = results["torch"], results["sklearn"]
    print(f"speed-up (sklearn time / torch time): {sk_s / torch_s:.1f}x")
    print("layer  torch acc  sklearn acc  diff (points)")
    for layer in range(layers):
        diff = 100 * (torch_acc[layer] - sk_acc[layer])
        print(f"{layer:5d}  {torch_acc[layer]:9.4f}  {sk_acc[layer]:11.4f}  {diff:+8.2f}")
    print(f"largest |diff|: {100 * np.abs(torch_acc - sk_acc).max():.2f} points")


if __name__ == "__main__":
    main()
