"""The GPU check's measurements: extraction throughput against the bf16 roofline, and the CUDA
probe's fitting time against scikit-learn's, at the paper's dimensions.

    python benchmarks/gpu_check.py                        # on CUDA (benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --quick                # small sizes: what the CPU run uses
    python benchmarks/gpu_check.py --peak-tflops 756      # a GPU the table below does not know
    GPU_PEAK_TFLOPS=756 python benchmarks/gpu_check.py    # the same

Both use a randomly initialised XLM-R-base-sized ``XLMRobertaModel`` built with transformers (12
layers, hidden 768, 12 heads, FFN 3072, vocabulary 250002, 514 positions; no network) with a
SentencePiece tokenizer trained on the bundled text, encoding the bundled English treebank.

1. Extraction throughput: ``Encoder.encode`` (the workflow's path: length-sorted batches of
   ``activations.batch_tokens`` padded tokens, bf16 autocast on CUDA, fp32 on the CPU, mean
   pooling, every hidden state copied to the host) on the train split, repeated to at least
   ``--tokens`` tokens (specials included, padding not); best of ``--repeats``. Also the model's
   forward pass alone on a (rows, 128) batch, to tell the model from the pipeline around it.
   Achieved FLOP/s = 2 x non-embedding parameters x tokens/s (a forward pass does one multiply-add
   per weight and token; attention scores, ~2 x layers x length x hidden per token, and the
   embedding look-ups are left out), divided by the device's peak dense bf16 FLOP/s
   (PEAK_BF16_TFLOPS by ``torch.cuda.get_device_name()``, else --peak-tflops / GPU_PEAK_TFLOPS).
2. Probe fit: ``benchmarks/probe_speed.py``'s ``compare`` on the POS task of a cache extracted
   with this model (13 hidden states x 768 features, 17 UPOS classes, the workflow's
   ``treebanks.max_sentences`` train and test sentences): the package's torch probe for all
   layers at once on the device against scikit-learn's ``LogisticRegression`` fitted layer by
   layer on the CPU (its default fit and its converged one), at one l2 (the schema grid's middle
   value) and ``probing.max_iter``.

Without CUDA each CUDA measurement is one ``SKIP:`` line and its CPU counterpart runs instead
(fp32 throughput, the torch probe on the CPU); meant with --quick there, which also gives the
model the tokenizer's 4000-row embedding table instead of 250002 rows (the same non-embedding
parameters, so the same FLOP/token) and a few sentences only, so that it stays working, not to
measure anything.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import probe_speed  # noqa: E402

from mlm_dynamics.activations.extract import Encoder, write_split  # noqa: E402
from mlm_dynamics.config_check import schema_default  # noqa: E402
from mlm_dynamics.probing.probe import fitting_threads  # noqa: E402
from mlm_dynamics.treebanks import prepare, save_prepared  # noqa: E402

# Peak dense (no sparsity) bf16 tensor-core TFLOP/s by a name in torch.cuda.get_device_name(),
# from the vendor's data sheets; the first entry whose key is in the name counts.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
}
XLMR_BASE = {
    "vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1,
}  # fmt: skip
# The model's vocabulary is XLM-R's; the tokenizer only needs realistic pieces per word.
TOKENIZER_VOCAB = 4000
FORWARD_LENGTH = 128  # tokens per row of the forward-only batch
TREEBANK = REPO / "resources/ud/UD_English-EWT"
NO_CUDA = "needs a CUDA device (torch.cuda.is_available() is False)"


@dataclass(frozen=True)
class Sizes:
    vocab: int  # the model's vocabulary (only the embedding table; FLOP/token do not change)
    tokens: int  # at least this many tokens per timed extraction
    forward_rows: int  # rows of FORWARD_LENGTH tokens in the forward-only batch
    train: int  # probe cache: train sentences
    test: int  # and test sentences
    repeats: int


def full_sizes() -> Sizes:
    caps = schema_default("treebanks.max_sentences")
    rows = schema_default("activations.batch_tokens") // FORWARD_LENGTH
    return Sizes(XLMR_BASE["vocab_size"], 2**17, rows, caps["train"], caps["test"], 3)


# --quick: the tokenizer's vocabulary spares the CPU 192M random numbers (seconds)
QUICK = Sizes(vocab=TOKENIZER_VOCAB, tokens=128, forward_rows=1, train=6, test=3, repeats=1)


def skip(what: str) -> None:
    print(f"SKIP: {what} — {NO_CUDA}", flush=True)


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """The device's peak dense bf16 TFLOP/s and where the figure comes from."""
    if override is not None:
        return override, "--peak-tflops / GPU_PEAK_TFLOPS"
    if device.type != "cuda":
        return None, "no bf16 peak for a CPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"table: {key}"
    return None, f"{name!r} is not in the table: give --peak-tflops or GPU_PEAK_TFLOPS"


def random_xlmr_base(tokenizer, device: torch.device, vocab: int):
    """A seeded random-init XLM-R-base-sized encoder (no pooler) with ``vocab`` embeddings, in
    eval mode on ``device``."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(
        **{**XLMR_BASE, "vocab_size": vocab},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with device:  # initialised where it runs: 278M parameters
        model = XLMRobertaModel(config, add_pooling_layer=False)
    return model.eval()


def bundled_tokenizer():
    from mlm_dynamics.pretrain import train_tokenizer
    from mlm_dynamics.textio import read_lines

    texts = [
        line
        for path in sorted((REPO / "resources/text").glob("*.txt.gz"))
        for line in read_lines(path, limit=200)
    ]
    return train_tokenizer(texts, vocab_size=TOKENIZER_VOCAB)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate_line(label: str, tokens: int, seconds: float, flops_per_token: float, peak) -> str:
    rate = tokens / seconds
    achieved = flops_per_token * rate / 1e12
    fraction = f"{100 * achieved / peak:.1f}% of {peak:g}" if peak else "n/a"
    return (
        f"{label}: {tokens} tokens in {seconds:.3f} s = {rate:,.0f} tokens/s; "
        f"achieved {achieved:.3f} TFLOP/s, roofline fraction {fraction}"
    )


def throughput(encoder: Encoder, sentences, sizes: Sizes, batch_tokens: int, peak) -> None:
    model, device = encoder.model, encoder.device
    non_embedding = sum(p.numel() for p in model.encoder.parameters())
    total = sum(p.numel() for p in model.parameters())
    flops_per_token = 2 * non_embedding
    print(
        f"model: {non_embedding:,} non-embedding parameters (of {total:,}); "
        f"FLOP/token = 2 x {non_embedding:,} = {flops_per_token / 1e6:.1f} MFLOP"
    )
    # the split's sentences, cycled until they hold sizes.tokens tokens
    words = [list(s.words) for s in sentences]
    specials = len(encoder.prefix) + len(encoder.suffix)
    lengths = [sum(len(w.token_ids) + specials for w in encoder.plan([s]).windows) for s in words]
    count = int(
        np.searchsorted(np.cumsum(lengths * (sizes.tokens // sum(lengths) + 1)), sizes.tokens)
    )
    words = [words[i % len(words)] for i in range(count + 1)]
    plan = encoder.plan(words)
    # float16 like the cache; every hidden state of every word comes back to the host
    out = np.empty((encoder.n_hidden_states, plan.n_words, encoder.hidden_size), np.float16)
    warm = encoder.plan(words[:1])
    encoder.encode(warm, out[:, : warm.n_words], pooling="mean", batch_tokens=batch_tokens)
    runs = [
        encoder.encode(plan, out, pooling="mean", batch_tokens=batch_tokens)
        for _ in range(sizes.repeats)
    ]
    best = min(runs, key=lambda run: run["seconds"])
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(
        rate_line(
            f"extraction ({precision}, {len(plan.windows)} windows, batch tokens {batch_tokens})",
            best["tokens"], best["seconds"], flops_per_token, peak,
        )
    )  # fmt: skip

    rng = np.random.default_rng(0)
    ids = rng.integers(3, len(encoder.tokenizer), size=(sizes.forward_rows, FORWARD_LENGTH))
    ids = torch.from_numpy(ids).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    seconds = np.inf
    with torch.inference_mode(), autocast:
        warm_up = int(device.type == "cuda")  # a first round for CUDA's lazy initialisation
        for round_ in range(warm_up, sizes.repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            model(input_ids=ids)
            synchronize(device)
            if round_:
                seconds = min(seconds, time.perf_counter() - start)
    print(
        rate_line(
            f"forward pass only ({precision}, {sizes.forward_rows} x {FORWARD_LENGTH} tokens)",
            ids.numel(), seconds, flops_per_token, peak,
        )
    )  # fmt: skip


def probe_fit(encoder: Encoder, splits, work: Path, args, sizes: Sizes) -> None:
    """Write the cache of ``splits`` with the workflow's writer and run probe_speed's compare."""
    treebank = work / "en.json.gz"
    save_prepared(treebank, splits, "en", str(TREEBANK.relative_to(REPO)))
    cache = work / "activations"
    for split in ("train", "test"):
        words = [s.words for s in splits[split]]
        write_split(encoder, words, cache / split, "mean", args.batch_tokens)
    start = time.perf_counter()
    with fitting_threads(args.threads):
        result = probe_speed.compare(
            "pos", cache, treebank, args.l2, args.max_iter, sizes.repeats, encoder.device.type
        )
    ratio = result["ratio"]
    print(
        f"probe fit ratio (scikit-learn layer by layer on the CPU / torch all layers on "
        f"{encoder.device.type}): {ratio['sklearn']:.1f}x (sklearn default), "
        f"{ratio['sklearn-converged']:.1f}x (converged); {args.threads} CPU threads; "
        f"comparison took {time.perf_counter() - start:.0f} s"
    )


def main() -> None:
    grid = sorted(schema_default("probing.l2"))
    env_peak = os.environ.get("GPU_PEAK_TFLOPS")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU run)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=float(env_peak) if env_peak else None,
        help="peak dense bf16 TFLOP/s of the GPU (default: $GPU_PEAK_TFLOPS, else the table)",
    )
    parser.add_argument(
        "--batch-tokens", type=int, default=schema_default("activations.batch_tokens")
    )
    parser.add_argument("--l2", type=float, default=grid[len(grid) // 2])
    parser.add_argument("--max-iter", type=int, default=schema_default("probing.max_iter"))
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for the fits and CPU torch (default: 1 with --quick, else every core)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else full_sizes()
    if args.threads is None:
        args.threads = 1 if args.quick else len(os.sched_getaffinity(0))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(min(2, len(os.sched_getaffinity(0))) if args.quick else args.threads)
    peak, source = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {name}; peak bf16 {f'{peak:g} TFLOP/s' if peak else 'unknown'} ({source}); "
        f"sizes: {'quick' if args.quick else 'full'}",
        flush=True,
    )

    start = time.perf_counter()
    tokenizer = bundled_tokenizer()
    encoder = Encoder(tokenizer, random_xlmr_base(tokenizer, device, sizes.vocab), device)
    caps = {"train": sizes.train, "dev": 1, "test": sizes.test}
    splits = prepare(TREEBANK, caps, seed=13)
    print(
        f"setup (tokenizer, random XLM-R-base with vocabulary {sizes.vocab}, treebank): "
        f"{time.perf_counter() - start:.1f} s"
    )

    print("\n== 1. extraction throughput: random-init XLM-R-base ==", flush=True)
    if not cuda:
        skip("bf16 extraction throughput against the bf16 roofline")
        print("running the CPU fp32 measurement instead")
    throughput(encoder, splits["train"], sizes, args.batch_tokens, peak)

    print("\n== 2. probe fit: torch probe (all layers) vs scikit-learn (layer by layer) ==")
    if not cuda:
        skip("CUDA probe fit against scikit-learn")
        print("running the torch probe on the CPU instead")
    with tempfile.TemporaryDirectory() as tmp:
        probe_fit(encoder, splits, Path(tmp), args, sizes)


if __name__ == "__main__":
    main()
