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

    def stopping(self):
        return self.notify("STOPPING=1")

    def status(self, text):
        return self.notify("STATUS=%s" % text)

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
