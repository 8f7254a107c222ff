"""A small webhook receiver for demos and tests: `firedetd demo-receiver --port 8765 [--secret-env VAR]`.

It accepts the webhook sink's POSTs (see firedetd/alerts/webhook.py for the format), checks the HMAC signature
and timestamp when given a secret (401 otherwise), marks repeats of an Idempotency-Key as duplicates, and
prints one line per alert. Tests drive it in-process (`AlertReceiver`) and make it fail on purpose:
`fail_next(n, status)`, `drop_next(n)` (close the connection without an answer) and `delay_s`.
"""

import argparse
import base64
import binascii
import collections
import http.server
import json
import logging
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .alerts.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from .clock import wall_ns
from .errors import EXIT_OK, ConfigError, FiredetdError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ReceivedAlert:
    """One accepted POST: the parsed JSON body, the raw bytes, lower-cased headers, and whether its
    Idempotency-Key was seen before."""

    body: dict
    raw: bytes = field(repr=False)
    headers: Dict[str, str] = field(repr=False)
    path: str
    received_ns: int
    duplicate: bool

    @property
    def key(self) -> str:
        """The Idempotency-Key header ('' when absent)."""
        return self.headers.get(IDEMPOTENCY_HEADER.lower(), "")


class AlertReceiver:
    """An HTTP server on `host:port` (0: any free port) in its own thread that records the alerts it accepts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, secret: str = "", window_s: float = 300.0,
                 on_alert: Optional[Callable[[ReceivedAlert], None]] = None, max_kept: int = 10000) -> None:
        self.host = host
        self.port = port
        self.secret = secret
        self.window_s = window_s
        self.on_alert = on_alert
        self.delay_s = 0.0  # every answer waits this long (a slow receiver)
        self.attempts: List[tuple] = []  # (idempotency key, status or "dropped") of every POST, in order
        self._alerts = collections.deque(maxlen=max_kept)
        self._seen_keys = set()
        self._fail_remaining = 0
        self._fail_status = 500
        self._drop_remaining = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # ---- life cycle

    def start(self) -> "AlertReceiver":
        """Listen and serve in a thread named `alert-receiver`; raises OSError when the port is taken."""
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.port), _Handler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="alert-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the port and every open connection (a stopped receiver must not go on answering
        on a kept-alive one); answers still sleeping in `delay_s` are cut short."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_open_connections()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self) -> str:
        """Where to POST alerts (the webhook sink's `url`)."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d/alerts" % (host, self.port)

    # ---- what tests look at and set

    @property
    def alerts(self) -> List[ReceivedAlert]:
        """The accepted alerts, in arrival order (duplicates included, marked)."""
        with self._changed:
            return list(self._alerts)

    def keys(self) -> List[str]:
        """The Idempotency-Keys of the accepted alerts, in arrival order."""
        return [a.key for a in self.alerts]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` alerts were accepted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._alerts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next `count` POSTs with `status` and record nothing."""
        with self._changed:
            self._fail_remaining = count
            self._fail_status = status

    def drop_next(self, count: int) -> None:
        """Close the connection of the next `count` POSTs without answering."""
        with self._changed:
            self._drop_remaining = count

    # ---- handling one POST

    def handle_post(self, path: str, headers: Dict[str, str], raw: bytes):
        """Decide the answer to one POST: (status, JSON reply), or None to close the connection unanswered."""
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)
        key = headers.get(IDEMPOTENCY_HEADER.lower(), "")
        with self._changed:
            fault = self._take_fault()
            self.attempts.append((key, fault if fault is not None else "checking"))
            index = len(self.attempts) - 1
        if fault == "dropped":
            return None
        if fault is not None:
            return fault, {"error": "simulated failure"}
        status, reply, body = self._check(headers, raw)
        alert = None
        with self._changed:
            self.attempts[index] = (key, status)
            if body is not None:
                duplicate = bool(key) and key in self._seen_keys
                alert = ReceivedAlert(body=body, raw=raw, headers=headers, path=path, received_ns=wall_ns(),
                                      duplicate=duplicate)
                reply["duplicate"] = duplicate
                self._seen_keys.add(key)
                self._alerts.append(alert)
                self._changed.notify_all()
        if alert is not None and self.on_alert is not None:
            self.on_alert(alert)
        return status, reply

    def _take_fault(self):
        if self._drop_remaining > 0:
            self._drop_remaining -= 1
            return "dropped"
        if self._fail_remaining > 0:
            self._fail_remaining -= 1
            return self._fail_status
        return None

    def _check(self, headers, raw):
        """(status, reply, parsed body or None when refused)."""
        if self.secret and not verify_signature(self.secret, headers.get(TIMESTAMP_HEADER.lower()), raw,
                                                headers.get(SIGNATURE_HEADER.lower()), time.time(), self.window_s):
            return 401, {"error": "missing, wrong or expired signature"}, None
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            return 400, {"error": "body is not UTF-8 JSON"}, None
        if not isinstance(body, dict):
            return 400, {"error": "body is not a JSON object"}, None
        return 200, {"ok": True}, body


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.server.receiver.handle_post(self.path, headers, raw)
        if answer is None:
            self.close_connection = True
            return
        status, reply = answer
        data = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    # ThreadingHTTPServer is 3.7+; this is the same thing on 3.6
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        self._open_connections = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        # as ThreadingMixIn does, but with a thread name that says whose thread it is
        with self._open_lock:
            self._open_connections.add(request)
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="alert-receiver-request", daemon=True)
        thread.start()

    def shutdown_request(self, request):
        with self._open_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self):
        """Cut every connection still open (HTTP/1.1 keep-alive): their threads see the end and finish."""
        with self._open_lock:
            connections = list(self._open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the client
                pass

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the sender gave up (its timeout) before our answer
            log.debug("demo receiver: %s left before the answer: %s", client_address, error)
            return
        log.warning("demo receiver: error while answering %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


# ---- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `demo-receiver` options."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s; 0: any free)")
    parser.add_argument("--secret-env", default="", metavar="VAR",
                        help="environment variable holding the webhook's signing secret; unsigned, wrongly "
                             "signed or stale alerts are then refused with 401")
    parser.add_argument("--snapshots", default="", metavar="DIR", help="save each alert's snapshot JPEG here")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, printing one line per alert; raise FiredetdError on bad arguments."""
    secret = ""
    if args.secret_env:
        if args.secret_env not in os.environ:
            raise ConfigError("--secret-env: environment variable %s is not set" % args.secret_env)
        secret = os.environ[args.secret_env]
    if args.snapshots:
        _make_dir(args.snapshots)
    receiver = AlertReceiver(args.host, args.port, secret, on_alert=lambda alert: _print_alert(alert, args.snapshots))
    try:
        receiver.start()
    except OSError as e:
        raise FiredetdError("demo-receiver: cannot listen on %s:%d (%s)" % (args.host, args.port,
                                                                           e.strerror or e)) from e
    print("listening on %s%s" % (receiver.url, " (signatures checked)" if secret else ""), flush=True)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m firedetd.receiver [options]`: the same as `firedetd demo-receiver`."""
    parser = argparse.ArgumentParser(prog="firedetd demo-receiver", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except FiredetdError as e:
        print("firedetd demo-receiver: %s" % e, file=sys.stderr)
        return e.exit_code


def _print_alert(alert: ReceivedAlert, snapshot_dir: str) -> None:
    body = alert.body
    snapshot = _decode_snapshot(body)
    size = len(snapshot or b"")
    if snapshot and snapshot_dir:
        _save_snapshot(snapshot_dir, body, snapshot)
    print("%s %s %s %s score=%.3f snapshot=%s%s" % (
        body.get("event_at", "?"), body.get("camera", "?"), body.get("kind", "?"), body.get("state", "?"),
        float(body.get("score") or 0.0), "%.1fKiB" % (size / 1024.0) if size else "none",
        " (duplicate)" if alert.duplicate else ""), flush=True)


def _decode_snapshot(body):
    snapshot = body.get("snapshot")
    if not isinstance(snapshot, dict):
        return None
    try:
        return base64.b64decode(snapshot.get("data_base64", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        log.warning("demo-receiver: alert %s has a snapshot that is not base64", body.get("id"))
        return None


def _save_snapshot(directory, body, jpeg):
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", "%s-%s" % (body.get("event_at", ""), body.get("id", "alert")))
    try:
        with open(os.path.join(directory, name + ".jpg"), "wb") as f:
            f.write(jpeg)
    except OSError as e:
        log.warning("demo-receiver: cannot save snapshot %s: %s", name, e)


def _make_dir(directory):
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ConfigError("--snapshots: cannot create %s (%s)" % (directory, e.strerror or e)) from e


if __name__ == "__main__":
    sys.exit(main())
