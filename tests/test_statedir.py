"""firedetd/statedir.py: one daemon per state directory, a real second process refused (exit 2, naming the
holder), the lock freed by a real kill -9; unusable directories named."""

import os
import signal
import subprocess
import sys
import time

import pytest
from support.daemon import REPO

from firedetd.errors import ConfigError
from firedetd.statedir import check_state_dir, lock_state_dir

HOLD = ("import sys, time\nfrom firedetd.statedir import lock_state_dir\nlock_state_dir(sys.argv[1])\n"
        "print('locked', flush=True)\ntime.sleep(60)\n")


def hold_in_another_process(path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO, stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"locked"
    return process


def test_a_second_run_on_a_held_state_dir_exits_2_naming_the_holder(tmp_path):
    holder = hold_in_another_process(tmp_path)
    try:
        result = subprocess.run([sys.executable, "-m", "firedetd", "run", "--state-dir", str(tmp_path),
                                 "--max-frames", "5"], cwd=REPO, stderr=subprocess.PIPE, timeout=60)
        assert result.returncode == 2
        error = result.stderr.decode().strip().splitlines()[-1]
        assert "state_dir: %s is in use by another firedetd (pid %d" % (tmp_path, holder.pid) in error
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_freed_when_its_holder_is_killed(tmp_path):
    holder = hold_in_another_process(tmp_path)
    with pytest.raises(ConfigError, match="in use by another firedetd"):
        lock_state_dir(str(tmp_path))
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 5
    while True:
        try:
            lock = lock_state_dir(str(tmp_path))
            break
        except ConfigError:
            assert time.time() < deadline
            time.sleep(0.05)
    assert "pid %d" % os.getpid() in (tmp_path / "firedetd.lock").read_text()
    lock.release()


def test_unusable_state_dirs_are_named(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="state_dir: .*file exists and is not a directory"):
        lock_state_dir(str(a_file))
    with pytest.raises(ConfigError, match="cannot create"):
        check_state_dir(str(a_file / "sub"))
    if os.getuid() != 0:   # root may write anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not writable"):
            check_state_dir(str(locked))
    check_state_dir(str(tmp_path / "new" / "deeper"))   # creatable: fine, and nothing was created
    assert not (tmp_path / "new").exists()
