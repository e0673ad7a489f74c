"""Pretraining speed on the CPU: today's loop against the faster variant(s), in one process.

    python benchmarks/pretrain_speed.py                      # 200 updates, 1 thread (~3 min)
    python benchmarks/pretrain_speed.py --steps 100 --threads 1 2 --extra
    python benchmarks/pretrain_speed.py --tokenizer results/.../tokenizer   # skip its training

The settings are the default run's: the schema's ``pretrain`` defaults overridden by config.yaml
(its first model's layers, batch_size, learning_rate; ``threads`` as given here). A tokenizer is
learnt from ``pretrain.texts`` unless ``--tokenizer`` names one. Every variant starts from the same
initial weights and trains updates 1..``--steps`` on the same batches (each update's batch, masks
and dropout come from generators seeded (seed, t), as in the workflow), so each sees the same
tokens. The variants are run interleaved, ``--chunk`` updates at a time, so that a change in the
machine's load falls on all of them alike; only the training updates are timed.

Variants:
  today      the loop of mlm_dynamics/pretrain.py before this benchmark (a frozen copy below):
             for-loop AdamW, dropout 0.1, SDPA attention
  default    mlm_dynamics.pretrain as it is now (``initial_model``, ``make_optimizer``,
             ``train_steps``), the workflow's loop: fused AdamW, no dropout, SDPA attention
  --extra adds, for information only:
  today+fused      today's loop with fused AdamW only (no change to the model)
  2x-batch         today's model with fused AdamW, twice the sequences per update, half the
                   updates and half the warm-up: the same tokens in fewer, larger updates
  default+bf16     the default loop under bf16 autocast (weights and optimiser in fp32); only
                   where the CPU has bf16 instructions (avx512_bf16 or amx_bf16)

For each it prints the wall seconds of the training updates, updates/s, tokens/s (input tokens,
masked or not), the speed ratio against today's loop (today's seconds / its seconds, same tokens)
and the masked-LM loss per masked token (nats) on a fixed held-out set: the ``# text =`` sentences
of the bundled UD dev splits (resources/ud/UD_*/{lang}_*-ud-dev.conllu.gz) of the pretraining
languages, cut into windows of ``max_length`` tokens, masked once with a fixed seed (the same masks
for every variant), scored in eval mode. The recipe is chosen on dev text: resources/heldout is
where BPC is reported, so it is not looked at here.

It exits with status 1 if the default variant's held-out loss is worse than today's by more than
``--tolerance`` nats per masked token (0.02 by default; fused AdamW alone, the same arithmetic
in another order, moves it by about 0.001 at 200 updates).

Sequences are already packed (each is a window of one language's token stream: no padding), and
the workflow does not use bf16 autocast: its checkpoints would then depend on whether the CPU has
bf16 instructions. The benchmark reports whether this one has, and measures it with --extra.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlm_dynamics import pretrain  # noqa: E402
from mlm_dynamics.config_check import schema_default  # noqa: E402
from mlm_dynamics.textio import read_lines  # noqa: E402
from mlm_dynamics.treebanks import read_text, split_file  # noqa: E402

HELDOUT_SEED = 20240601  # the held-out masks


# ---------------------------------------------------------------- today's loop (frozen copy)


def today_optimizer(model, settings, **options):
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
        **options,
    )


def today_mask_tokens(ids, tokenizer, probability, generator):
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~special
    inputs = ids.clone()
    action = torch.rand(ids.shape, generator=generator)
    inputs[chosen & (action < 0.8)] = tokenizer.mask_token_id
    randomised = chosen & (action >= 0.8) & (action < 0.9)
    inputs[randomised] = torch.randint(len(tokenizer), ids.shape, generator=generator)[randomised]
    return inputs, chosen, ids[chosen]


def today_loss(model, inputs, masked, targets):
    hidden = model.roberta(input_ids=inputs).last_hidden_state
    logits = model.lm_head(hidden[masked])
    return torch.nn.functional.cross_entropy(logits, targets)


def today_train_steps(model, optimizer, tokenizer, streams, settings, first, last):
    model.train()
    for t in range(first + 1, last + 1):
        rng = np.random.default_rng([settings.seed, t])
        ids = torch.from_numpy(streams.batch(rng, settings.batch_size, settings.max_length))
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        inputs, masked, targets = today_mask_tokens(
            ids, tokenizer, settings.mask_probability, generator
        )
        torch.manual_seed(int(rng.integers(2**62)))  # dropout
        for group in optimizer.param_groups:
            group["lr"] = pretrain.learning_rate(t, settings)
        loss = today_loss(model, inputs, masked, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


# ---------------------------------------------------------------- variants


@dataclasses.dataclass
class Variant:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    settings: pretrain.PretrainSettings
    updates: int
    loop: object  # (model, optimizer, tokenizer, streams, settings, first, last)
    done: int = 0
    seconds: float = 0.0

    def run(self, tokenizer, streams, updates: int) -> None:
        last = min(self.updates, self.done + updates)
        started = time.perf_counter()
        self.loop(self.model, self.optimizer, tokenizer, streams, self.settings, self.done, last)
        self.seconds += time.perf_counter() - started
        self.done = last


def quiet_default_loop(model, optimizer, tokenizer, streams, settings, first, last):
    pretrain.train_steps(
        model, optimizer, tokenizer, streams, settings, first, last, log=lambda *_: None
    )


def bf16_default_loop(model, optimizer, tokenizer, streams, settings, first, last):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quiet_default_loop(model, optimizer, tokenizer, streams, settings, first, last)


def variants(initial, tokenizer, settings, steps: int, extra: bool) -> list[Variant]:
    """Each variant's own copy of the initial weights (``initial_model``'s, one seed)."""

    def today_model():
        model = copy.deepcopy(initial)
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.1
        for module in model.modules():  # today's dropout, whatever initial_model sets now
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.1
        return model

    def default_variant(name, loop):
        model = pretrain.initial_model(tokenizer, settings)  # today's weights, its own dropout
        model.load_state_dict(initial.state_dict())
        optimizer = pretrain.make_optimizer(model, settings)
        return Variant(name, model, optimizer, settings, steps, loop)

    model = today_model()
    optimizer = today_optimizer(model, settings)
    out = [Variant("today", model, optimizer, settings, steps, today_train_steps)]

    out.append(default_variant("default", quiet_default_loop))
    if extra:
        model = today_model()
        optimizer = today_optimizer(model, settings, fused=True)
        out.append(Variant("today+fused", model, optimizer, settings, steps, today_train_steps))
        double = dataclasses.replace(
            settings, batch_size=2 * settings.batch_size, warmup_steps=settings.warmup_steps // 2
        )
        model = today_model()
        optimizer = today_optimizer(model, double, fused=True)
        out.append(Variant("2x-batch", model, optimizer, double, steps // 2, today_train_steps))
        if bf16_instructions():
            out.append(default_variant("default+bf16", bf16_default_loop))
    return out


# ---------------------------------------------------------------- held-out loss


def dev_sentences(languages) -> dict[str, list[str]]:
    """The ``# text =`` lines of each pretraining language's bundled UD dev split."""
    found = {}
    for treebank in sorted((REPO / "resources/ud").glob("UD_*")):
        path = split_file(treebank, "dev")
        language = path.name.split("_")[0] if path else None
        if language in languages:
            lines = read_text(path).split("\n")
            found[language] = [
                line[len("# text = ") :] for line in lines if line.startswith("# text = ")
            ]
    return found


def heldout_batches(tokenizer, sentences_by_language, length: int, batch_size: int = 64):
    """The sentences (``dev_sentences``) as masked windows: (inputs, masked, targets) per batch."""
    body = length - 2
    rows = []
    for sentences in sentences_by_language.values():
        ids = tokenizer(" ".join(sentences), add_special_tokens=False)["input_ids"]
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        rows += [[bos, *ids[i : i + body], eos] for i in range(0, len(ids) - body + 1, body)]
    ids = torch.tensor(rows, dtype=torch.int64)
    generator = torch.Generator().manual_seed(HELDOUT_SEED)
    inputs, masked, _ = today_mask_tokens(ids, tokenizer, 0.15, generator)
    batches = []
    for i in range(0, len(ids), batch_size):
        part = slice(i, i + batch_size)
        batches.append((inputs[part], masked[part], ids[part][masked[part]]))
    return batches, int(masked.sum())


@torch.no_grad()
def heldout_loss(model, batches) -> float:
    model.eval()
    total, count = 0.0, 0
    for inputs, masked, targets in batches:
        hidden = model.roberta(input_ids=inputs).last_hidden_state
        logits = model.lm_head(hidden[masked])
        total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        count += len(targets)
    return total / count


# ---------------------------------------------------------------- main


def default_settings() -> tuple[pretrain.PretrainSettings, dict]:
    """The default run's pretrain settings: schema defaults overridden by config.yaml."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    values = {**schema_default("pretrain"), **config.get("pretrain", {})}
    model = next(iter(config["models"].values()))
    values["layers"] = model["layers"]
    return pretrain.settings_from(values), values


def bf16_instructions() -> list[str]:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return sorted(flags & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})


def bf16_note() -> str:
    found = bf16_instructions()
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return f"CPU capability {capability}, bf16 instructions: {' '.join(found)}"
    return (
        f"CPU capability {capability}, no bf16 instructions (avx512_bf16/amx_bf16): "
        "bf16 autocast would be emulated, so it is not used"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="updates per variant")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--chunk", type=int, default=10, help="updates per turn of a variant")
    parser.add_argument("--tokenizer", type=Path, help="a saved tokenizer (else one is learnt)")
    parser.add_argument("--extra", action="store_true", help="also the informational variants")
    parser.add_argument("--tolerance", type=float, default=0.02, help="nats per masked token")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    settings, values = default_settings()
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tokenizer:
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        else:
            texts = [line for path in values["texts"] for line in read_lines(REPO / path)]
            pretrain.train_tokenizer(texts, values["vocab_size"]).save_pretrained(tmp)
            tokenizer = AutoTokenizer.from_pretrained(tmp)
    texts = {Path(p).name.split(".")[0]: read_lines(REPO / p) for p in values["texts"]}
    streams = pretrain.TokenStreams(tokenizer, texts, settings.language_sampling_alpha)
    heldout = dev_sentences(texts)
    batches, masked = heldout_batches(tokenizer, heldout, settings.max_length)
    print(f"torch {torch.__version__}; {bf16_note()}")
    print(
        f"settings: {settings.layers} layers, hidden {settings.hidden_size}, vocab {len(tokenizer)}"
        f", batch {settings.batch_size} x {settings.max_length} tokens (packed windows, no "
        f"padding), lr {settings.learning_rate}; {args.steps} updates = "
        f"{args.steps * settings.batch_size * settings.max_length} tokens per variant"
    )
    print(
        f"held-out (UD dev sentences of {', '.join(heldout)}): "
        f"{sum(len(b[0]) for b in batches)} windows, {masked} masked tokens"
    )
    print(f"(set-up {time.perf_counter() - started:.0f} s)")

    failed = False
    for threads in args.threads:
        torch.set_num_threads(threads)
        initial = pretrain.initial_model(tokenizer, settings)
        runs = variants(initial, tokenizer, settings, args.steps, args.extra)
        start_loss = heldout_loss(initial, batches)
        while any(v.done < v.updates for v in runs):
            for v in runs:
                v.run(tokenizer, streams, max(1, args.chunk * v.updates // args.steps))
        print(f"\nthreads {threads}: held-out loss at initialisation {start_loss:.4f}")
        print(
            f"{'variant':12s} {'updates':>7s} {'wall s':>8s} {'updates/s':>9s} {'tokens/s':>9s} "
            f"{'ratio':>6s} {'held-out loss':>13s} {'vs today':>9s}"
        )
        today = runs[0]
        today_loss_ = heldout_loss(today.model, batches)
        for v in runs:
            loss = today_loss_ if v is today else heldout_loss(v.model, batches)
            tokens = v.updates * v.settings.batch_size * v.settings.max_length
            print(
                f"{v.name:12s} {v.updates:7d} {v.seconds:8.1f} {v.updates / v.seconds:9.2f} "
                f"{tokens / v.seconds:9.0f} {today.seconds / v.seconds:6.3f} {loss:13.4f} "
                f"{loss - today_loss_:+9.4f}"
            )
            if v.name == "default" and loss > today_loss_ + args.tolerance:
                failed = True
                print(f"  FAIL: default's held-out loss is worse by more than {args.tolerance}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
