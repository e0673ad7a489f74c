"""Batched activation extraction against the one-sentence-at-a-time loop, same process, same data.

    python benchmarks/extraction_speed.py [--checkpoint DIR] [--treebank PREPARED.json.gz]

Without --checkpoint it uses the newest results/checkpoints/*/<step>, or else a randomly
initialised model shaped like the default config (4 layers, hidden 128, 8000-piece vocabulary,
64-token sequences). Without --treebank it prepares the bundled English train split (600
sentences). Prints both timings and their ratio; the target is >= 5x on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlm_dynamics.activations.extract import Encoder  # noqa: E402
from mlm_dynamics.config_check import load_yaml, schema_default  # noqa: E402
from mlm_dynamics.treebanks import load_prepared, prepare  # noqa: E402


def default_checkpoint(directory: Path) -> Path:
    """A newest embedded checkpoint if one exists, else a random one shaped like the default."""
    found = sorted(
        (p for p in (REPO / "results" / "checkpoints").glob("*/*") if p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    found = [p for p in found if (p / "config.json").is_file()]
    if found:
        return found[-1]
    from mlm_dynamics.pretrain import initial_model, settings_from, train_tokenizer
    from mlm_dynamics.textio import read_lines

    texts = [
        line
        for path in sorted((REPO / "resources/text").glob("*.txt.gz"))
        for line in read_lines(path)
    ]
    tokenizer = train_tokenizer(texts, vocab_size=schema_default("pretrain.vocab_size"))
    # the embedded default's architecture, randomly initialised (the schema's seed)
    layers = load_yaml(REPO / "config.yaml")["models"]["tiny-xlmr"]["layers"]
    settings = settings_from({**schema_default("pretrain"), "layers": layers})
    initial_model(tokenizer, settings).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def sentence_by_sentence(encoder: Encoder, sentences: list[list[str]]) -> np.ndarray:
    """The usual probing loop: tokenise one sentence, forward it, pool word by word, append."""
    vectors = []
    with torch.inference_mode():
        for words in sentences:
            plan = encoder.plan([words])  # one sentence's tokens, cut to the model's positions
            for window in plan.windows:
                ids = encoder.prefix + window.token_ids.tolist() + encoder.suffix
                states = encoder.model(
                    input_ids=torch.tensor([ids]), output_hidden_states=True
                ).hidden_states
                for row in np.unique(window.word_rows):
                    positions = len(encoder.prefix) + np.flatnonzero(window.word_rows == row)
                    vectors.append(
                        torch.stack([s[0, positions].mean(dim=0) for s in states]).numpy()
                    )
    return np.stack(vectors, axis=1)  # (hidden states, words, hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="Hugging Face-format directory")
    parser.add_argument("--treebank", help="prepared treebank .json.gz (its train split is used)")
    parser.add_argument(
        "--batch-tokens", type=int, default=schema_default("activations.batch_tokens")
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the fastest of each counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(Path(tmp))
        if args.treebank:
            sentences = load_prepared(args.treebank)["train"]
        else:
            treebank = REPO / "resources/ud/UD_English-EWT"
            sentences = prepare(treebank, {"train": 600, "dev": 1, "test": 1}, seed=13)["train"]
        words = [list(s.words) for s in sentences]
        encoder = Encoder.from_checkpoint(checkpoint)
        print(f"checkpoint: {checkpoint}")
        print(
            f"data: {len(words)} sentences, {sum(map(len, words))} words; "
            f"{args.threads} threads; batch tokens {args.batch_tokens}"
        )

        # warm-up of both paths (first-call allocations, lazy initialisation)
        encoder.extract(words[:20], pooling="mean", batch_tokens=args.batch_tokens)
        sentence_by_sentence(encoder, words[:20])

        runs = {
            "batched": lambda: encoder.extract(
                words, pooling="mean", batch_tokens=args.batch_tokens
            ),
            "looped": lambda: sentence_by_sentence(encoder, words),
            "single": lambda: [
                encoder.extract([w], pooling="mean", batch_tokens=args.batch_tokens) for w in words
            ],
        }
        # Rounds interleave the three paths, and each keeps its fastest round: on a shared
        # machine, load from other processes only ever adds time.
        times = {name: [] for name in runs}
        results = {}
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                results[name] = run()
                times[name].append(time.perf_counter() - start)
        batched_s, looped_s, single_s = (min(times[name]) for name in runs)
        (batched, plan), looped = results["batched"], results["looped"]

    difference = float(np.abs(batched - looped).max())
    print(
        f"windows: {len(plan.windows)} ({plan.windowed_sentences} sentences needed more than one)"
    )
    print(f"batched extractor:        {batched_s:8.3f} s")
    print(f"one sentence at a time:   {looped_s:8.3f} s  (speed-up {looped_s / batched_s:.1f}x)")
    print(f"  same, vectorised pooling: {single_s:6.3f} s  (speed-up {single_s / batched_s:.1f}x)")
    print(f"max |batched - looped|:   {difference:.2e}")
    spread = {name: " ".join(f"{t:.2f}" for t in ts) for name, ts in times.items()}
    print(f"all rounds (s): {spread}")


if __name__ == "__main__":
    main()
