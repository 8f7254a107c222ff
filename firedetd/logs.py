"""How firedetd's log lines look on stderr: timestamped on a terminal or in a file; under systemd, without a
timestamp and with the syslog priority as a `<N>` prefix (sd-daemon(3)), which the journal reads as the
line's priority and stamps with its own time.
"""

import logging
import os

# sd-daemon(3): the kernel-style prefix journald's stream reader turns into PRIORITY=
JOURNAL_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"


def journal_priority(levelno):
    """The syslog priority (0-7) of a logging level."""
    for threshold, priority in JOURNAL_PRIORITIES:
        if levelno >= threshold:
            return priority
    return DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """`<N>` before every line of a record: journald splits a traceback into one entry per line, and a line
    without the prefix would be logged at the unit's default priority (info) instead of the record's."""

    def __init__(self):
        super(JournalFormatter, self).__init__(JOURNAL_FORMAT)

    def format(self, record):
        prefix = "<%d>" % journal_priority(record.levelno)
        return "\n".join(prefix + line for line in super(JournalFormatter, self).format(record).split("\n"))


def stderr_goes_to_journal(environ, stream):
    """True when `stream` is the journal's stream socket, as systemd.exec(5) says to check: JOURNAL_STREAM holds
    its device:inode. A service whose stderr was redirected elsewhere (`2>file` in ExecStart) still inherits
    JOURNAL_STREAM, so a mismatch means plain lines. Without JOURNAL_STREAM (systemd before 231, or
    StandardError= other than the journal) INVOCATION_ID still says systemd started us, and its journal or
    syslog adds the time."""
    journal_stream = environ.get("JOURNAL_STREAM", "")
    if journal_stream:
        try:
            stat = os.fstat(stream.fileno())
        except (AttributeError, OSError, ValueError):   # a stream without a descriptor (pytest's capture)
            return False
        return journal_stream == "%d:%d" % (stat.st_dev, stat.st_ino)
    return bool(environ.get("INVOCATION_ID"))


def setup_logging(level, debug, environ, stream):
    """Send every logger's lines to `stream`, in the journal's format when it is the journal's."""
    root = logging.getLogger()
    if not root.handlers:   # as basicConfig: a caller (a test) that set up its own handler keeps it, and its level
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JournalFormatter() if stderr_goes_to_journal(environ, stream)
                             else logging.Formatter(PLAIN_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper()))
    # urllib3's debug lines quote each request's path and query, where webhook tokens live; firedetd logs its own
    # requests with the URL redacted
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
