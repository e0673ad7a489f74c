"""Rebuild the bundled data under resources/ from UD treebanks (run once by maintainers).

    python resources/build_bundle.py ../shared/ud

Every output is a deterministic function of the input files: sentences are shuffled with a fixed
seed and split so that the probe dev and test sentences and the held-out (BPC) sentences never
appear in the pretraining text (the dev split stands in for the test split when a layer or a
hyper-parameter is chosen, so it must be as unseen as the test split is).
"""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

# language code -> (UD folder, file prefix); CC BY-SA 4.0 treebanks only.
TREEBANKS = {
    "en": ("UD_English-EWT", "en_ewt"),
    "fr": ("UD_French-GSD", "fr_gsd"),
    "de": ("UD_German-GSD", "de_gsd"),
    "ru": ("UD_Russian-GSD", "ru_gsd"),
    "zh": ("UD_Chinese-GSD", "zh_gsd"),
    "ko": ("UD_Korean-GSD", "ko_gsd"),
    "es": ("UD_Spanish-GSD", "es_gsd"),  # beside fr: a related pair for configs/demo-findings.yaml
}
PROBE_DEV = 150  # sentences from the UD dev split (its first ones after the shuffle)
PROBE_TRAIN = 600  # further sentences from the UD dev split
PROBE_TEST = 300  # sentences from the UD test split
HELDOUT = 100  # further UD test sentences, raw text only, for bits per character
SEED = 13


def read_blocks(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [b.strip("\n") + "\n" for b in f.read().split("\n\n") if b.strip()]


def text_of(block: str) -> str:
    for line in block.splitlines():
        if line.startswith("# text ="):
            return line.split("=", 1)[1].strip()
    raise ValueError("sentence without '# text =' comment")


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes reproducible
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.encode("utf-8"))


def main(ud_root: Path, out: Path) -> None:
    for lang, (folder, prefix) in TREEBANKS.items():
        dev = read_blocks(ud_root / folder / f"{prefix}-ud-dev.conllu.gz")
        test = read_blocks(ud_root / folder / f"{prefix}-ud-test.conllu.gz")
        rng = random.Random(f"{SEED}-{lang}")
        rng.shuffle(dev)
        rng.shuffle(test)
        probe_dev = dev[:PROBE_DEV]
        probe_train = dev[PROBE_DEV : PROBE_DEV + PROBE_TRAIN]
        probe_test = test[:PROBE_TEST]
        heldout = test[PROBE_TEST : PROBE_TEST + HELDOUT]
        # Short sentences recur ("Thank you."): drop every pretraining sentence whose text equals
        # a probe-dev, probe-test or held-out sentence, so the model never trains on them.
        forbidden = {text_of(b) for b in probe_dev + probe_test + heldout}
        rest = dev[PROBE_DEV:] + test[PROBE_TEST + HELDOUT :]
        pretrain = [b for b in rest if text_of(b) not in forbidden]
        tb = out / "ud" / folder
        write_gz(tb / f"{prefix}-ud-train.conllu.gz", "\n".join(probe_train) + "\n")
        write_gz(tb / f"{prefix}-ud-dev.conllu.gz", "\n".join(probe_dev) + "\n")
        write_gz(tb / f"{prefix}-ud-test.conllu.gz", "\n".join(probe_test) + "\n")
        write_gz(out / "heldout" / f"{lang}.txt.gz", "".join(text_of(b) + "\n" for b in heldout))
        write_gz(out / "text" / f"{lang}.txt.gz", "".join(text_of(b) + "\n" for b in pretrain))
        leaked = forbidden & {text_of(b) for b in pretrain}
        print(
            f"{lang}: train {len(probe_train)} dev {len(probe_dev)} test {len(probe_test)} "
            f"heldout {len(heldout)} "
            f"pretrain {len(pretrain)} (identical strings shared with test/heldout: {len(leaked)})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
