"""Run the real daemon as a subprocess for end-to-end tests, and scrape its /metrics."""

import os
import signal
import socket
import subprocess
import sys
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonProcess(object):
    """`python -m firedetd run -c CONFIG ...` in its own process group, stderr kept for assertions."""

    def __init__(self, config_path, *args, env=None):
        self.port = None
        self.config_path = config_path
        self.args = list(args)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = None
        self.log_path = str(config_path) + ".log"

    def start(self):
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([sys.executable, "-m", "firedetd", "run", "-c", str(self.config_path)] + self.args,
                                     cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def alive(self):
        return self.proc.poll() is None


def scrape(port, timeout=2.0):
    """Parse /metrics into {(name, frozenset(labels.items())): value} (counter samples keep _total)."""
    text = requests.get("http://127.0.0.1:%d/metrics" % port, timeout=timeout).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


def metric(values, name, **labels):
    return values.get((name, frozenset(labels.items())))


def wait_until(predicate, timeout, interval=0.2, message="condition"):
    deadline = time.time() + timeout
    last_error = None
    while time.time() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # not up yet
            last_error = e
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last error: %s)" % (message, last_error))
