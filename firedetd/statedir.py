"""The state directory (outbox, engine plans, snapshots) and the lock that gives it to one daemon at a time.

A second `firedetd run` on the service's state directory (a camera test run as the service user, say) would
share its outbox: it would see the service's sinks as "no longer configured" and could drop or deliver the
service's pending events. So the directory is locked (`flock` on `firedetd.lock`, released by the kernel when
the process dies, even by kill -9) and a second instance refuses with exit 2, naming the holder.
"""

import errno
import os

from .errors import ConfigError

LOCK_NAME = "firedetd.lock"


class StateDirLock(object):
    """An exclusive lock on a state directory; `release()` (or process exit) gives it back."""

    def __init__(self, path, fd):
        self.path = path
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor drops the flock
            self._fd = None


def prepare_state_dir(path, key="state_dir"):
    """Create the directory if needed and check it can be written; ConfigError naming `key` otherwise."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError("%s: %s exists and is not a directory" % (key, path))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError("%s: cannot create %s (%s)" % (key, path, e.strerror or e))
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError("%s: %s is not writable by this user (uid %d)" % (key, path, os.getuid()))


def check_state_dir(path, key="state_dir"):
    """What prepare_state_dir would find, without creating anything (for check-config)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ConfigError("%s: %s exists and is not a directory" % (key, path))
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError("%s: %s is not writable by this user (uid %d)" % (key, path, os.getuid()))
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("%s: cannot create %s: %s is not a writable directory" % (key, path, parent))


def lock_state_dir(path, key="state_dir"):
    """Take the state directory for this process, or raise ConfigError naming the process that holds it."""
    import fcntl

    prepare_state_dir(path, key)
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError("%s: cannot open the lock file %s (%s)" % (key, lock_path, e.strerror or e))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_holder(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ConfigError("%s: %s is in use by another firedetd (%s); its outbox belongs to that process. Stop it "
                              "first, or give this run its own --state-dir" % (key, path, holder or "pid unknown"))
        raise ConfigError("%s: cannot lock %s (%s)" % (key, lock_path, e.strerror or e))
    _write_holder(fd)
    return StateDirLock(path, fd)


def _read_holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 512).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _write_holder(fd):
    import sys

    text = "pid %d: %s\n" % (os.getpid(), " ".join(os.path.basename(a) if i == 0 else a
                                                    for i, a in enumerate(sys.argv))[:300])
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass   # the lock holds without the note


def spill_path(state_dir):
    """Where alerts the state disk refused at stop wait for the next start: a file in /dev/shm (memory: a full
    state disk does not stop it, and it survives a service restart, not a reboot), named after the state dir."""
    import hashlib
    import tempfile

    name = "firedetd-spill-%s.jsonl" % hashlib.sha256(os.path.abspath(state_dir).encode("utf-8")).hexdigest()[:12]
    folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(folder, name)
