"""The pretraining runs of a model: one per seed of ``models.<name>.seeds``, else the model itself.

A run is what one pretraining procedure produced: a series of checkpoints. Every per-checkpoint
job (fetch, check, extract, probe, score) works on one run x step, and names it by the run's name:
the model's own name for a model without seeds (so its files are where they always were), else
``{model}/seed{seed}`` (``run_name``), one directory level per seed. The analyses read the model:
its one run, or the mean over its seeds with intervals that resample seeds too
(``mlm_dynamics.analysis.seeds``).

A source's templates (hub ``repo`` and ``revision``, fairseq ``url``, ``local`` ``path`` and
``glob``, a ``tokenizer``) may hold these fields (``TEMPLATE_FIELDS``): ``{step}`` (the step as an
integer), ``{step_k}`` (the step in thousands, as MultiBERTs' ``step_20k`` spells it) and
``{seed}``. ``expand`` fills ``{seed}`` in; ``locate`` fills the step.
"""

from __future__ import annotations

import re
import string

from mlm_dynamics.errors import InputError

TEMPLATE_FIELDS = {
    "step": "the step, e.g. 20000",
    "step_k": "the step in thousands, e.g. 20 for step 20000",
    "seed": "the pretraining seed (models.<name>.seeds)",
}
# The keys of a model's spec that are templates of where its checkpoints are.
TEMPLATE_KEYS = ("repo", "revision", "url", "tokenizer", "path", "glob")
SEED_LEVEL = "seed{seed}"
_RUN = re.compile(r"(?P<model>[^/]+)/seed(?P<seed>-?\d+)")


def run_name(model: str, seed: int | None) -> str:
    """The name (and path component) of one run: the model's own name when it has no seeds."""
    return model if seed is None else f"{model}/{SEED_LEVEL.format(seed=seed)}"


def split_run(name: str) -> tuple[str, int | None]:
    """(model, seed) of a run's name; seed None for a model without seeds."""
    match = _RUN.fullmatch(name)
    return (match["model"], int(match["seed"])) if match else (name, None)


def template_fields(template: str, key: str) -> list[str]:
    """The fields of a template, refused in one line naming ``key`` when one is unknown or the
    template is not well formed."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InputError(f"config: {key}: {template!r} is not a template ({exc})") from None
    for name in names:
        if name not in TEMPLATE_FIELDS:
            known = ", ".join("{" + field + "}" for field in TEMPLATE_FIELDS)
            raise InputError(f"config: {key}: unknown field {{{name}}} in {template!r} ({known})")
    return names


def fill(template: str, key: str, **values) -> str:
    """``template`` with ``values`` filled in, every other field left as it is."""
    names = template_fields(template, key)
    return template.format(**{name: "{" + name + "}" for name in names} | values)


def locate(template: str, step: int, key: str) -> str:
    """A template (its seed already filled in) for one step."""
    if "step_k" in template_fields(template, key) and step % 1000:
        raise InputError(f"config: {key}: step {step} is not whole thousands ({{step_k}})")
    return fill(template, key, step=step, step_k=step // 1000)


def model_seeds(spec: dict) -> list[int | None]:
    """A model's pretraining seeds, or [None] for a model without ``seeds``."""
    return list(spec.get("seeds") or [None])


def expand(models: dict) -> dict[str, dict]:
    """Every run of every model, by run name: the model's spec with ``{seed}`` filled into its
    templates and ``model`` (the model's name) and ``seed`` (None without seeds) added."""
    runs = {}
    for model, spec in models.items():
        for seed in model_seeds(spec):
            run = dict(spec, model=model, seed=seed)
            if seed is not None:
                for key in TEMPLATE_KEYS:
                    if isinstance(spec.get(key), str):
                        run[key] = fill(spec[key], f"models.{model}.{key}", seed=seed)
            runs[run_name(model, seed)] = run
    return runs


def check_seed_templates(model: str, spec: dict) -> None:
    """A ``{seed}`` field needs ``seeds``; a model with several seeds needs ``{seed}`` in the
    templates that locate its checkpoints (else every seed would read the same ones)."""
    seeded = [key for key in TEMPLATE_KEYS
              if isinstance(spec.get(key), str)
              and "seed" in template_fields(spec[key], f"models.{model}.{key}")]  # fmt: skip
    if seeded and not spec.get("seeds"):
        raise InputError(
            f"config: models.{model}.{seeded[0]}: {{seed}} in {spec[seeded[0]]!r} but the model "
            f"lists no seeds (models.{model}.seeds)"
        )
    if len(spec.get("seeds") or []) < 2 or spec["source"] == "embedded":
        return
    locating = {"hub": ("repo", "revision"), "fairseq": ("url", "glob"), "local": ("path", "glob")}
    keys = [key for key in locating[spec["source"]] if spec.get(key)]
    if not any(key in seeded for key in keys):
        raise InputError(
            f"config: models.{model}.{keys[0]}: {len(spec['seeds'])} seeds but no {{seed}} in "
            f"{' or '.join(keys)}, so every seed would read the same checkpoints"
        )
