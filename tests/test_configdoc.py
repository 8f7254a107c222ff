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
