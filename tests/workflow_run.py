"""The reduced copy of the embedded default that the end-to-end tests run, and how they run it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = ["en", "ru", "zh"]  # three scripts
STEPS = [0, 20, 40]


def reduced_config(languages=LANGUAGES, steps=STEPS) -> dict:
    """config.yaml with a smaller model, fewer languages, steps and sentences."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"] = {"tiny-xlmr": {"source": "embedded", "layers": 2, "steps": list(steps)}}
    config["languages"] = {
        lang: {key: str(REPO / path) for key, path in config["languages"][lang].items()}
        for lang in languages
    }
    config["transfer_languages"] = list(languages)
    config["pretrain"] = {
        "texts": [str(REPO / f"resources/text/{lang}.txt.gz") for lang in languages],
        "vocab_size": 3000,
        "hidden_size": 32,
        "attention_heads": 2,
        "intermediate_size": 64,
        "batch_size": 16,
        "max_length": 32,
        "warmup_steps": 5,
        "threads": 1,
    }
    config["treebanks"] = {"max_sentences": {"train": 80, "dev": 40, "test": 40}}
    config["bpc"] = {"max_sentences": 10}
    config["statistics"] = {"min_sentences": 10}  # BPC's 10 held-out sentences
    config["probing"] = {"max_iter": 50}
    return config


def snakemake(workdir: Path, *args: str, config: dict | None = None, **kwargs):
    configfile = workdir / "config.yaml"
    if config is not None:  # a variant, beside the run's own config
        configfile = workdir / "variant.yaml"
        configfile.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    argv += ["--directory", str(workdir), "--configfile", str(configfile), *args]
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def run_to_completion(workdir: Path, *extra: str):
    done = snakemake(workdir, "--cores", "2", *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def result_files(workdir: Path) -> dict[str, bytes]:
    root = workdir / "results"
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def scheduled_jobs(workdir: Path, config: dict, *extra: str) -> Counter:
    """Jobs per rule that a dry run would run."""
    done = snakemake(workdir, "-n", "--quiet", "rules", *extra, config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = Counter()
    table = False
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if table and match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
