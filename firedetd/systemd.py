"""The sd_notify protocol (READY, WATCHDOG, STOPPING, STATUS) over the socket systemd names.

A handful of lines over a datagram socket; no libsystemd needed, so it also works on the Nano's
Python 3.6 and in containers. Without NOTIFY_SOCKET every call is a no-op.
"""

import logging
import socket

log = logging.getLogger(__name__)


class Notifier(object):
    def __init__(self, socket_path=None, watchdog_usec=0):
        self.socket_path = socket_path or ""
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else 0.0
        self._last_ping_s = None  # time.monotonic() of the last WATCHDOG=1 sent
        self._sock = None
        if self.socket_path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @classmethod
    def from_environ(cls, environ):
        """Read NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them for Type=notify services."""
        try:
            usec = int(environ.get("WATCHDOG_USEC", "0") or 0)
        except ValueError:
            usec = 0
        return cls(environ.get("NOTIFY_SOCKET", ""), usec)

    @property
    def enabled(self):
        return self._sock is not None

    def notify(self, message):
        """Send one notification; failures are logged, never raised (the daemon keeps running)."""
        if self._sock is None:
            return False
        address = self.socket_path
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        try:
            self._sock.sendto(message.encode("utf-8"), address)
            return True
        except OSError as e:
            log.debug("sd_notify %r failed: %s", message, e)
            return False

    def ready(self, status=""):
        return self.notify("READY=1" + ("\nSTATUS=%s" % status if status else ""))

    def watchdog(self):
        return self.notify("WATCHDOG=1")

    @property
    def watchdog_interval_s(self) -> float:
        """Seconds between pings: half of the unit's WatchdogSec (WATCHDOG_USEC), as sd_watchdog_enabled(3)
        recommends, so one late ping never trips it; 0.0 when the unit has no watchdog."""
        return self.watchdog_s / 2.0

    def watchdog_if_due(self, now_s: float) -> bool:
        """Send WATCHDOG=1 if watchdog_interval_s has passed since the last one sent (`now_s`: time.monotonic());
        True when it sent one. Without a watchdog in the unit nothing is sent: systemd would ignore it."""
        if self._sock is None or not self.watchdog_s:
            return False
        if self._last_ping_s is not None and now_s - self._last_ping_s < self.watchdog_interval_s:
            return False
        if not self.watchdog():
            return False  # not counted as sent: the next loop tries again
        self._last_ping_s = now_s
        return True

    def stopping(self):
        return self.notify("STOPPING=1")

    def status(self, text):
        return self.notify("STATUS=%s" % text)

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
