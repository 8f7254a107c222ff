"""docs/config.md is generated from firedetd/config.py; this fails when they drift apart."""

import os

from firedetd.configdoc import render_config_doc

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "config.md")


def test_docs_config_md_is_up_to_date():
    with open(DOC) as f:
        assert f.read() == render_config_doc(), "run: firedetd config-doc -o docs/config.md"


def test_every_key_documented_with_a_sentence():
    rows = [line for line in render_config_doc().splitlines() if line.startswith("| `")]
    assert len(rows) > 40
    assert all(line.rstrip(" |").split("|")[-1].strip() for line in rows)


def test_each_documented_default_is_the_value_an_empty_config_gets():
    from firedetd.config import Config
    from firedetd.schema import document

    config = Config()
    checked = 0
    for row in document(Config):
        if "[]" in row["key"] or row["default"] == "(see below)":
            continue  # list items have no instance; sections are checked key by key
        value, parts = config, row["key"].split(".")
        for part in parts[:-1]:
            value = getattr(value, part)
        if value is None:
            continue  # an optional section that is off by default (alerts.mqtt): its class's defaults are shown
        assert row["default"] == getattr(value, parts[-1]), row["key"]
        checked += 1
    assert checked > 40
