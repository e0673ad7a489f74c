"""The paper preset's cost: per-job and per-fit costs measured at paper dimensions, then projected.

    python benchmarks/paper_scale.py                 # ~9-10 minutes on 2 CPU cores
    python benchmarks/paper_scale.py --quick         # smoke run, same code paths (~1.5 minutes)
    python benchmarks/paper_scale.py --sentences 400 --keep /tmp/ps   # larger sample, kept
    python benchmarks/paper_scale.py --gpu-tflops 989 --gpu-utilisation 0.3

MEASURED in this one run (every job in its own child process: wall seconds, and peak RSS from
``os.wait4``'s rusage of that child):

1. A randomly initialised XLM-R-base-sized ``XLMRobertaForMaskedLM`` (12 layers, hidden 768,
   12 heads, feed-forward 3072, 514 positions, vocabulary 250002), saved as safetensors with a
   SentencePiece tokenizer trained on resources/text (no network: not XLM-R's own tokenizer, but
   ~1.5 subwords per English word) padded with filler pieces to exactly 250002 entries.
2. UD_English-EWT (``--treebank``) from ../shared/ud, prepared by ``prepare-treebank`` with the
   preset's arguments (``Plan.prepare_treebank_arguments``) but caps ``--sentences`` train (200)
   and 2 x statistics.min_sentences dev and test (train is carved from dev: ../shared/ud has dev
   and test only). ``extract-activations`` with ``Plan.extract_arguments`` on it: seconds per
   1,000 words, peak RSS, cache bytes per word.
3. Probe fitting PER FIT, per task: ``train-probe --tasks T --seeds 1 --l2 <middle of the preset's
   grid> --max-iter <preset>`` (torch backend, all 13 layers in one batched L-BFGS, 1 thread, no
   control, no MDL), i.e. exactly one ``LinearProbe.fit`` on the real cached vectors of the sample's
   train split (no tiling): the fit's seconds (the job's own log line), the child's wall and peak
   RSS; a child that only imports the package gives the fixed RSS. Steps 2 and 3 run again on a
   second sample of twice the train sentences (same dev and test): how fit time and peak memory
   grow per item.
4. ``score-probe`` of those probe files, as an other-language job (3 files) and as a
   transfer-set job (54 files: the own ones plus copies relabelled as the 17 other transfer
   languages), which separates a per-file cost from a fixed one.
5. The peers' approach, same data, same process: (a) a plain transformers loop, one sentence per
   forward pass with ``output_hidden_states``, mean-pooled by ``word_ids``, vs the package's
   batched ``Encoder.extract`` on ``--compare-sentences`` (30) train sentences; (b)
   ``benchmarks/probe_speed.compare`` for pos: scikit-learn ``LogisticRegression`` (lbfgs, 13
   fits, one per layer, C = 1 / (l2 n)) at its default max_iter 100 and run to convergence, vs the
   package's one all-layer torch fit.

``--quick`` runs every step above on a small model (2 layers, hidden 128, the same vocabulary) and
40/30/30 sentences: a check that the code runs, not the paper's numbers.

PROJECTED (formulas; every one is an upper bound where a choice was needed):

* Fits per train-probe job (read off ``probing/cli.py``), per task: ``seeds`` grid fits of
  ``len(l2)`` x 13 problems (counted as ``len(l2)`` single fits), + 1 control fit when the task
  is in ``probing.controls`` and has a control (pos, deprel), + for ``mdl`` tasks (pos) one fit per
  MDL block after the first (``mdl.block_ends``: 10 prefix fits).
* A fit on m items costs what the line through the two measured fits gives at m (never less than
  the larger measured fit, never a falling line). Items at full size = items per train word
  (measured per task) x train words; a job's non-fit time (start, loading, feature building) is
  extrapolated the same way in train + dev items.
* Peak MB of train-probe = the line through the two measured peaks at the job's train + dev items
  (dev pairs counted as train pairs), + one more copy of the train features (layers x items x
  features x 4 bytes: a resample's ``subset``) when ``seeds`` > 1, max over tasks.
* score-probe seconds = (fixed + per_file x files x seeds) x (dev + test words ratio); MB = base
  + (peak - base) x that ratio, base the RSS of a child importing numpy and the package (no torch).
* Extraction on CPU: per-word seconds from the in-process batched run, fixed = child wall -
  per-word x words; MB = measured peak + the full cache (its memory-mapped pages, if all resident).
  GPU seconds = 2 x parameters (embeddings included, ``Requests.million_parameters``) x tokens /
  (``--gpu-tflops`` 989 x ``--gpu-utilisation`` 0.3) + the measured fixed seconds; tokens = words
  x measured subwords per word + 2 per sentence.
* Words per language: the caps (4000/1000/1000 sentences) x words per sentence of the treebank's
  dev + test in ../shared/ud where it is there, else ``scheduler.WORDS_PER_SENTENCE``; every split
  assumed full to its cap. Totals: x 39 checkpoints, summed over 44 languages. SLURM submissions
  = 2 x checkpoints + 1 (what ``python benchmarks/slurm_submissions.py`` counts: 79).
* Request check: ``scheduler.Requests`` of the schema-validated preset, attempt 1, against the
  projected peak MB and minutes of one full-size job of each kind (the measured language and the
  largest of ../shared/ud); the probe jobs' requests for that language's words per split
  (``Requests.probe_memory_mb``, ``Requests.probe_minutes``: what is asked once the cache exists),
  extraction's from the caps, its minutes against the GPU projection (the rule asks for a GPU).
  Exits 1 when any request is lower.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRESET = REPO / "configs" / "xlmr-replica.yaml"
SHARED_UD = REPO.parent / "shared" / "ud"
MODEL_SHAPE = dict(
    vocab_size=250002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
)
# --quick: the same code paths on a small model (its numbers are not the paper's)
QUICK_SHAPE = {**MODEL_SHAPE, "hidden_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 2, "intermediate_size": 512}  # fmt: skip
FILLER = "\ue000"  # a private-use character: the padding pieces never match any text
PROBE_THREADS = 1  # train_probe has no threads: directive, so the rule passes --threads 1


# ---------------------------------------------------------------- the preset and its plan


def preset_plan(path: Path):
    """The preset, validated as common.smk does, its Plan and its scheduler Requests."""
    from mlm_dynamics import config_check
    from mlm_dynamics.plan import Plan
    from mlm_dynamics.scheduler import Requests

    config = config_check.validated(yaml.safe_load(path.read_text()))
    plan = Plan(config)
    return config, plan, Requests(config, plan.steps_by_model)


# ---------------------------------------------------------------- the full-size checkpoint


def build_checkpoint(directory: Path, pieces: int, seed: int, shape: dict) -> dict:
    """A random-init XLM-R-base-sized masked LM and a tokenizer padded to its vocabulary."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizerFast

    from mlm_dynamics.pretrain import train_tokenizer
    from mlm_dynamics.textio import read_lines

    start = time.perf_counter()
    texts = [
        line for p in sorted((REPO / "resources/text").glob("*.txt.gz")) for line in read_lines(p)
    ]
    tokenizer = train_tokenizer(texts, vocab_size=pieces)
    tokenizer.save_pretrained(directory)
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    real = len(tokenizer)
    vocab += [[f"{FILLER}{i}", -1000.0] for i in range(shape["vocab_size"] - real)]
    (directory / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), "utf-8")
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(directory)
    if len(tokenizer) != shape["vocab_size"]:
        sys.exit(f"error: padded tokenizer has {len(tokenizer)} tokens")
    tokenizer_seconds = time.perf_counter() - start
    config = XLMRobertaConfig(
        **shape,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
    )
    torch.manual_seed(seed)
    model = XLMRobertaForMaskedLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory, safe_serialization=True)
    del model
    weights = sum(f.stat().st_size for f in directory.glob("*.safetensors"))
    return {
        "real_pieces": real,
        "parameters": parameters,
        "weights_bytes": weights,
        "tokenizer_seconds": tokenizer_seconds,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------- jobs in their own processes


# A child forked (or vforked, as subprocess does) from this big process inherits its RSS into
# ``ru_maxrss``; so every job is started by this small runner, whose own child's rusage is clean.
RUNNER = (
    "import json, os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    json.dump({'rc': os.waitstatus_to_exitcode(status), 'maxrss_kb': usage.ru_maxrss}, f)\n"
)


def start_child(command: list[str], log: Path):
    """``command`` started through RUNNER (its rusage lands next to ``log``)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    usage = log.with_name(log.name + ".rusage.json")
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(usage), *command], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return child, start, command, log, usage


def start_job(argv: list[str], log: Path):
    """``python -m mlm_dynamics --log LOG ARGV`` started in a child process."""
    return start_child([sys.executable, "-m", "mlm_dynamics", "--log", str(log), *argv], log)


def run_job(argv: list[str], log: Path) -> dict:
    """A job run to its end: wall seconds, peak RSS."""
    return finish_job(start_job(argv, log))


def run_python(code: str, log: Path) -> dict:
    """``python -c CODE`` in a child: wall seconds and peak RSS."""
    return finish_job(start_child([sys.executable, "-c", code], log))


def finish_job(started) -> dict:
    """Wait for a started job: wall seconds and peak RSS (``os.wait4``: that child's own)."""
    child, start, command, log, usage = started
    child.wait()
    seconds = time.perf_counter() - start
    rusage = json.loads(usage.read_text()) if usage.exists() else {"rc": -1, "maxrss_kb": 0}
    if child.returncode or rusage["rc"]:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        sys.exit(
            f"error: {shlex.join(command[:4])} failed ({rusage['rc']}) after {seconds:.0f} s, "
            f"peak {rusage['maxrss_kb'] / 1024:,.0f} MB; the end of {log}:\n{tail}"
        )
    return {"seconds": seconds, "peak_mb": rusage["maxrss_kb"] / 1024}  # KiB on Linux


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def relabelled_probes(own: list[Path], languages: list[str], directory: Path) -> list[Path]:
    """The own-language probe files plus copies marked as trained on each other language."""
    paths = list(own)
    for lang in languages:
        for path in own:
            with np.load(path) as z:
                arrays = {key: z[key] for key in z.files}
            arrays["language"] = np.array(lang)
            copy_path = directory / lang / path.name
            copy_path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(copy_path, **arrays)
            paths.append(copy_path)
    return paths


def measure_size(name, caps, args, plan, request, job, checkpoint, work) -> dict:
    """prepare-treebank and extract-activations at one sample size."""
    from mlm_dynamics.treebanks import load_prepared

    out = work / name
    out.mkdir()
    caps_args = ["--max-train", str(caps[0]), "--max-dev", str(caps[1]), "--max-test", str(caps[2])]
    prepare = shlex.split(plan.prepare_treebank_arguments())
    for flag in ("--max-train", "--max-dev", "--max-test"):
        i = prepare.index(flag)
        del prepare[i : i + 2]
    treebank = out / "treebanks" / f"{job.lang}.json.gz"
    treebank.parent.mkdir()
    run_job(
        ["prepare-treebank", "--treebank", str(args.treebank), "--language", job.lang]
        + caps_args + prepare
        + ["--out", str(treebank), "--labels", str(out / "treebanks" / f"{job.lang}.labels.json")],
        out / "prepare.log",
    )  # fmt: skip
    splits = load_prepared(treebank)
    counts = {split: sum(len(s.words) for s in splits[split]) for split in splits}
    result = {
        "name": name, "caps": caps, "words": sum(counts.values()),
        "train_words": counts["train"], "eval_words": counts["dev"] + counts["test"],
    }  # fmt: skip
    cache = out / "activations"
    result["extract"] = run_job(
        ["extract-activations", "--checkpoint", str(checkpoint), "--treebank", str(treebank)]
        + shlex.split(plan.extract_arguments(job))
        + ["--threads", str(request.gpu_threads), "--out", str(cache)],
        out / "extract.log",
    )
    result["extract"]["cache_bytes"] = disk_bytes(cache)
    result["treebank"], result["cache"], result["out"] = treebank, cache, out
    return result


def measure_scoring(result, plan, job):
    """score-probe of one language's own probes, and of a transfer-set language's 54."""
    out, cache, treebank, probes = (result[k] for k in ("out", "cache", "treebank", "probes"))
    others = [lang for lang in plan.probe_train_languages(job.lang) if lang != job.lang]
    scored = {
        "score_own": probes,
        "score_transfer": relabelled_probes(probes, others, out / "copies"),
    }
    for key, files in scored.items():
        result[key] = run_job(
            ["score-probe", "--probes", *map(str, files), "--activations", str(cache)]
            + ["--treebank", str(treebank), "--model", job.model, "--step", job.step]
            + shlex.split(plan.statistics_arguments())
            + ["--out", str(out / f"{key}.parquet"), "--items", str(out / f"{key}.items.npz")],
            out / f"{key}.log",
        )  # fmt: skip
        result[key]["probe_files"] = len(files)


# ---------------------------------------------------------------- the peers' approach


def peers_extraction(tokenizer, model, sentences) -> np.ndarray:
    """The usual loop: one sentence per forward pass, all hidden states, mean over word_ids."""
    import torch

    vectors = []
    with torch.inference_mode():
        for words in sentences:
            encoding = tokenizer(
                list(words), is_split_into_words=True, truncation=True, max_length=512,
                return_tensors="pt",
            )  # fmt: skip
            states = torch.stack(model(**encoding, output_hidden_states=True).hidden_states)[:, 0]
            word_ids = np.array([-1 if w is None else w for w in encoding.word_ids(0)])
            for w in range(len(words)):
                positions = np.flatnonzero(word_ids == w)
                if len(positions):
                    vectors.append(states[:, positions].mean(dim=1).numpy())
                else:
                    vectors.append(np.zeros(states[:, 0].shape, dtype=np.float32))
    return np.stack(vectors, axis=1)


def compare_extraction(checkpoint, sentences, batch_tokens, threads, rounds) -> dict:
    import torch

    from mlm_dynamics.activations.extract import Encoder

    torch.set_num_threads(threads)
    encoder = Encoder.from_checkpoint(checkpoint)
    words = [list(s) for s in sentences]
    runs = {
        "package": lambda: encoder.extract(words, pooling="mean", batch_tokens=batch_tokens)[0],
        "peers": lambda: peers_extraction(encoder.tokenizer, encoder.model, words),
    }
    # warm-up: first-call allocations stay out of the timings
    encoder.extract(words[:4], pooling="mean", batch_tokens=batch_tokens)
    peers_extraction(encoder.tokenizer, encoder.model, words[:4])
    seconds = {name: np.inf for name in runs}
    outputs = {}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    # same vectors, else the comparison would be of different work
    diff = float(np.abs(outputs["package"] - outputs["peers"]).max())
    plan = encoder.plan(words)
    tokens = sum(len(w.token_ids) for w in plan.windows)
    return {"seconds": seconds, "words": plan.n_words, "tokens": tokens, "max_diff": diff}


# ---------------------------------------------------------------- projections


def treebank_word_rates(config: dict) -> dict[str, tuple[float | None, str]]:
    """Words per sentence of each preset language's treebank: the dev + test of ../shared/ud
    (read by the package's prepare) where it is there, else None."""
    from mlm_dynamics.treebanks import prepare

    rates = {}
    for lang, spec in config["languages"].items():
        folder = SHARED_UD / Path(spec["treebank"]).name
        if not folder.is_dir():
            rates[lang] = (None, Path(spec["treebank"]).name)
            continue
        big = 10**9  # every sentence of dev and test (train is carved from dev)
        splits = prepare(folder, {"train": big, "dev": big, "test": big}, seed=0)
        sentences = [s for split in splits.values() for s in split]
        rates[lang] = (sum(len(s.words) for s in sentences) / len(sentences), folder.name)
    return rates


# ---------------------------------------------------------------- per-fit and scoring costs

EXTRACT_LINE = re.compile(r"(\w+): (\d+) sentences, (\d+) words, .* tokens in ([\d.]+) s")
FIT_LINE = re.compile(r"seed 0: (\d+) items, (\d+) features, .* fitted in ([\d.]+) s")


def measure_fits(sample, plan, l2) -> dict:
    """One ``train-probe`` child per task: one seed, one l2, no control, no MDL: one fit."""
    probing = plan.config["probing"]
    out, cache, treebank = sample["out"], sample["cache"], sample["treebank"]
    (out / "probes").mkdir()
    fits, sample["probes"] = {}, []
    for task in probing["tasks"]:
        path = out / "probes" / f"{task}.npz"
        log = out / f"train_probe.{task}.log"
        job = run_job(
            ["train-probe", "--activations", str(cache), "--treebank", str(treebank)]
            + ["--tasks", task, "--seeds", "1", "--l2", repr(l2)]
            + ["--max-iter", str(probing["max_iter"]), "--backend", "torch", "--device", "cpu"]
            + shlex.split(plan.statistics_arguments())
            + ["--threads", str(PROBE_THREADS), "--out", str(path)],
            log,
        )  # fmt: skip
        match = FIT_LINE.search(log.read_text())
        if match is None:
            sys.exit(f"error: no fit line in {log}")
        with np.load(path) as z:
            classes, layers = len(z["classes"]), len(z["layers"])
        fits[task] = {
            **job, "items": int(match[1]), "features": int(match[2]),
            "fit_seconds": float(match[3]), "classes": classes, "layers": layers,
        }  # fmt: skip
        sample["probes"].append(path)
        print(f"  fitted {task}: {fits[task]['items']} items in {fits[task]['fit_seconds']:.1f} s",
              flush=True)  # fmt: skip
    return fits


def fits_per_job(plan, n_items: int) -> dict[str, dict]:
    """What one train-probe job fits per task (probing/cli.py's ``train``): seeds x a batched grid
    run, a control fit, MDL's prefix fits (item counts of each prefix)."""
    from mlm_dynamics.probing import mdl, registry

    probing = plan.config["probing"]
    counted = {}
    for name in probing["tasks"]:
        task = registry.get(name)
        ends = mdl.block_ends(n_items) if probing["mdl"] and task.mdl else ()
        counted[name] = {
            "grid": probing["seeds"] * len(probing["l2"]),  # single-fit equivalents
            "control": int(name in probing["controls"] and task.has_control),
            "mdl_prefixes": list(ends[:-1]),  # a fit on each prefix before a block
        }
    return counted


def slope(small: tuple[float, float], large: tuple[float, float]) -> float:
    """Growth per unit between two measurements (x, y), never negative (noise at small sizes)."""
    return max(0.0, (large[1] - small[1]) / (large[0] - small[0]))


def extrapolate(small: tuple[float, float], large: tuple[float, float], x: float) -> float:
    """``y`` at ``x`` on the line through two measurements, never below the larger one's."""
    return large[1] + slope(small, large) * max(0.0, x - large[0])


# ---------------------------------------------------------------- output


def table(rows: list[list], header: list[str]) -> None:
    """Rows printed under a header, columns separated by `` | ``."""
    cells = [header] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print(
            " | ".join(
                cell.rjust(w) if k else cell.ljust(w) for cell, w in zip(row, widths, strict=True)
            )
        )
        if k == 0:
            print("-+-".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", type=Path, default=PRESET)
    parser.add_argument(
        "--treebank", type=Path, default=SHARED_UD / "UD_English-EWT", help="a UD treebank"
    )
    parser.add_argument("--language", default="en", help="the treebank's language in the preset")
    parser.add_argument("--sentences", type=int, default=200, help="train sentences sampled")
    parser.add_argument("--quick", action="store_true", help="smoke run: smaller everything")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the extraction comparison")
    parser.add_argument(
        "--compare-sentences", type=int, default=30, help="sentences of the extraction comparison"
    )
    parser.add_argument("--tokenizer-pieces", type=int, default=16000)
    parser.add_argument("--gpu-tflops", type=float, default=989.0, help="H100 bf16 dense peak")
    parser.add_argument("--gpu-utilisation", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.rounds, args.compare_sentences = 40, 1, 8
    if args.sentences < 2:
        sys.exit("error: --sentences: at least 2")
    began = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)

    from mlm_dynamics.scheduler import WORDS_PER_SENTENCE
    from mlm_dynamics.treebanks import load_prepared

    config, plan, request = preset_plan(args.preset)
    model = next(iter(config["models"]))
    steps = plan.steps(model)
    languages = plan.ud_languages()
    transfer = set(plan.transfer_languages())
    job = SimpleNamespace(model=model, step=str(steps[0]), lang=args.language)
    probing = config["probing"]
    grid = sorted(probing["l2"])
    l2 = grid[len(grid) // 2]
    print(f"preset {args.preset.relative_to(REPO)}: model {model}, {len(steps)} checkpoints x "
          f"{len(languages)} languages, tasks {' '.join(probing['tasks'])}, seeds "
          f"{probing['seeds']}, l2 grid {probing['l2']}, max_iter {probing['max_iter']}, "
          f"controls {probing['controls']}, mdl {probing['mdl']}", flush=True)  # fmt: skip

    tmp = None
    if args.keep:
        work = args.keep
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="paper_scale.")
        work = Path(tmp.name)
    checkpoint = work / "checkpoint"
    checkpoint.mkdir()
    shape = QUICK_SHAPE if args.quick else MODEL_SHAPE
    built = build_checkpoint(checkpoint, args.tokenizer_pieces, args.seed, shape)
    planned = request.million_parameters(model, steps[0])
    print(f"checkpoint: {built['parameters'] / 1e6:.1f}M parameters (plan: "
          f"{planned:.1f}M), {built['weights_bytes'] / 2**20:,.0f}"
          f" MiB safetensors; tokenizer {built['real_pieces']} trained pieces padded to "
          f"{shape['vocab_size']}; {shape['num_hidden_layers']} layers, hidden "
          f"{shape['hidden_size']}; built in {built['seconds']:.0f} s",
          flush=True)  # fmt: skip

    # ------------------------------------------------------------ measured: the jobs
    d = 2 * config["statistics"]["min_sentences"] if not args.quick else config["statistics"][
        "min_sentences"]  # fmt: skip
    sample = measure_size(
        "sample", (args.sentences, d, d), args, plan, request, job, checkpoint, work
    )
    splits = load_prepared(sample["treebank"])
    words_of = {split: sum(len(s.words) for s in splits[split]) for split in splits}
    print(f"prepared and extracted {args.sentences}/{d}/{d} sentences, {sample['words']} words "
          f"({time.perf_counter() - began:.0f} s so far)", flush=True)  # fmt: skip
    base = run_python(
        "import torch, numpy, mlm_dynamics.probing.cli, mlm_dynamics.probing.probe",
        work / "sample" / "import.log",
    )
    score_base = run_python(  # score-probe never imports torch
        "import numpy, mlm_dynamics.probing.cli", work / "sample" / "import_numpy.log"
    )
    fits = measure_fits(sample, plan, l2)
    measure_scoring(sample, plan, job)
    # a second, larger train split: the slope of fit time and peak memory per item
    large = measure_size(
        "large", (2 * args.sentences, d, d), args, plan, request, job, checkpoint, work
    )  # fmt: skip
    large_fits = measure_fits(large, plan, l2)
    print(f"probes fitted and scored ({time.perf_counter() - began:.0f} s so far)", flush=True)

    # ------------------------------------------------------------ measured: the peers
    train_words = [s.words for s in splits["train"]]
    batch_tokens = config["activations"]["batch_tokens"]
    extraction = compare_extraction(
        checkpoint, train_words[: args.compare_sentences], batch_tokens, request.gpu_threads,
        args.rounds,
    )  # fmt: skip
    sys.path.insert(0, str(REPO / "benchmarks"))
    import probe_speed

    from mlm_dynamics.probing.probe import fitting_threads

    with fitting_threads(PROBE_THREADS):
        peers = probe_speed.compare(
            "pos", sample["cache"], sample["treebank"], l2, probing["max_iter"], 1, verbose=False
        )
    print(f"peers compared ({time.perf_counter() - began:.0f} s so far)", flush=True)

    # ------------------------------------------------------------ table 1: the jobs measured
    ext = sample["extract"]
    logged = EXTRACT_LINE.findall((work / "sample" / "extract.log").read_text())
    forward_s = sum(float(seconds) for *_, seconds in logged)
    per_word_s = forward_s / sample["words"]  # the job's own per-split timings
    ext_fixed = max(0.0, ext["seconds"] - forward_s)
    cache_per_word = ext["cache_bytes"] / sample["words"]
    tokens_per_word = extraction["tokens"] / extraction["words"]
    hidden_states = shape["num_hidden_layers"] + 1
    size = "QUICK: a small model, not the paper's" if args.quick else "at paper dimensions"
    print(f"\n== 1. per job, measured {size} ({args.treebank.name}: "
          f"{words_of['train']}/{words_of['dev']}/{words_of['test']} train/dev/test words; "
          f"child processes, wall s, peak RSS)")  # fmt: skip
    n_scored = {k: sample[k]["probe_files"] for k in ("score_own", "score_transfer")}
    table(
        [
            ["extract-activations", f"{sample['words']} words", f"{ext['seconds']:.1f}",
             f"{ext['peak_mb']:,.0f}",
             f"{1000 * ext['seconds'] / sample['words']:.2f} s/1k words (wall); "
             f"{1000 * per_word_s:.2f} s/1k words forward (the job's log), fixed "
             f"{ext_fixed:.0f} s; "
             f"{request.gpu_threads} threads"],
            ["score-probe (other lang)", f"{n_scored['score_own']} files",
             f"{sample['score_own']['seconds']:.1f}", f"{sample['score_own']['peak_mb']:,.0f}",
             f"dev+test {words_of['dev'] + words_of['test']} words, 1 seed per file"],
            ["score-probe (transfer lang)", f"{n_scored['score_transfer']} files",
             f"{sample['score_transfer']['seconds']:.1f}",
             f"{sample['score_transfer']['peak_mb']:,.0f}", "own + relabelled copies"],
            ["python + torch + package import", "-", f"{base['seconds']:.1f}",
             f"{base['peak_mb']:,.0f}", "the fixed RSS of a probe job"],
            ["python + numpy + package import", "-", f"{score_base['seconds']:.1f}",
             f"{score_base['peak_mb']:,.0f}", "the fixed RSS of a scoring job (no torch)"],
        ],
        ["job", "size", "s", "peak MB", "notes"],
    )  # fmt: skip
    print(f"cache: {ext['cache_bytes']:,} bytes for {sample['words']} words = "
          f"{cache_per_word:,.0f} bytes/word ({hidden_states} states x {shape['hidden_size']}"
          f" x float16 = {hidden_states * shape['hidden_size'] * 2}, plus index files); per "
          f"checkpoint x language see 4.; {tokens_per_word:.2f} subwords/word")  # fmt: skip

    # ------------------------------------------------------------ table 2: per fit
    print(f"\n== 2. one probe fit per task, measured (train-probe child: --seeds 1 --l2 {l2:g} "
          f"--max-iter {probing['max_iter']}, torch, {PROBE_THREADS} thread, all layers at "
          f"once; real cached vectors of {args.sentences} and {2 * args.sentences} train "
          f"sentences, no tiling)")  # fmt: skip
    table(
        [[task, f["items"], f["features"], f["classes"], f["layers"], f"{f['fit_seconds']:.1f}",
          f"{f['seconds']:.1f}", f"{f['peak_mb']:,.0f}",
          f"{f['items'] / result['train_words']:.2f}"]
         for result, fitted in ((sample, fits), (large, large_fits))
         for task, f in fitted.items()],
        ["task", "items", "features", "classes", "layers", "fit s", "job wall s", "peak MB",
         "items/train word"],
    )  # fmt: skip

    # ------------------------------------------------------------ the preset's languages
    rates = treebank_word_rates(config)
    caps = config["treebanks"]["max_sentences"]
    cap_sentences = caps["train"] + caps["dev"] + caps["test"]
    rate = {lang: rates[lang][0] or WORDS_PER_SENTENCE for lang in languages}
    measured = [lang for lang in languages if rates[lang][0] is not None]

    def split_words(lang):
        return {split: rate[lang] * caps[split] for split in ("train", "dev", "test")}

    def items_of(result, task_fits, task):
        """(train items, train + dev items) of a measured fit: dev pairs cost what train's do."""
        per_word = task_fits[task]["items"] / result["train_words"]
        dev = sum(len(s.words) for s in load_prepared(result["treebank"])["dev"])
        return task_fits[task]["items"], per_word * (result["train_words"] + dev)

    def probe_job(lang):
        """(seconds, peak MB, fit detail) of one full-size train-probe job: fit seconds and peak
        memory extrapolated along the line through the two measured sizes (never below the
        larger), plus a resampled seed's copy of the train features."""
        w = split_words(lang)
        seconds, peak, detail = 0.0, 0.0, {}
        for task in fits:
            f, g = fits[task], large_fits[task]
            (n1, x1), (n2, x2) = items_of(sample, fits, task), items_of(large, large_fits, task)
            n = n2 / large["train_words"] * w["train"]
            x = n / w["train"] * (w["train"] + w["dev"])
            counted = fits_per_job(plan, int(n))[task]
            fit = extrapolate((n1, f["fit_seconds"]), (n2, g["fit_seconds"]), n)
            task_s = (counted["grid"] + counted["control"]) * fit + sum(
                extrapolate((n1, f["fit_seconds"]), (n2, g["fit_seconds"]), m)
                for m in counted["mdl_prefixes"]
            )
            overhead = extrapolate(
                (x1, f["seconds"] - f["fit_seconds"]), (x2, g["seconds"] - g["fit_seconds"]), x
            )
            seconds += task_s + overhead
            copy_mb = g["layers"] * n * g["features"] * 4 / 2**20 if probing["seeds"] > 1 else 0
            task_mb = extrapolate((x1, f["peak_mb"]), (x2, g["peak_mb"]), x) + copy_mb
            peak = max(peak, task_mb)
            detail[task] = {**counted, "n": n, "fit": fit, "seconds": task_s + overhead,
                            "mb": task_mb, "mb_per_item": slope((x1, f["peak_mb"]),
                                                                (x2, g["peak_mb"]))}  # fmt: skip
        return seconds, peak, detail

    own, tr = sample["score_own"], sample["score_transfer"]
    per_file = max(0.0, (tr["seconds"] - own["seconds"]) / (tr["probe_files"] - own["probe_files"]))
    score_fixed = max(0.0, own["seconds"] - per_file * own["probe_files"])

    def score_job(lang):
        """(seconds, peak MB) of one full-size score-probe job."""
        w = split_words(lang)
        ratio = max(1.0, (w["dev"] + w["test"]) / (words_of["dev"] + words_of["test"]))
        files = len(plan.probe_train_languages(lang)) * len(probing["tasks"])
        measured_job = tr if lang in transfer else own
        seconds = (score_fixed + per_file * files * probing["seeds"]) * ratio
        floor = score_base["peak_mb"]
        peak = floor + max(0.0, measured_job["peak_mb"] - floor) * ratio
        return seconds, peak

    seconds_per_flop = 1 / (args.gpu_tflops * 1e12 * args.gpu_utilisation)
    params = request.million_parameters(model, steps[0]) * 1e6

    def words(lang):
        return sum(split_words(lang).values())

    def extract_job(lang):
        """(GPU seconds, CPU seconds, peak MB) of one full-size extraction job."""
        flops = 2 * params * (words(lang) * tokens_per_word + 2 * cap_sentences)
        peak = ext["peak_mb"] + cache_per_word * words(lang) / 2**20
        return ext_fixed + flops * seconds_per_flop, ext_fixed + per_word_s * words(lang), peak

    # ------------------------------------------------------------ 2b: the probe job projected
    en_detail = probe_job(args.language)[2]
    print(f"\n== 2b. one train-probe job ({args.language}, full size) projected from the fits: "
          f"fit seconds and peak MB on the line through the two measured sizes (train + dev "
          f"items for memory), never below the larger; grid runs of {len(grid)} l2 x 13 layers "
          f"counted as {len(grid)} fits; + a resampled seed's copy of the train "
          "features")  # fmt: skip
    table(
        [[task, f"{d_['n']:,.0f}", f"{probing['seeds']} x {len(grid)} = {d_['grid']}",
          d_["control"], len(d_["mdl_prefixes"]), f"{d_['fit']:.0f}", f"{d_['seconds'] / 60:.1f}",
          f"{d_['mb_per_item'] * 1024:.1f}", f"{d_['mb']:,.0f}"]
         for task, d_ in en_detail.items()],
        ["task", "items", "grid fits", "control", "MDL fits", "s per full fit", "task min",
         "KB per item", "task peak MB"],
    )  # fmt: skip

    # ------------------------------------------------------------ 3: the peers
    ex = extraction["seconds"]
    print(f"\n== 3. the peers' approach, same run, same data ({request.gpu_threads} threads for "
          f"extraction, {PROBE_THREADS} for probes)")  # fmt: skip
    table(
        [
            [f"extraction, {args.compare_sentences} sentences ({extraction['words']} words, "
             f"{extraction['tokens']} subwords)", "transformers loop, batch 1",
             f"{ex['peers']:.1f}", f"batched Encoder.extract (batch_tokens {batch_tokens})",
             f"{ex['package']:.1f}", f"{ex['peers'] / ex['package']:.2f}x"],
            [f"pos probe, {fits['pos']['items']} items x {fits['pos']['features']}, "
             f"{fits['pos']['layers']} layers",
             "sklearn lbfgs per layer, max_iter 100", f"{peers['seconds']['sklearn']:.1f}",
             f"LinearProbe all layers, max_iter {probing['max_iter']}",
             f"{peers['seconds']['torch']:.1f}", f"{peers['ratio']['sklearn']:.1f}x"],
            ["  (same, sklearn to convergence)", "sklearn lbfgs per layer, max_iter 1000",
             f"{peers['seconds']['sklearn-converged']:.1f}", "", "",
             f"{peers['ratio']['sklearn-converged']:.1f}x"],
        ],
        ["comparison", "peers", "s", "package", "s", "ratio"],
    )  # fmt: skip
    print(f"max |vector difference| {extraction['max_diff']:.1e}; probe test-accuracy largest "
          f"|difference| {peers['max_abs_diff']['sklearn']:.2f} points (sklearn default), "
          f"{peers['max_abs_diff']['sklearn-converged']:.2f} (converged); C = 1/(l2 n), l2 "
          f"{l2:g}")  # fmt: skip

    # ------------------------------------------------------------ 4: totals
    n_steps = len(steps)
    print(f"\n== 4. projected totals for {args.preset.name}: {n_steps} checkpoints x "
          f"{len(languages)} languages; caps {caps['train']}/{caps['dev']}/{caps['test']} "
          f"sentences, every split assumed full; words/sentence from ../shared/ud dev+test for "
          f"{len(measured)} languages, {WORDS_PER_SENTENCE} (scheduler.WORDS_PER_SENTENCE) for the "
          f"other {len(languages) - len(measured)}")  # fmt: skip
    print("  " + ", ".join(f"{lang} {rate[lang]:.1f} w/s = {words(lang):,.0f} words"
                           for lang in measured))  # fmt: skip
    probe_s = n_steps * sum(probe_job(lang)[0] for lang in languages)
    score_s = n_steps * sum(score_job(lang)[0] for lang in languages)
    gpu_s = n_steps * sum(extract_job(lang)[0] for lang in languages)
    cpu_ext_s = n_steps * sum(extract_job(lang)[1] for lang in languages)
    flops = n_steps * sum(
        2 * params * (words(lang) * tokens_per_word + 2 * cap_sentences) for lang in languages
    )
    cache_bytes = n_steps * sum(cache_per_word * words(lang) for lang in languages)
    table(
        [
            ["probe fitting (train-probe)", f"{probe_s / 3600:,.0f} CPU-hours",
             f"{PROBE_THREADS} thread per job"],
            ["scoring (score-probe)", f"{score_s / 3600:,.1f} CPU-hours", "1 thread per job"],
            ["extraction on CPU", f"{cpu_ext_s * request.gpu_threads / 3600:,.0f} CPU-hours",
             f"{cpu_ext_s / 3600:,.0f} job-hours x {request.gpu_threads} threads"],
            ["extraction on GPU", f"{gpu_s / 3600:,.1f} GPU-hours",
             f"{flops:.3g} FLOPs = 2 x {params / 1e6:.1f}M x tokens, at {args.gpu_tflops:g} "
             f"TFLOP/s x {args.gpu_utilisation:g}; + {ext_fixed:.0f} s fixed per job "
             f"(FLOPs alone {flops * seconds_per_flop / 3600:.2f} h)"],
            ["activation cache", f"{cache_bytes / 2**40:,.2f} TiB",
             f"{cache_per_word:,.0f} bytes/word; {args.language}: "
             f"{cache_per_word * words(args.language) / 2**30:.2f} GiB per checkpoint x "
             "language"],
            ["SLURM submissions", f"{2 * n_steps + 1}",
             f"2 x {n_steps} checkpoints + 1, as python benchmarks/slurm_submissions.py (79)"],
        ],
        ["what", "total", "how"],
    )  # fmt: skip

    # ------------------------------------------------------------ 5: requests
    largest = max(measured, key=words) if measured else args.language
    targets = list(dict.fromkeys([args.language, largest]))
    rows, failures = [], []
    for lang in targets:
        wild = SimpleNamespace(model=model, step=str(steps[0]), lang=lang)
        counted = {split: round(n) for split, n in split_words(lang).items()}
        probe_mb = int(request.probe_memory_mb(model, steps[0], counted))
        probe_min = request.probe_minutes(model, steps[0], counted["train"])
        gpu, cpu, ext_mb = extract_job(lang)
        p_s, p_mb, _ = probe_job(lang)
        s_s, s_mb = score_job(lang)
        checks = [
            (f"extract_activations {lang} (GPU)", request.gpu_mem_mb(wild, 1),
             ext_mb, request.gpu_runtime(wild, 1), gpu / 60),
            (f"train_probe {lang}", probe_mb, p_mb, probe_min, p_s / 60),
            (f"score_probe {lang}", probe_mb, s_mb, probe_min, s_s / 60),
        ]  # fmt: skip
        for name, req_mb, mb, req_min, minutes in checks:
            ok = req_mb >= mb and req_min >= minutes
            rows.append([name, f"{req_mb:,}", f"{mb:,.0f}", req_min, f"{minutes:.1f}",
                         "yes" if ok else "NO"])  # fmt: skip
            if req_mb < mb:
                failures.append(f"{name}: asks {req_mb:,} MB, projected {mb:,.0f} MB")
            if req_min < minutes:
                failures.append(f"{name}: asks {req_min} min, projected {minutes:.0f} min")
        rows.append([f"  (extract_activations {lang} on CPU, info)", "", "", "",
                     f"{cpu / 60:.1f}", ""])  # fmt: skip
    print(f"\n== 5. the plan's requests (attempt 1) against one full-size job; the probe "
          f"jobs' from the language's words (as the plan counts them in its cache), the GPU "
          f"job's from the caps (Requests.treebank_words() = "
          f"{request.treebank_words():,})")  # fmt: skip
    table(rows, ["job", "requested MB", "measured/projected MB", "requested min",
                 "projected min", "ok"])  # fmt: skip
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    if failures:
        print("\nunder-requested:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
