"""Every relative link in the README, docs/, benchmarks/ and the model card points at a file that exists in the
checkout, and every docs/ page the systemd unit names exists."""

import glob
import os
import re

import pytest
from support.daemon import REPO

PAGES = sorted([os.path.join(REPO, "README.md"), os.path.join(REPO, "engines", "MODEL_CARD.md")]
               + glob.glob(os.path.join(REPO, "docs", "*.md")) + glob.glob(os.path.join(REPO, "benchmarks", "*.md")))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(page):
    with open(page, encoding="utf-8") as f:
        text = f.read()
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        yield target.split("#")[0]


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, REPO) for p in PAGES])
def test_every_relative_link_of_a_page_resolves(page):
    missing = [t for t in relative_links(page) if not os.path.exists(os.path.join(os.path.dirname(page), t))]
    assert not missing, "%s links to missing files: %s" % (os.path.relpath(page, REPO), missing)


def test_the_docs_the_systemd_unit_names_exist():
    with open(os.path.join(REPO, "systemd", "firedetd.service")) as f:
        named = re.findall(r"docs/[\w.-]+\.md", f.read())
    assert named and all(os.path.isfile(os.path.join(REPO, n)) for n in named)
