"""A real Prometheus server (Debian's `prometheus` package) on 127.0.0.1 for the fleet tests, with its HTTP API."""

import os
import shutil
import subprocess
import time

import requests

from .daemon import free_port

PROMETHEUS = shutil.which("prometheus")
SKIP_REASON = "prometheus is not installed (apt-get install prometheus)"
WAIT_S = 30  # generous: only there so a broken setup fails instead of hanging


class PrometheusServer(object):
    """`prometheus --config.file=<dir>/prometheus.yml` with its TSDB in `directory`, listening on 127.0.0.1."""

    def __init__(self, directory, config_text, port=None):
        self.directory = str(directory)
        self.config_text = config_text
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(self.directory, "prometheus.log")

    def start(self):
        """Start Prometheus and wait until /-/ready answers 200."""
        os.makedirs(self.directory, exist_ok=True)
        config_path = os.path.join(self.directory, "prometheus.yml")
        with open(config_path, "w") as f:
            f.write(self.config_text)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + config_path, "--storage.tsdb.path=" + os.path.join(self.directory, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("prometheus did not start on port %d: %s" % (self.port, self.log()))
            time.sleep(0.1)
        return self

    def query(self, expr):
        """The instant vector of a PromQL expression: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        response = requests.get("http://127.0.0.1:%d/api/v1/query" % self.port, params={"query": expr}, timeout=5)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError("query %r failed: %s" % (expr, body))
        return body["data"]["result"]

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)
        if self.proc is not None:
            self._log.close()
        self.proc = None

    def _ready(self):
        try:
            return requests.get("http://127.0.0.1:%d/-/ready" % self.port, timeout=1).status_code == 200
        except requests.RequestException:
            return False
