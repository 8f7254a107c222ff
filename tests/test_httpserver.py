"""firedetd/httpserver.py under a flood of idle connections: a bounded number of threads, 503 for the rest,
idle connections closed after the timeout, and /metrics answering again right after. Real sockets on 127.0.0.1."""

import socket
import threading
import time

import requests
from prometheus_client import CollectorRegistry

from firedetd.httpserver import HttpEndpoint


def test_idle_connections_cost_at_most_the_cap_and_are_dropped_after_the_timeout():
    endpoint = HttpEndpoint("127.0.0.1", 0, CollectorRegistry(), lambda: {"ok": True}, max_connections=4,
                            idle_timeout_s=4.0)
    endpoint.start()
    idle = []
    try:
        before = threading.active_count()
        for _ in range(20):
            idle.append(socket.create_connection(("127.0.0.1", endpoint.port), timeout=5))
        # the server accepts them one by one (a full listen backlog delays the last ones by a second)
        deadline = time.time() + 10
        while endpoint._server.refused < 16 and time.time() < deadline:
            time.sleep(0.05)
        assert threading.active_count() - before == 4 and endpoint._server.refused == 16
        refused = requests.get("http://127.0.0.1:%d/metrics" % endpoint.port, timeout=5)
        assert refused.status_code == 503 and endpoint._server.refused >= 1
        time.sleep(4.5)   # the held ones time out
        assert requests.get("http://127.0.0.1:%d/metrics" % endpoint.port, timeout=5).status_code == 200
        assert threading.active_count() - before <= 1
    finally:
        for sock in idle:
            sock.close()
        endpoint.stop()
