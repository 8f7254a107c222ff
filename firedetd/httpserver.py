"""The daemon's HTTP endpoint: /metrics (Prometheus), /healthz, and the routes other modules add.

Routes answer GET; the few that change something are POST routes (small form bodies only). A route may have a
gate, which sees the request's headers first and may answer instead (the status page's login does that).

Binds 127.0.0.1 by default (config `http.addr`). A threading server from the standard library
(Python 3.6 has no ThreadingHTTPServer), one short-lived thread per request.
"""

import collections
import json
import logging
import socket
import threading
from urllib.parse import parse_qsl

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from socketserver import ThreadingMixIn
except ImportError:  # pragma: no cover - Python 2 is not supported
    raise

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


MAX_CONNECTIONS = 32     # threads a flood of connections may cost; more are answered 503 and closed at once
IDLE_TIMEOUT_S = 10.0    # a connection that sends nothing (or stops reading) for this long is closed
MAX_FORM_BYTES = 4096    # POST bodies are a password or a CSRF token: anything bigger is refused unread

# what a gate or a POST handler sees of a request; `form` is the parsed urlencoded body (POST only)
RequestInfo = collections.namedtuple("RequestInfo", "method path query headers form")


class _Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self):
        HTTPServer.server_activate(self)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0

    def process_request(self, request, client_address):
        # one thread per connection, but never more than max_connections: 600 idle connections used to cost
        # 600 threads, and 1005 exhausted the unit's file descriptors
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        ThreadingMixIn.process_request(self, request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            self._slots.release()


class Response(object):
    def __init__(self, status, body, content_type="text/plain; charset=utf-8", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode("utf-8")
        self.content_type = content_type
        self.headers = headers or {}


def json_response(obj, status=200):
    return Response(status, json.dumps(obj, sort_keys=True), "application/json")


class HttpEndpoint(object):
    """Serves registered GET and POST routes; /metrics and /healthz are always there, never gated."""

    def __init__(self, host, port, registry, health, max_connections=MAX_CONNECTIONS, idle_timeout_s=IDLE_TIMEOUT_S):
        self.routes = {}
        self.prefix_routes = []
        self.streams = {}
        self.post_routes = {}
        self.request_routes = {}
        self.gates = {}   # route path or prefix -> gate(RequestInfo) -> Optional[Response]
        self.routes["/metrics"] = lambda query: Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)
        self.routes["/healthz"] = lambda query: self._health(health)
        self._server = self._bind(host, port, max_connections, idle_timeout_s)
        self._thread = None

    @property
    def port(self):
        return self._server.server_address[1]

    def _bind(self, host, port, max_connections, idle_timeout_s):
        endpoint = self
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout_s   # socket timeout: an idle keep-alive or a stalled client lets go

            def do_GET(self):
                endpoint._handle(self)

            def do_POST(self):
                endpoint._handle_post(self)

            def log_message(self, fmt, *args):
                log.debug("http: " + fmt, *args)

        server_class = type("Server", (_Server,), {"address_family": family, "max_connections": max_connections})
        return server_class((host, port), Handler)

    def _health(self, health):
        report = health()
        return json_response(report, 200 if report.get("ok") else 503)

    def add_route(self, path, handler, gate=None):
        """handler(query: dict) -> Response; gate(RequestInfo) -> a Response that answers instead, or None."""
        self.routes[path] = handler
        self.gates[path] = gate

    def add_request_route(self, path, handler):
        """handler(RequestInfo) -> Response: a GET route that reads the request's headers (cookies) itself."""
        self.request_routes[path] = handler

    def add_prefix_route(self, prefix, handler, gate=None):
        """handler(rest_of_path, query) -> Response."""
        self.prefix_routes.append((prefix, handler))
        self.gates[prefix] = gate

    def add_stream(self, prefix, handler, gate=None):
        """handler(rest_of_path, query, wfile, stop) writes a long response itself (MJPEG)."""
        self.streams[prefix] = handler
        self.gates[prefix] = gate

    def add_post_route(self, path, handler):
        """handler(RequestInfo) -> Response, for a POST with an urlencoded body of at most MAX_FORM_BYTES; the
        handler checks the session and CSRF token itself (it knows which POST needs which)."""
        self.post_routes[path] = handler

    def _handle(self, request):
        path, _, query_string = request.path.partition("?")
        query = dict(p.split("=", 1) if "=" in p else (p, "") for p in query_string.split("&") if p)
        info = RequestInfo("GET", path, query, request.headers, {})
        try:
            for prefix, handler in self.streams.items():
                if path.startswith(prefix):
                    refusal = self._gate(prefix, info)
                    if refusal is not None:
                        return self._write(request, refusal)
                    return handler(path[len(prefix):], query, request)
            response = self._route(path, query, info)
        except Exception as e:
            log.warning("http: %s failed: %s", path, e)
            response = Response(500, "internal error\n")
        self._write(request, response)

    def _gate(self, key, info):
        gate = self.gates.get(key)
        return gate(info) if gate is not None else None

    def _route(self, path, query, info):
        if path in self.request_routes:
            return self.request_routes[path](info)
        if path in self.routes:
            return self._gate(path, info) or self.routes[path](query)
        for prefix, handler in self.prefix_routes:
            if path.startswith(prefix):
                return self._gate(prefix, info) or handler(path[len(prefix):], query)
        return Response(404, "not found\n")

    def _handle_post(self, request):
        path = request.path.partition("?")[0]
        handler = self.post_routes.get(path)
        try:
            length = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if handler is None:
            get_only = path in self.routes or path in self.request_routes
            response = Response(405, "method not allowed\n") if get_only else Response(404, "not found\n")
        elif not 0 <= length <= MAX_FORM_BYTES:
            response = Response(413, "form too large\n")
        else:
            try:
                body = request.rfile.read(length).decode("utf-8", "replace")
                info = RequestInfo("POST", path, {}, request.headers, dict(parse_qsl(body)))
                response = handler(info)
            except Exception as e:
                log.warning("http: POST %s failed: %s", path, e)
                response = Response(500, "internal error\n")
        request.close_connection = True   # a refused body may be left unread: never reuse that connection
        self._write(request, response)

    @staticmethod
    def _write(request, response):
        try:
            request.send_response(response.status)
            request.send_header("Content-Type", response.content_type)
            request.send_header("Content-Length", str(len(response.body)))
            request.send_header("Cache-Control", "no-store")
            for k, v in response.headers.items():
                request.send_header(k, v)
            request.end_headers()
            request.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()
        log.info("http: serving /metrics and /healthz on %s:%d", self._server.server_address[0], self.port)

    def stop(self):
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2.0)
        self._server.server_close()
