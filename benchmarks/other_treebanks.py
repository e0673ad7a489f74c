"""Run the embedded default on UD treebanks the bundle does not hold, and print their scores.

    python benchmarks/other_treebanks.py --ud ../shared/ud --languages es fi id vi bg

A treebank folder may hold dev and test only (as ../shared/ud does): train is then carved from
dev (treebanks.dev_fraction stays dev). The run happens in its own directory (``--workdir``), with
config.yaml's model, steps and settings and these languages only (in-language probes; the
embedded model was pretrained on the bundled six languages' text, so these are unseen languages
and their scores measure what a model's layers give to a language it never read). Printed: per
language, the prepared sentences, and POS, arc and deprel test accuracy at the last layer at the
first and last step, with 95% bootstrap intervals, beside the majority baseline.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def treebank_folders(ud: Path, languages: list[str]) -> dict[str, Path]:
    """The UD_<Name> folder of each language code (files named {code}_*-ud-*.conllu[.gz])."""
    folders = {}
    for lang in languages:
        found = sorted({path.parent for path in ud.glob(f"UD_*/{lang}_*-ud-*.conllu*")})
        if len(found) != 1:
            sys.exit(f"error: {ud}: {len(found)} treebank folders for language {lang!r}")
        folders[lang] = found[0].resolve()
    return folders


def run_config(folders: dict[str, Path]) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["languages"] = {lang: {"treebank": str(path)} for lang, path in folders.items()}
    config["transfer_languages"] = []
    config["pretrain"]["texts"] = [str(REPO / path) for path in config["pretrain"]["texts"]]
    return config


def cell(row) -> str:
    return f"{100 * row.value:.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"


def summary(results: Path) -> str:
    import gzip
    import json

    from mlm_dynamics.analysis import findings, tables, views

    table = tables.read_table(results / "tables/probing.parquet")
    steps = sorted(table["step"].unique())
    scores = views.view_scores(table, ["last"])
    baselines = findings.majority_baselines(table).set_index(["task", "train_lang"])
    lines = ["| | " + " | ".join(f"step {step}" for step in (steps[0], steps[-1]))
             + " | majority | train / dev / test sentences |", "|---|---|---|---|---|"]  # fmt: skip
    for lang in sorted(scores.train_lang.unique()):
        with gzip.open(results / f"treebanks/{lang}.json.gz", "rt") as f:
            splits = json.load(f)["splits"]
        sizes = " / ".join(str(len(splits[split])) for split in ("train", "dev", "test"))
        for task in ("pos", "arc", "deprel"):
            at = scores[(scores.task == task) & (scores.train_lang == lang)]
            if at.empty:
                continue
            by_step = at.set_index("step")
            majority = baselines["majority_accuracy"].get((task, lang), float("nan"))
            lines.append(
                f"| {lang} {task} | {cell(by_step.loc[steps[0]])} | "
                f"{cell(by_step.loc[steps[-1]])} | {100 * majority:.1f} | {sizes} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ud", type=Path, default=REPO.parent / "shared" / "ud")
    parser.add_argument("--languages", nargs="+", default=["es", "fi", "id", "vi", "bg"])
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "other-treebanks")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--summary-only", action="store_true", help="print, do not run")
    args = parser.parse_args()
    if not args.summary_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        config = args.workdir / "config.yaml"
        config.write_text(yaml.safe_dump(run_config(treebank_folders(args.ud, args.languages))))
        argv = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
        argv += ["--directory", str(args.workdir), "--configfile", str(config)]
        done = subprocess.run([*argv, "--cores", str(args.cores)])
        if done.returncode:
            sys.exit(done.returncode)
    print(summary(args.workdir / "results"))


if __name__ == "__main__":
    main()
