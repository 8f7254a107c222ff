"""firedetd/logs.py: under systemd (stderr is the journal's stream) lines carry the `<N>` priority and no timestamp;
elsewhere they keep theirs. The daemon runs as a real subprocess whose stderr is a file that JOURNAL_STREAM names,
as systemd names the journal's socket (no journald is needed to check what is written to it)."""

import logging
import os
import re
import subprocess
import sys

from support.daemon import REPO, free_port

from firedetd.logs import JournalFormatter, journal_priority, stderr_goes_to_journal

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def device_and_inode(path):
    stat = os.stat(str(path))
    return "%d:%d" % (stat.st_dev, stat.st_ino)


def environ_outside_systemd(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    env.update(extra)
    return env


def run_with_stderr_in(path, argv, env, timeout=60):
    with open(str(path), "ab") as err:
        return subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, timeout=timeout)


def test_the_daemon_under_systemd_writes_priority_prefixed_lines_without_timestamps(tmp_path):
    stderr_path = tmp_path / "journal-stream"
    stderr_path.write_bytes(b"")
    env = environ_outside_systemd(JOURNAL_STREAM=device_and_inode(stderr_path), PYTHONUNBUFFERED="1")
    dead_camera = "rtsp://127.0.0.1:%d/stream" % free_port()   # nothing listens: the camera fails, a warning
    result = run_with_stderr_in(stderr_path, [
        sys.executable, "-m", "firedetd", "run", "--source", dead_camera, "--duration", "3",
        "--metrics-addr", "127.0.0.1:%d" % free_port(), "--state-dir", str(tmp_path / "state")], env)
    lines = stderr_path.read_text().splitlines()
    assert result.returncode == 0, lines
    firedetd_lines = [line for line in lines if " firedetd" in line]   # GStreamer may print its own lines
    assert firedetd_lines and all(re.match(r"<[0-7]>", line) for line in firedetd_lines), lines
    assert not any(TIMESTAMP.search(line) for line in firedetd_lines), lines
    warnings = [line for line in firedetd_lines if line.startswith("<4>")]
    assert len(warnings) == 1 and "cam0: source failed" in warnings[0], lines
    assert any(line.startswith("<6>INFO firedetd.daemon: firedetd running") for line in firedetd_lines)


def test_stderr_redirected_away_from_the_journal_keeps_timestamps_and_no_prefix(tmp_path):
    stderr_path, elsewhere = tmp_path / "stderr.log", tmp_path / "journal-stream"
    stderr_path.write_bytes(b"")
    elsewhere.write_bytes(b"")
    script = "import logging; from firedetd.cli import setup_logging; setup_logging('info'); " \
             "logging.getLogger('firedetd.test').warning('camera gone')"
    # systemd sets both, and a `2>file` in ExecStart keeps them: the device:inode is what tells
    env = environ_outside_systemd(JOURNAL_STREAM=device_and_inode(elsewhere), INVOCATION_ID="0123abcd")
    assert run_with_stderr_in(stderr_path, [sys.executable, "-c", script], env).returncode == 0
    line = stderr_path.read_text().strip()
    assert TIMESTAMP.match(line) and "WARNING firedetd.test: camera gone" in line and "<4>" not in line


def test_invocation_id_without_journal_stream_means_systemd_formats_the_time(tmp_path):
    with open(str(tmp_path / "err"), "w") as stream:
        assert stderr_goes_to_journal({"INVOCATION_ID": "0123abcd"}, stream)
        assert not stderr_goes_to_journal({}, stream)
        assert stderr_goes_to_journal({"JOURNAL_STREAM": device_and_inode(tmp_path / "err")}, stream)


def test_every_line_of_a_traceback_carries_the_records_priority():
    try:
        raise ValueError("engine gone")
    except ValueError:
        record = logging.LogRecord("firedetd.runner", logging.ERROR, __file__, 1, "inference failed", None,
                                   sys.exc_info())
    lines = JournalFormatter().format(record).split("\n")
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[0] == "<3>ERROR firedetd.runner: inference failed" and lines[-1] == "<3>ValueError: engine gone"


def test_logging_levels_map_to_the_syslog_priorities_journalctl_shows():
    assert [journal_priority(level) for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO,
                                                  logging.DEBUG, 5)] == [2, 3, 4, 6, 7, 7]
