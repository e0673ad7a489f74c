"""The config, checked before any job runs, each mistake one line naming its file and line or key.

Two layers sit beside the JSON schema (``workflow/schemas/config.schema.yaml``, which owns types
and defaults):

- the YAML files themselves, read strictly: a syntax error or a key given twice (which YAML
  loaders silently resolve to the last value) names the file and line;
- what a schema cannot say: that paths exist, that names fit in file names and the workflow's
  wildcards, that a ``local`` model's path gives each step its own directory.

Messages start with ``config: KEY:``; the workflow prints them as ``error: config: KEY: ...``.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
from pathlib import Path

import yaml

from mlm_dynamics import layout
from mlm_dynamics.errors import InputError
from mlm_dynamics.sources import runs

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

# Names that end up in file names and wildcards: (section, pattern, what breaks, what is allowed).
# Language codes fill results/treebanks/{lang}.json.gz and the {lang} wildcard, which holds no
# dot; model names are directory names (results/activations/{model}/...).
NAMES = [
    (
        "languages",
        re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*"),
        "language code {!r} cannot be used in file names and wildcards",
        "letters, digits, '_' and '-' only, e.g. fr_ca",
    ),
    (
        "models",
        re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*"),
        "model name {!r} cannot be a directory name",
        "letters, digits, '_', '.', '+' and '-' only",
    ),
]


# ---------------------------------------------------------------- YAML files


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping key given twice."""


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    first_line: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:  # `<<: *base`: its keys may be overridden here
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise InputError(
                f"{loader.name}:{line}: duplicate key {key!r} (first given at line "
                f"{first_line[key]}; YAML would silently keep the last)"
            )
        first_line[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | os.PathLike) -> object:
    """A YAML (or JSON) config file; syntax errors and duplicate keys name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expanded_size(node, path)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = " ".join(part for part in (exc.problem, exc.context) if part)
        raise InputError(f"{path}{line}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: YAML syntax error: {exc}") from None
    finally:
        loader.dispose()


# A config holds a few thousand values; aliases that expand to more are a mistake (or an "alias
# bomb": nested aliases grow exponentially and would hang every later step that walks them).
MAX_EXPANDED_NODES = 1_000_000


def check_expanded_size(root: yaml.Node, path) -> None:
    """Refuse a document whose aliases expand to more than MAX_EXPANDED_NODES values, counted on
    the composed graph (an alias is the node it names, so this costs one visit per node)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a recursive alias counts once (PyYAML refuses it later)
        children = node.value if isinstance(node.value, list) else []
        total = 1
        for child in children:
            total += sum(size(part) for part in child) if isinstance(child, tuple) else size(child)
        sizes[id(node)] = min(total, MAX_EXPANDED_NODES + 1)
        return sizes[id(node)]

    if size(root) > MAX_EXPANDED_NODES:
        node = root  # name the smallest node that is too big on its own
        while True:
            children = [part for child in node.value if isinstance(node.value, list)
                        for part in (child if isinstance(child, tuple) else (child,))]  # fmt: skip
            bigger = [child for child in children if sizes[id(child)] > MAX_EXPANDED_NODES]
            if not bigger:
                break
            node = bigger[0]
        line = node.start_mark.line + 1
        raise InputError(
            f"{path}:{line}: its aliases expand to more than {MAX_EXPANDED_NODES:,} values (nested "
            "aliases, each repeating the one before: a config holds a few thousand)"
        )


def check_config_files(paths: list[str | os.PathLike]) -> None:
    """Read every config file strictly; each must be a mapping of keys."""
    for path in paths:
        data = load_yaml(path)
        if data is not None and not isinstance(data, dict):
            raise InputError(
                f"{path}:1: a config file is a mapping of keys, not a {type(data).__name__}"
            )


# ---------------------------------------------------------------- the schema's defaults


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def schema_default(key: str):
    """The schema's default of a dotted config key (``"bpc.batch_tokens"``); of a section
    (``"pretrain"``), the defaults of its keys as a dict.

    For tests and benchmarks: the commands and library functions take every setting explicitly
    (the rules pass the config's), so the schema is the one place a default is written.
    """
    node = _schema()
    for part in key.split("."):
        if part not in node.get("properties", {}):
            raise KeyError(f"{key}: not a key of {SCHEMA.name}")
        node = node["properties"][part]
    return _defaults(node, key)


def _defaults(node: dict, key: str):
    if "properties" in node:
        return {
            name: _defaults(child, f"{key}.{name}") for name, child in node["properties"].items()
        }
    if "default" not in node:
        raise KeyError(f"{key}: {SCHEMA.name} gives it no default")
    return copy.deepcopy(node["default"])


# ---------------------------------------------------------------- what the schema cannot say


def validated(config: dict) -> dict:
    """The config as every job sees it, the one loader of the Snakefile and ``watch``: the
    schema's defaults filled in (in place), its types checked, then ``check_config``; the first
    mistake raises one line naming the key."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    check_finite(config)  # a schema's bounds compare NaN as neither below nor above
    try:
        validate(config, str(SCHEMA), set_default=True)
    except WorkflowError:
        raise schema_error(config) from None
    check_config(config)
    return config


def check_finite(value, key: str = "") -> None:
    """Every number of the config is finite: NaN passes any range check, and no setting means
    infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        spelled = ".nan" if math.isnan(value) else f"{'-' if value < 0 else ''}.inf"
        raise config_error(key or "(top level)", f"{spelled} is not a finite number")
    if isinstance(value, dict):
        for name, item in value.items():
            check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(item, f"{key}[{i}]")


def schema_error(config: dict) -> InputError:
    """The first schema violation as one line naming the key (Snakemake's own message prints
    the whole schema)."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    errors = jsonschema.Draft202012Validator(schema).iter_errors(config)
    error = jsonschema.exceptions.best_match(errors)
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    return config_error(key, error.message)


def config_error(key: str, message: str) -> InputError:
    return InputError(f"config: {key}: {message}")


def check_names(config: dict) -> None:
    for section, pattern, problem, allowed in NAMES:
        for name in config[section]:
            if not pattern.fullmatch(str(name)):
                raise config_error(f"{section}.{name}", f"{problem.format(name)} ({allowed})")


def check_languages(config: dict) -> None:
    languages = config["languages"]
    for i, lang in enumerate(config["transfer_languages"]):
        if lang not in languages:
            raise config_error(
                f"transfer_languages[{i}]", f"unknown language {lang!r} (not under 'languages')"
            )
        if "treebank" not in languages[lang]:
            raise config_error(
                f"transfer_languages[{i}]",
                f"language {lang!r} has no 'treebank' under languages.{lang}",
            )
    release = config["ud_release"]
    for lang, spec in languages.items():
        path = spec.get("treebank")
        if path:
            inside = ud_release_folder(config, path)
            if release["url"] and inside and inside not in release["treebanks"]:
                raise config_error(
                    f"languages.{lang}.treebank",
                    f"{inside} is in ud_release.directory but not in ud_release.treebanks",
                )
            fetched = inside in release["treebanks"]
            if not fetched and not os.path.isdir(path):
                raise config_error(f"languages.{lang}.treebank", f"no such directory {path}")
        text = spec.get("heldout_text")
        if text and not os.path.isfile(text):
            raise config_error(f"languages.{lang}.heldout_text", f"no such file {text}")


def ud_release_folder(config: dict, path: str) -> str | None:
    """The UD_<Name> folder of ``path`` when it lies in the UD release directory, else None."""
    directory = os.path.normpath(config["ud_release"]["directory"])
    relative = os.path.relpath(os.path.normpath(path), directory)
    if relative.startswith(os.pardir) or relative == os.curdir:
        return None
    return relative.split(os.sep)[0]


NEEDED_KEYS = {"hub": ["repo"], "fairseq": ["url", "tokenizer"]}

# The done marker of a ``local`` model's step directory written in place: the writer creates this
# (empty) file last, and with ``models.<name>.complete: marker`` only directories that hold it are
# read (discovery, sources.discover.discover_steps, skips the others). With ``complete: rename``
# (the default) the writer fills a directory under a name the glob does not match and renames it
# into place, as mlm_dynamics.atomic.atomic_dir does, so every matching directory is complete.
CHECKPOINT_DONE = "checkpoint.done"


def check_models(config: dict) -> None:
    for i, text in enumerate(config["pretrain"]["texts"]):
        if not os.path.isfile(text):
            raise config_error(f"pretrain.texts[{i}]", f"no such file {text}")
    for name, spec in config["models"].items():
        key = f"models.{name}"
        source = spec["source"]
        if source == "embedded" and not config["pretrain"]["texts"]:
            raise config_error(key, "an embedded model needs pretrain.texts")
        if spec["steps"] == "discover" and not spec.get("glob"):
            raise config_error(f"{key}.steps", f"'discover' needs {key}.glob")
        for needed in NEEDED_KEYS.get(source, []):
            if not spec.get(needed):
                raise config_error(f"{key}.{needed}", f"needed by source {source!r}")
        runs.check_seed_templates(name, spec)
    for run, spec in runs.expand(config["models"]).items():
        if spec["source"] == "local":
            check_local_run(run, spec)
        if spec["source"] == "fairseq" and "://" not in spec["url"] and spec["steps"] != "discover":
            for step in spec["steps"]:
                path = runs.locate(spec["url"], step, f"models.{spec['model']}.url")
                if not os.path.isfile(path):
                    where = f"{of_seed(spec)}step {step}: no such file {path}"
                    raise config_error(f"models.{spec['model']}.url", where)


def of_seed(spec: dict) -> str:
    """``seed N, `` for a run of a model with seeds (error messages name the seed), else ''."""
    return "" if spec["seed"] is None else f"seed {spec['seed']}, "


def check_local_run(run: str, spec: dict) -> None:
    key = f"models.{spec['model']}"
    if not (spec.get("path") or spec.get("glob")):
        raise config_error(key, "source 'local' needs 'path' or 'glob'")
    tokenizer = spec.get("tokenizer")
    if tokenizer and not os.path.isdir(tokenizer):
        raise config_error(f"{key}.tokenizer", f"{of_seed(spec)}no such directory {tokenizer}")
    if spec["steps"] == "discover":
        return
    if spec.get("path"):
        if "{step" not in spec["path"] and len(spec["steps"]) > 1:
            raise config_error(
                f"{key}.path",
                f"{spec['path']!r} has no {{step}}, so all {len(spec['steps'])} steps would "
                "read the same checkpoint",
            )
    for step in spec["steps"]:
        path = layout.checkpoint_dir(run, spec, step)
        if not os.path.isdir(path):
            where = "path" if spec.get("path") else "glob"
            raise config_error(
                f"{key}.{where}", f"{of_seed(spec)}step {step}: no checkpoint directory {path}"
            )
        if spec.get("complete") == "marker" and not os.path.isfile(f"{path}/{CHECKPOINT_DONE}"):
            raise config_error(
                f"{key}.complete",
                f"{of_seed(spec)}step {step}: {path} has no {CHECKPOINT_DONE} "
                "(still being written?)",
            )


def check_tasks(config: dict) -> None:
    xnli = config["xnli"]
    if xnli["enabled"] and xnli["data"] == "hub" and not xnli["hub_revision"]:
        raise config_error(
            "xnli.hub_revision", "'hub' data needs a pinned revision of facebook/xnli"
        )
    if xnli["enabled"] and xnli["data"] and xnli["data"] != "hub":
        if not os.path.isdir(xnli["data"]):
            raise config_error("xnli.data", f"no such directory {xnli['data']}")
    if config["simalign"]["enabled"]:
        for lang, files in config["simalign"]["pairs"].items():
            for what, path in files.items():
                if isinstance(path, str) and not os.path.isfile(path):
                    raise config_error(f"simalign.pairs.{lang}.{what}", f"no such file {path}")


def check_probing_tasks(config: dict) -> None:
    """probing.tasks name registered tasks (once each); probing.controls tasks with a control."""
    from mlm_dynamics.probing import registry

    seen = set()
    for i, name in enumerate(config["probing"]["tasks"]):
        if name not in registry.TASKS:
            known = ", ".join(registry.TASKS)
            raise config_error(
                f"probing.tasks[{i}]", f"{name!r} is not a probing task (known: {known})"
            )
        if name in seen:
            raise config_error(f"probing.tasks[{i}]", f"{name!r} is given twice")
        seen.add(name)
    controlled = [name for name, task in registry.TASKS.items() if task.has_control]
    for i, name in enumerate(config["probing"]["controls"]):
        if name not in controlled:
            what = "has no control task" if name in registry.TASKS else "is not a probing task"
            with_one = ", ".join(controlled)
            raise config_error(
                f"probing.controls[{i}]", f"{name!r} {what} (tasks with one: {with_one})"
            )


def check_statistics(config: dict) -> None:
    settings = config["statistics"]
    if settings["verdict_resamples"] < settings["resamples"]:
        raise config_error(
            "statistics.verdict_resamples",
            f"{settings['verdict_resamples']} is fewer than statistics.resamples "
            f"({settings['resamples']}): a verdict reads at least the intervals' resamples",
        )


def check_views(config: dict) -> None:
    """A fixed layer view exists in every model (layers 0, the embeddings, to ``layers``)."""
    for i, view in enumerate(config["analysis"]["views"]):
        layer = int(view) if isinstance(view, int) or str(view).isdigit() else None
        for name, spec in config["models"].items():
            if layer is not None and layer > spec["layers"]:
                raise config_error(
                    f"analysis.views[{i}]",
                    f"layer {layer} is deeper than models.{name} (layers 0-{spec['layers']})",
                )


def check_config(config: dict) -> None:
    """Everything the schema cannot check, before any job runs; the first mistake raises."""
    check_names(config)
    check_languages(config)
    check_models(config)
    check_views(config)
    check_tasks(config)
    check_probing_tasks(config)
    check_statistics(config)


def main(command: str, argv: list[str]) -> None:
    """``check-config FILE...``: the strict YAML reading of the workflow, for any config file."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"python -m mlm_dynamics {command}",
        description="Read config files strictly: syntax errors and keys given twice, by line.",
    )
    parser.add_argument("files", nargs="+", help="YAML or JSON config files")
    args = parser.parse_args(argv)
    check_config_files(args.files)
    print(f"{len(args.files)} config file(s) read: no syntax error, no key given twice")
