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
    assert set(statistics) == {"resamples", "confidence", "seed", "min_sentences"}
    schema_default("probing")["l2"].append(1.0)
    assert 1.0 not in schema_default("probing.l2")


@pytest.mark.parametrize("key", ["bpc.batch_token", "nothing", "models.tiny"])
def test_an_unknown_key_is_refused(key):
    with pytest.raises(KeyError, match=key):
        schema_default(key)
