"""systemd/firedetd.service against systemd/directives.tsv: every directive and system-call group it uses exists in
systemd 237 (Ubuntu 18.04, JetPack 4.6), or is a fence that 237 skips with a warning and the daemon does not need."""

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(REPO, "systemd", "firedetd.service")
TABLE = os.path.join(REPO, "systemd", "directives.tsv")
UBUNTU_1804_SYSTEMD = 237
SUPPORTED = "supported"
IGNORED = "ignored: hardening only"
ABSENT = "absent"

# Deciding that a directive may be missing on systemd 237 is a decision about the Nano's safety: adding one to the
# unit that 237 lacks must change this list too, not only the table.
IGNORED_ON_237 = {"PrivateMounts", "ProtectHostname", "RestrictSUIDSGID", "ProtectKernelLogs", "ProtectClock",
                  "ProtectProc"}


def unit_settings(path=UNIT):
    """[(section, key, value)] of a unit file, in file order (comments and blank lines dropped)."""
    settings, section = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            header = re.match(r"^\[(\w+)\]$", line)
            if header:
                section = header.group(1)
                continue
            key, _, value = line.partition("=")
            settings.append((section, key.strip(), value.strip()))
    return settings


def read_table(path=TABLE):
    """{(kind, name): row} of systemd/directives.tsv; rows are dicts of its columns."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")]
    columns = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(columns, line.split("\t")))
        assert len(row) == len(columns) and all(row.values()), "incomplete row in %s: %r" % (path, line)
        assert (row["kind"], row["name"]) not in rows, "duplicate row: %r" % line
        rows[(row["kind"], row["name"])] = row
    return rows


def filter_groups(settings):
    """The @groups named by the unit's SystemCallFilter= lines."""
    return {word.lstrip("~") for _, key, value in settings if key == "SystemCallFilter"
            for word in value.split() if word.lstrip("~").startswith("@")}


def problems_on_237(settings, table):
    """Why a unit with these settings would not run as meant on systemd 237; empty when it would."""
    problems = []
    for key in sorted({key for _, key, _ in settings}):
        row = table.get(("directive", key))
        if row is None:
            problems.append("%s= is not in systemd/directives.tsv" % key)
        elif int(row["known_in"]) > UBUNTU_1804_SYSTEMD and key not in IGNORED_ON_237:
            problems.append("%s= needs systemd %s" % (key, row["known_in"]))
    for _, key, value in settings:
        # An allow-list is what broke 237: a group it does not know is dropped and the list shrinks to @default.
        if key == "SystemCallFilter" and not value.startswith("~"):
            problems.append("SystemCallFilter=%s is an allow-list" % value)
    for group in sorted(filter_groups(settings)):
        row = table.get(("syscall-group", group))
        if row is None or row["on_237"] != SUPPORTED:
            problems.append("%s is not a group systemd 237 has" % group)
    return problems


@pytest.fixture(scope="module")
def table():
    return read_table()


@pytest.fixture(scope="module")
def settings():
    return unit_settings()


def test_the_table_marks_exactly_the_rows_newer_than_237_as_not_supported(table):
    for row in table.values():
        newer = int(row["known_in"]) > UBUNTU_1804_SYSTEMD
        assert row["on_237"] in (SUPPORTED, IGNORED, ABSENT), row
        assert (row["on_237"] != SUPPORTED) == newer, row
        assert row["on_237"] != IGNORED or row["kind"] == "directive", row  # an unknown group is never harmless
    assert {name for (kind, name), row in table.items() if row["on_237"] == IGNORED} == IGNORED_ON_237


def test_every_row_names_its_source(table):
    # a version without a NEWS entry, pull request, issue, commit or manual page behind it is a guess
    cited = re.compile(r"NEWS v\d+|PR #\d+|issue |commit [0-9a-f]{8}|systemd\.\w+\(5\)|endlessm tree")
    assert [row["name"] for row in table.values() if not cited.search(row["source"])] == []


def test_the_unit_runs_on_systemd_237_with_only_the_listed_fences_missing(settings, table):
    assert problems_on_237(settings, table) == []
    used = {key for _, key, _ in settings}
    assert {key for key in used if table[("directive", key)]["on_237"] == IGNORED} == IGNORED_ON_237
    assert any(key == "SystemCallFilter" for _, key, _ in settings)  # the filter stays, as a deny-list


def test_the_check_refuses_the_allow_list_that_broke_systemd_237(tmp_path, table):
    unit = tmp_path / "old.service"
    unit.write_text("[Unit]\nDescription=x\n# ProtectClock=yes\n[Service]\n; comment\n"
                    "SystemCallFilter=@system-service\nSystemCallFilter=~@mount @swap\nProtectClock=yes\n"
                    "PrivateIPC=yes\n\n[Install]\nWantedBy=multi-user.target\n")
    settings = unit_settings(str(unit))
    assert [(s, k) for s, k, _ in settings] == [
        ("Unit", "Description"), ("Service", "SystemCallFilter"), ("Service", "SystemCallFilter"),
        ("Service", "ProtectClock"), ("Service", "PrivateIPC"), ("Install", "WantedBy")]
    assert problems_on_237(settings, table) == [
        "PrivateIPC= is not in systemd/directives.tsv",
        "SystemCallFilter=@system-service is an allow-list",
        "@system-service is not a group systemd 237 has"]
