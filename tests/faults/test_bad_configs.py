"""Every file in tests/data/bad-configs/ through the command line: `firedetd check-config -c FILE` and
`firedetd run -c FILE` each exit 2 with exactly one line on stderr that names the file and the key path (or,
for YAML syntax errors, file:line:column), and no traceback.

Each file states the message it must produce in its first line: `# expect: <text the error line contains>`.
The whole corpus goes through `firedetd.cli.main` in this process (what `python -m firedetd` calls); a few
files also go through a real `python -m firedetd` process, for the exit status and stderr as a shell sees them.
"""

import glob
import os
import subprocess
import sys

import pytest
from support.daemon import REPO

from firedetd import cli

CORPUS = os.path.join(REPO, "tests", "data", "bad-configs")
FILES = sorted(glob.glob(os.path.join(CORPUS, "*.yaml")))
UNSET_VARIABLE = "FIREDETD_TEST_SECRET_NEVER_SET"  # webhook-secret-variable-unset.yaml names it


def expected_message(path):
    with open(path, "rb") as f:
        first = f.readline().decode("ascii").strip()
    assert first.startswith("# expect: "), "%s: the first line must be '# expect: <message>'" % path
    return first[len("# expect: "):]


def assert_one_line_error(path, code, out, err):
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert lines[0].startswith("firedetd: error: ") and os.path.basename(path) in lines[0]
    assert expected_message(path) in lines[0]
    assert out == ""


def test_the_corpus_covers_every_kind_of_mistake_the_issue_lists():
    names = [os.path.basename(p) for p in FILES]
    assert len(names) >= 20
    for name in ("queue-size-not-an-integer", "cameras-not-a-list", "unknown-top-level-key", "unknown-threshold-key",
                 "missing-model-spec", "unsupported-uri-scheme", "threshold-above-one", "duplicate-camera-names"):
        assert name + ".yaml" in names
    assert len([n for n in names if n.startswith("yaml-") and "boolean" not in n]) >= 3


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p) for p in FILES])
def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(path, command, capsys, monkeypatch):
    monkeypatch.delenv(UNSET_VARIABLE, raising=False)
    code = cli.main([command, "-c", path])
    captured = capsys.readouterr()
    assert_one_line_error(path, code, captured.out, captured.err)


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("name", ["unsupported-uri-scheme.yaml", "yaml-bad-indentation.yaml", "not-utf8.yaml"])
def test_the_real_process_exits_2_with_one_line_on_stderr(name, command):
    path = os.path.join(CORPUS, name)
    env = dict(os.environ, PYTHONPATH=REPO, LANG="C", LC_ALL="C")  # a bare systemd unit's locale
    proc = subprocess.Popen([sys.executable, "-m", "firedetd", command, "-c", path], cwd=CORPUS, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert_one_line_error(path, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


GOOD = sorted(glob.glob(os.path.join(REPO, "tests", "data", "good-configs", "*.yaml")))


@pytest.mark.parametrize("path", GOOD, ids=[os.path.basename(p) for p in GOOD])
def test_a_good_but_unusual_config_passes_check_config(path, capsys):
    code = cli.main(["check-config", "-c", path])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "error" not in captured.err
