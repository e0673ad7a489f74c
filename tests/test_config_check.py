"""The schema's defaults, read for tests and benchmarks (the commands take every setting)."""

from __future__ import annotations

import pytest
import yaml

from mlm_dynamics.config_check import SCHEMA, schema_default


def test_a_key_gives_the_schema_default():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    bpc = schema["properties"]["bpc"]["properties"]
    assert schema_default("bpc.batch_tokens") == bpc["batch_tokens"]["default"]
    assert schema_default("analysis.views") == ["last", "best"]
    assert schema_default("treebanks.max_sentences.dev") == 300


def test_a_section_gives_the_defaults_of_its_keys_as_copies():
    statistics = schema_default("statistics")
    assert set(statistics) == {
        "resamples",
        "confidence",
        "seed",
        "min_sentences",
        "fdr",
        "verdict_resamples",
    }
    schema_default("probing")["l2"].append(1.0)
    assert 1.0 not in schema_default("probing.l2")


@pytest.mark.parametrize("key", ["bpc.batch_token", "nothing", "models.tiny"])
def test_an_unknown_key_is_refused(key):
    with pytest.raises(KeyError, match=key):
        schema_default(key)


# What JSON Schema reads in a schema node; any other key is a mistake in the YAML (an unquoted
# comma in a flow mapping splits a description into a cut sentence and a stray key).
SCHEMA_KEYWORDS = {
    "$schema", "$ref", "title", "description", "type", "default", "enum", "const", "items",
    "properties", "additionalProperties", "required", "anyOf", "oneOf", "allOf", "minItems",
    "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
    "pattern", "definitions", "minProperties",
}  # fmt: skip


def schema_nodes(node, path=""):
    """Every schema node (property, item, definition) with its path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{path}[{key}]")
    for key in ("anyOf", "oneOf"):
        for i, child in enumerate(node.get(key, [])):
            yield from schema_nodes(child, f"{path}[{key}{i}]")
    for name, child in node.get("definitions", {}).items():
        yield from schema_nodes(child, f"#{name}")


def test_every_description_reads_as_whole_sentences():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    for path, node in schema_nodes(schema):
        assert set(node) <= SCHEMA_KEYWORDS, (path, set(node) - SCHEMA_KEYWORDS)
        description = node.get("description")
        if description is not None:
            assert description.rstrip().endswith((".", ")")), (path, description)
