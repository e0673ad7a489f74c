"""A fairseq RoBERTa/XLM-R checkpoint as an ``XLMRobertaForMaskedLM``, without installing fairseq.

The ``.pt`` file is unpickled with ``torch.load(weights_only=True)``: only tensors, plain
containers and the few harmless classes in :data:`SAFE_GLOBALS` can come out of it, so a checkpoint
from the internet cannot run code. fairseq keeps the model's hyper-parameters in ``args`` (an
``argparse.Namespace``, older versions) or ``cfg`` (newer versions, saved as a plain dict via
``OmegaConf.to_container``; its ``model`` entry may itself be a Namespace). A checkpoint whose
``cfg`` is a pickled omegaconf ``DictConfig`` is refused: re-save it with a plain-dict ``cfg``.

The key mapping follows transformers' RoBERTa/XLM-R conversion scripts. fairseq's dictionary is
``<s> <pad> </s> <unk>``, then the lines of ``dict.txt``, then ``<mask>`` -- the ids of XLM-R's
Hugging Face tokenizer, so embedding rows are copied as they are once the sizes agree (and, when
the tokenizer directory has fairseq's ``dict.txt``, once every piece is at the same id).
"""

from __future__ import annotations

import argparse
import collections
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from mlm_dynamics.errors import InputError

# What fairseq checkpoints hold besides tensors and builtin containers: the legacy ``args``
# Namespace and numpy scalars (e.g. a validation loss kept as numpy.float64).
SAFE_GLOBALS = [
    argparse.Namespace,
    collections.OrderedDict,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Float32DType,
    np.dtypes.Int64DType,
    getattr(np, "_core", np.core).multiarray.scalar,
]

FAIRSEQ_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
LAYER_MAP = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}
EMBEDDING_MAP = {
    "embed_tokens.weight": "roberta.embeddings.word_embeddings.weight",
    "embed_positions.weight": "roberta.embeddings.position_embeddings.weight",
    "layernorm_embedding.weight": "roberta.embeddings.LayerNorm.weight",
    "layernorm_embedding.bias": "roberta.embeddings.LayerNorm.bias",
    # fairseq < 0.10 called the embedding layer norm emb_layer_norm.
    "emb_layer_norm.weight": "roberta.embeddings.LayerNorm.weight",
    "emb_layer_norm.bias": "roberta.embeddings.LayerNorm.bias",
}
LM_HEAD_MAP = {
    "dense.weight": ["lm_head.dense.weight"],
    "dense.bias": ["lm_head.dense.bias"],
    "layer_norm.weight": ["lm_head.layer_norm.weight"],
    "layer_norm.bias": ["lm_head.layer_norm.bias"],
    "weight": ["lm_head.decoder.weight"],
    "bias": ["lm_head.bias", "lm_head.decoder.bias"],
}
# Buffers and bookkeeping that carry no weights.
IGNORED = re.compile(r"(^|\.)(version|_float_tensor)$|^classification_heads\.")
LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")


def load_fairseq(path: str | Path, what: str) -> dict:
    """The unpickled checkpoint dict; a corrupt, truncated or unsafe file is an InputError."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "omegaconf" in str(exc):
            first = "its 'cfg' is a pickled omegaconf DictConfig; re-save it as a plain dict"
        raise InputError(f"{what}: refused to unpickle the checkpoint safely: {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{what}: not a readable PyTorch checkpoint (corrupt or truncated?): {first}"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise InputError(f"{what}: not a fairseq checkpoint (no 'model' state dict)")
    return state


def model_args(state: dict) -> dict:
    """fairseq's model hyper-parameters, from ``cfg['model']`` or the legacy ``args``."""
    cfg = state.get("cfg")
    source = cfg.get("model") if isinstance(cfg, dict) else None
    if source is None:
        source = state.get("args")
    if isinstance(source, argparse.Namespace):
        return vars(source)
    return dict(source) if isinstance(source, dict) else {}


def hf_state_dict(fairseq_state: dict, what: str) -> tuple[dict, dict]:
    """The ``XLMRobertaForMaskedLM`` state dict and the shapes that define its config."""
    weights = {}
    for key, tensor in fairseq_state.items():
        # fairseq < 0.9 named the encoder 'decoder'; later versions rename it when loading.
        key = re.sub(r"^decoder\.", "encoder.", key)
        if IGNORED.search(key):
            continue
        weights[key] = tensor
    out, unknown = {}, []
    for key, tensor in weights.items():
        tensor = tensor.float()
        if key.startswith("encoder.sentence_encoder."):
            name = key[len("encoder.sentence_encoder.") :]
            if name in EMBEDDING_MAP:
                out[EMBEDDING_MAP[name]] = tensor
                continue
            match = LAYER_KEY.match(name)
            if match:
                layer, module, kind = match.groups()
                prefix = f"roberta.encoder.layer.{layer}"
                if module in LAYER_MAP:
                    out[f"{prefix}.{LAYER_MAP[module]}.{kind}"] = tensor
                    continue
            match = re.match(r"^layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", name)
            if match:
                # fairseq < 0.7 kept q, k and v in one projection.
                layer, kind = match.groups()
                prefix = f"roberta.encoder.layer.{layer}.attention.self"
                for part, chunk in zip(
                    ["query", "key", "value"], tensor.chunk(3, dim=0), strict=True
                ):
                    out[f"{prefix}.{part}.{kind}"] = chunk.clone()
                continue
        elif key.startswith("encoder.lm_head."):
            name = key[len("encoder.lm_head.") :]
            if name in LM_HEAD_MAP:
                for target in LM_HEAD_MAP[name]:
                    out[target] = tensor
                continue
        unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InputError(
            f"{what}: weights that an XLM-R (post-norm RoBERTa) encoder does not have: {shown}"
        )
    needed = "roberta.embeddings.word_embeddings.weight"
    if needed not in out or "roberta.embeddings.position_embeddings.weight" not in out:
        raise InputError(f"{what}: no encoder.sentence_encoder embeddings in the checkpoint")
    if "lm_head.decoder.weight" not in out:
        out["lm_head.decoder.weight"] = out[needed]  # tied in fairseq, stored once
    hidden = out[needed].shape[1]
    out["roberta.embeddings.token_type_embeddings.weight"] = torch.zeros(1, hidden)
    layers = {
        int(m.group(1)) for k in out if (m := re.match(r"roberta\.encoder\.layer\.(\d+)\.", k))
    }
    shapes = {
        "vocab_size": out[needed].shape[0],
        "hidden_size": hidden,
        "num_hidden_layers": len(layers),
        "intermediate_size": out["roberta.encoder.layer.0.intermediate.dense.weight"].shape[0]
        if layers
        else 4 * hidden,
        "max_position_embeddings": out["roberta.embeddings.position_embeddings.weight"].shape[0],
    }
    if layers != set(range(len(layers))):
        raise InputError(f"{what}: encoder layers are not numbered 0..{len(layers) - 1}")
    return out, shapes


def check_dictionary(tokenizer, vocab_size: int, what: str) -> None:
    """Embedding rows must be the tokenizer's ids: same size, and the same pieces per dict.txt."""
    if len(tokenizer) != vocab_size:
        raise InputError(
            f"{what}: the checkpoint's vocabulary has {vocab_size} entries, the tokenizer "
            f"{len(tokenizer)}; they must be the same dictionary"
        )
    dict_txt = Path(getattr(tokenizer, "name_or_path", "") or "") / "dict.txt"
    if not dict_txt.is_file():
        return
    pieces = [
        line.split(" ")[0] for line in dict_txt.read_text(encoding="utf-8").splitlines() if line
    ]
    expected = FAIRSEQ_SPECIALS + pieces + ["<mask>"]
    if len(expected) != vocab_size:
        raise InputError(
            f"{dict_txt}: fairseq's dictionary has {len(expected)} entries with specials, "
            f"the checkpoint {vocab_size}"
        )
    found = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    for i, (want, got) in enumerate(zip(expected, found, strict=True)):
        if want != got:
            raise InputError(
                f"{dict_txt}:{i - 3 if 4 <= i < vocab_size - 1 else 0}: fairseq id {i} is "
                f"{want!r} but the tokenizer's is {got!r}"
            )


def convert_checkpoint(path: str | Path, tokenizer, what: str):
    """Load a fairseq ``.pt`` and return the equivalent ``XLMRobertaForMaskedLM`` (float32)."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    state = load_fairseq(path, what)
    args = model_args(state)
    if args.get("encoder_normalize_before"):
        raise InputError(f"{what}: pre-norm encoders (encoder_normalize_before) are not XLM-R")
    heads = args.get("encoder_attention_heads")
    if not heads:
        raise InputError(f"{what}: no encoder_attention_heads in the checkpoint's args or cfg")
    weights, shapes = hf_state_dict(state["model"], what)
    check_dictionary(tokenizer, shapes["vocab_size"], what)
    activation = args.get("activation_fn", "gelu")
    config = XLMRobertaConfig(
        **shapes,
        num_attention_heads=int(heads),
        hidden_act={"gelu": "gelu", "relu": "relu", "gelu_fast": "gelu_new"}.get(
            activation, activation
        ),
        hidden_dropout_prob=float(args.get("dropout", 0.1)),
        attention_probs_dropout_prob=float(args.get("attention_dropout", 0.1)),
        layer_norm_eps=1e-5,  # fairseq's LayerNorm default
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = XLMRobertaForMaskedLM(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise InputError(f"{what}: conversion left weights unset: {sorted(missing)[:5]}")
    model.tie_weights()
    return model.eval()
