"""Embedded checkpoints: a SentencePiece-unigram tokenizer and a tiny LM pretrained from scratch.

The default config cannot download a model, so it makes its own: ``train-tokenizer`` learns a
vocabulary from the bundled multilingual text, and ``pretrain`` trains a tiny model of one of two
``ARCHITECTURES`` on it and saves a Hugging Face-format checkpoint (safetensors, config, tokenizer)
at a given step: ``xlm-roberta`` (the default), an ``XLMRobertaForMaskedLM`` with BERT's masked-LM
objective, or ``bloom``, a ``BloomForCausalLM`` (ALiBi, no position embeddings) with the
next-token objective at every position of the same ``<s> window </s>`` batches, same tokenizer.

Every update ``t`` draws its batch, its masks and any dropout from generators seeded with
``(seed, t)``, and the learning-rate schedule needs no total step count. So the checkpoint at step
``S`` is the same whether it was trained in one go or resumed from any earlier saved step: each
step's job resumes from the previous configured step and never depends on the whole list of steps.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import time
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tokenizers import SentencePieceUnigramTokenizer

from mlm_dynamics.atomic import atomic_dir
from mlm_dynamics.environment import environment
from mlm_dynamics.errors import InputError
from mlm_dynamics.textio import read_lines

if typing.TYPE_CHECKING:
    import torch  # imported where used: train-tokenizer starts 2 s sooner without it

OPTIMIZER_FILE = "optimizer.pt"  # the AdamW state the next step resumes from
STATE_FILE = "pretrain_state.json"  # step, settings and recipe, checked on resume
# What the code trains beyond the settings (2: no dropout, fused AdamW); a checkpoint of another
# recipe is not resumed, so no chain mixes two.
RECIPE = 2
# The embedded architectures: the masked LM (the default) and a causal LM.
MASKED_ARCHITECTURE = "xlm-roberta"  # the default, and what a state saved before the choice is
ARCHITECTURES = (MASKED_ARCHITECTURE, "bloom")
CAUSAL_ARCHITECTURES = ("bloom",)


def train_sentencepiece(texts: list[str], vocab_size: int, model) -> None:
    """Google's SentencePiece unigram trainer, writing its model to the file object ``model``."""
    import sentencepiece

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        # XLM-R's ids: <s>=0 <pad>=1 </s>=2 <unk>=3; <mask> follows as the first ordinary piece.
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        bos_piece="<s>",
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        user_defined_symbols=["<mask>"],
        character_coverage=0.9999,  # keeps the frequent CJK characters of the smaller corpora
        num_threads=1,
        minloglevel=2,
    )


def train_tokenizer(texts: list[str], vocab_size: int):
    """A unigram tokenizer as ``XLMRobertaTokenizerFast``, with XLM-R's special tokens and ids.

    Google's SentencePiece trainer chooses the pieces and their log-probabilities; the
    ``tokenizers`` library's Unigram model then does the tokenising. (The ``tokenizers`` unigram
    trainer would do both, but its output changes from run to run: it breaks ties in hash-map
    order, and identical configs must give identical checkpoints.)
    """
    import sentencepiece
    from tokenizers.models import Unigram
    from transformers import XLMRobertaTokenizerFast

    model = io.BytesIO()
    try:
        train_sentencepiece(texts, vocab_size, model)
    except RuntimeError as exc:
        needed = re.search(r"required_chars\. \d+ vs (\d+)", str(exc))
        if not needed:
            raise
        raise InputError(
            f"pretrain.vocab_size: {vocab_size} is smaller than the {needed.group(1)} characters "
            "the pretraining text needs; raise it or use less (or less varied) text"
        ) from None
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(len(processor))]
    spm = SentencePieceUnigramTokenizer()
    spm._tokenizer.model = Unigram(vocab, unk_id=processor.unk_id())
    return XLMRobertaTokenizerFast(
        tokenizer_object=spm._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


# ---------------------------------------------------------------- data


def language_weights(sizes: list[int], alpha: float) -> np.ndarray:
    """XLM-R's language sampling: p(l) ~ n_l^alpha (alpha < 1 favours small languages)."""
    p = np.asarray(sizes, dtype=np.float64) / sum(sizes)
    p = p**alpha
    return p / p.sum()


class TokenStreams:
    """Each language's text as one token stream; a training sequence is a window of one stream."""

    def __init__(self, tokenizer, texts_by_language: dict[str, list[str]], alpha: float):
        self.languages = sorted(texts_by_language)
        ids = tokenizer(
            [" ".join(texts_by_language[lang]) for lang in self.languages],
            add_special_tokens=False,
        )["input_ids"]
        self.streams = [np.asarray(stream, dtype=np.int64) for stream in ids]
        self.weights = language_weights([len(s) for s in self.streams], alpha)
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id

    def batch(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        """(batch_size, length) token ids: <s> window </s>, language drawn per sequence."""
        body = length - 2
        out = np.empty((batch_size, length), dtype=np.int64)
        out[:, 0], out[:, -1] = self.bos, self.eos
        langs = rng.choice(len(self.streams), size=batch_size, p=self.weights)
        for row, lang in enumerate(langs):
            stream = self.streams[lang]
            start = rng.integers(0, max(1, len(stream) - body))
            window = stream[start : start + body]
            out[row, 1 : 1 + len(window)] = window
            out[row, 1 + len(window) : -1] = self.eos  # only for streams shorter than one window
        return out


def mask_tokens(ids: torch.Tensor, tokenizer, probability: float, generator: torch.Generator):
    """BERT masking (80% <mask>, 10% random, 10% kept): inputs, masked positions, targets."""
    import torch

    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & ~special
    inputs = ids.clone()
    action = torch.rand(ids.shape, generator=generator)
    inputs[chosen & (action < 0.8)] = tokenizer.mask_token_id
    randomised = chosen & (action >= 0.8) & (action < 0.9)
    inputs[randomised] = torch.randint(len(tokenizer), ids.shape, generator=generator)[randomised]
    return inputs, chosen, ids[chosen]


# ---------------------------------------------------------------- model and training


@dataclass(frozen=True)
class PretrainSettings:
    """The model and training settings of an embedded model: config ``pretrain`` (and
    ``models.<name>.layers``), each given explicitly but ``architecture`` (``xlm-roberta`` unless
    given). For ``bloom``, ``intermediate_size`` and ``mask_probability`` are unused (BLOOM's MLP
    is 4 x hidden_size, and the next-token objective masks nothing), and ``max_length`` is only
    the length of the training sequences (ALiBi has no position embeddings)."""

    hidden_size: int
    layers: int
    attention_heads: int
    intermediate_size: int
    max_length: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    mask_probability: float
    language_sampling_alpha: float
    seed: int
    architecture: str = MASKED_ARCHITECTURE  # last and defaulted: older settings still hold

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise InputError(
                f"architecture {self.architecture!r}: an embedded model is one of "
                + ", ".join(ARCHITECTURES)
            )

    @property
    def causal(self) -> bool:
        """Whether the model is a causal LM trained on the next token (else a masked LM)."""
        return self.architecture in CAUSAL_ARCHITECTURES


def settings_from(values: dict) -> PretrainSettings:
    """The settings among ``values`` (a config section or parsed options; others ignored); a
    setting with a default (``architecture``) may be absent."""
    return PretrainSettings(
        **{
            f.name: values[f.name]
            for f in fields(PretrainSettings)
            if f.name in values or not defaulted(f)
        }
    )


def defaulted(field) -> bool:
    return field.default is not MISSING


def initial_model(tokenizer, settings: PretrainSettings):
    """The seeded, randomly initialised model of ``settings.architecture``."""
    import torch

    if settings.causal:
        from transformers import BloomConfig, BloomForCausalLM

        config = BloomConfig(
            vocab_size=len(tokenizer),
            hidden_size=settings.hidden_size,
            n_layer=settings.layers,
            n_head=settings.attention_heads,
            # no intermediate_size: BLOOM's MLP is 4 x hidden_size (settings.intermediate_size is
            # unused), and no position embeddings (ALiBi)
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            hidden_dropout=0.0,  # no dropout, as the masked LM's
            attention_dropout=0.0,
        )
        torch.manual_seed(settings.seed)
        return BloomForCausalLM(config)
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.attention_heads,
        intermediate_size=settings.intermediate_size,
        # XLM-R's position ids start after padding_idx, hence the + 2
        max_position_embeddings=settings.max_length + 2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
        # No dropout: a fifth less time per update on the CPU, and a lower held-out loss at the
        # same tokens, at 200 and at 800 updates (benchmarks/pretrain_speed.py).
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(settings.seed)
    return XLMRobertaForMaskedLM(config)


def learning_rate(step: int, settings: PretrainSettings) -> float:
    """Linear warm-up, then inverse-square-root decay: needs no total number of steps."""
    warmup = max(1, settings.warmup_steps)
    return settings.learning_rate * min(step / warmup, (warmup / max(step, 1)) ** 0.5)


def make_optimizer(model, settings: PretrainSettings):
    import torch

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
        fused=True,  # one kernel for all parameters: a third of the for-loop's time
    )


def masked_lm_loss(model, inputs: torch.Tensor, masked: torch.Tensor, targets: torch.Tensor):
    """Cross-entropy at masked positions only: the LM head never sees the other positions."""
    import torch

    hidden = model.roberta(input_ids=inputs).last_hidden_state
    logits = model.lm_head(hidden[masked])
    return torch.nn.functional.cross_entropy(logits, targets)


def causal_lm_loss(model, ids: torch.Tensor):
    """Mean next-token cross-entropy at every position: ids[:, 1:] predicted from ids[:, :-1]
    (the last token's prediction has no target, so it is not computed)."""
    import torch

    hidden = model.transformer(input_ids=ids[:, :-1], use_cache=False).last_hidden_state
    logits = model.lm_head(hidden)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def train_steps(model, optimizer, tokenizer, streams, settings, first: int, last: int, log=print):
    """Updates first+1 .. last; update t draws everything from generators seeded (seed, t)."""
    import torch

    model.train()
    started = time.perf_counter()
    objective = "clm" if settings.causal else "mlm"
    for t in range(first + 1, last + 1):
        rng = np.random.default_rng([settings.seed, t])
        ids = torch.from_numpy(streams.batch(rng, settings.batch_size, settings.max_length))
        if settings.causal:
            torch.manual_seed(int(rng.integers(2**62)))  # dropout, in a checkpoint that has any
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(t, settings)
            loss = causal_lm_loss(model, ids)
        else:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            inputs, masked, targets = mask_tokens(
                ids, tokenizer, settings.mask_probability, generator
            )
            torch.manual_seed(int(rng.integers(2**62)))  # dropout, in a checkpoint that has any
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(t, settings)
            loss = masked_lm_loss(model, inputs, masked, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if t == first + 1 or t % 25 == 0 or t == last:
            rate = (t - first) / (time.perf_counter() - started)
            log(
                f"step {t}: {objective} loss {loss.item():.4f}  "
                f"lr {learning_rate(t, settings):.2e}  {rate:.2f} steps/s"
            )


def save_checkpoint(out: Path, model, tokenizer, optimizer, step: int, settings) -> None:
    """A Hugging Face-format directory (safetensors, config, tokenizer) plus the optimiser state."""
    import torch

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        # the environment that trained it: what a checkpoint made on another CPU differs by
        state = {
            "step": step, "settings": asdict(settings), "recipe": RECIPE,
            "environment": environment(),
        }  # fmt: skip
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")


def trained_environment(path: Path) -> dict | None:
    """The environment that trained the embedded checkpoint at ``path``, as its state recorded it
    (None for a checkpoint saved before states recorded one)."""
    return json.loads((path / STATE_FILE).read_text()).get("environment")


def load_checkpoint(path: Path, settings: PretrainSettings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, XLMRobertaForMaskedLM

    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise InputError(f"{path}: not an embedded pretraining checkpoint (no {STATE_FILE})")
    state = json.loads(state_file.read_text())
    # a state saved before there was a choice of architecture is the masked LM's
    saved = {"architecture": MASKED_ARCHITECTURE, **state["settings"]}
    if saved != asdict(settings) or state.get("recipe", 1) != RECIPE:
        what = "pretrain settings" if saved != asdict(settings) else "training recipe"
        raise InputError(
            f"{state_file}: was trained with another {what} than this config and code's; "
            "delete results/checkpoints of this model to retrain"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    # the settings, checked equal to the state's, say which architecture the weights are
    model = (AutoModelForCausalLM if settings.causal else XLMRobertaForMaskedLM).from_pretrained(
        path
    )
    optimizer = make_optimizer(model, settings)
    optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))
    return model, tokenizer, optimizer, int(state["step"])


# ---------------------------------------------------------------- commands


def main(command: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m mlm_dynamics {command}")
    parser.add_argument("--texts", nargs="+", required=True, help="pretraining text per language")
    parser.add_argument("--out", required=True, type=Path)
    if command == "train-tokenizer":
        parser.add_argument("--vocab-size", type=int, required=True, help="pretrain.vocab_size")
        args = parser.parse_args(argv)
        texts = [line for path in args.texts for line in read_lines(path)]
        tokenizer = train_tokenizer(texts, args.vocab_size)
        with atomic_dir(args.out) as tmp:
            tokenizer.save_pretrained(tmp)
        print(f"tokenizer: {len(tokenizer)} pieces from {len(texts)} lines -> {args.out}")
        return
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--step", required=True, type=int)
    parser.add_argument("--resume", type=Path, help="checkpoint of an earlier step to resume from")
    parser.add_argument("--threads", type=int, required=True, help="pretrain.threads")
    parser.add_argument("--model", help="model name, for the check record")
    parser.add_argument("--check-record", help="write check-checkpoint's record of the step here")
    parser.add_argument("--earlier", nargs="*", default=[], help="records of the earlier steps")
    hints = typing.get_type_hints(PretrainSettings)
    for field in fields(PretrainSettings):  # a setting with a default may be left out
        option, kind = f"--{field.name.replace('_', '-')}", hints[field.name]
        if defaulted(field):
            parser.add_argument(option, type=kind, default=field.default)
        else:
            parser.add_argument(option, type=kind, required=True)
    args = parser.parse_args(argv)
    import torch

    settings = settings_from(vars(args))
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    if args.resume:
        model, tokenizer, optimizer, first = load_checkpoint(args.resume, settings)
        if first > args.step:
            raise InputError(f"{args.resume}: step {first} is after the requested step {args.step}")
        print(f"resuming from step {first} ({args.resume})")
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        model = initial_model(tokenizer, settings)
        optimizer = make_optimizer(model, settings)
        first = 0
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {settings.architecture}, {settings.layers} layers, hidden "
        f"{settings.hidden_size}, {params / 1e6:.2f}M parameters; training steps "
        f"{first + 1}..{args.step}"
    )
    if settings.causal:
        print("bloom: intermediate_size and mask_probability are unused (MLP 4 x hidden, no masks)")
    if args.step > first:
        texts = {Path(p).name.split(".")[0]: read_lines(p) for p in args.texts}
        streams = TokenStreams(tokenizer, texts, settings.language_sampling_alpha)
        pairs = zip(streams.languages, streams.weights, strict=True)
        shares = ", ".join(f"{lang} {weight:.2f}" for lang, weight in pairs)
        print(f"language sampling: {shares}")
        train_steps(model, optimizer, tokenizer, streams, settings, first, args.step)
    save_checkpoint(args.out, model, tokenizer, optimizer, args.step, settings)
    print(f"saved step {args.step} -> {args.out}")
    if args.check_record:  # checked as any other source's checkpoint, without a job of its own
        from mlm_dynamics.sources.checks import write_record

        write_record(
            args.out, None, args.model, args.step, settings.layers, args.earlier, args.check_record
        )
