"""Security against the whole daemon: signed webhooks checked by the receiver snippet of docs/alerts.md, secrets kept
out of logs, metrics and health, the HTTP endpoint on loopback by default, TLS verified for https, snapshots that
can be turned off, and the systemd unit's hardening score (systemd-analyze security)."""

import http.server
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading

import pytest
import requests
from support.daemon import REPO, free_port, metric, scrape, wait_until

from firedetd.receiver import AlertReceiver

from .daemon_setup import (
    FLAPPING_DETECTION,
    outbox_path,
    record_figures,
    running_daemon,
    sample_camera,
    stop_daemon,
    total,
    webhook,
    write_config,
)

SECRET = "s3cr3t-hmac-key-0f9e8d7c6b5a"
FILE_SECRET = "s3cr3t-from-a-file-1a2b3c4d5e"
TOKEN = "tok3n-bearer-9z8y7x6w5v"
QUERY_TOKEN = "qu3ry-token-4u5v6w7x"
EXPOSURE_LIMIT = 3.0


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory):
    """One daemon run at log level debug with every kind of secret: an HMAC secret from the environment (signing
    for a receiver that checks it and fails its first answers), and a second sink to the same receiver with a
    secret from a file (the wrong one: refused with 401, again and again), an API key header and a token in the
    URL query; snapshots off. What it logged, served and sent."""
    directory = tmp_path_factory.mktemp("signed")
    secret_file = directory / "webhook.secret"
    secret_file.write_text(FILE_SECRET + "\n")
    http_port, receiver_port = free_port(), free_port()
    url = "http://127.0.0.1:%d/alerts" % receiver_port
    hooks = [webhook(url, secret_env="FIREDETD_TEST_SECRET", headers={"Authorization": "Bearer " + TOKEN}),
             {"url": url + "?token=" + QUERY_TOKEN, "name": "refused", "secret_file": str(secret_file),
              "headers": {"X-Api-Key": TOKEN}}]
    detection = dict(FLAPPING_DETECTION, snapshot={"enabled": False})
    config = write_config(directory, [sample_camera()], hooks, detection=detection, http_port=http_port,
                          log_level="debug")
    with AlertReceiver(port=receiver_port, secret=SECRET) as receiver:
        receiver.fail_next(3, 500)
        with running_daemon(config, env={"FIREDETD_TEST_SECRET": SECRET}) as daemon:
            wait_until(lambda: len(receiver.alerts) >= 5 and total(
                scrape(http_port), "firedetd_alert_delivery_failures_total", sink="refused") >= 3, 60,
                message="signed alerts and failed deliveries")
            served = [requests.get("http://127.0.0.1:%d%s" % (http_port, path), timeout=5).text
                      for path in ("/metrics", "/healthz", "/")]
            assert stop_daemon(daemon) == 0
            log = daemon.log()
    return {"log": log, "served": served, "alerts": receiver.alerts, "attempts": receiver.attempts,
            "outbox": outbox_path(directory)}


def test_secrets_never_appear_in_logs_metrics_or_health(signed_run):
    text = signed_run["log"] + "\n".join(signed_run["served"])
    assert "delivery of" in signed_run["log"] and "failed" in signed_run["log"]  # errors were logged...
    assert "DEBUG" in signed_run["log"]  # ...at the most talkative level
    for secret in (SECRET, FILE_SECRET, TOKEN, QUERY_TOKEN):
        assert secret not in text
    record_figures("secrets", log_lines=len(signed_run["log"].splitlines()), secrets_found=0)


def doc_snippet():
    """The receiver verification snippet of docs/alerts.md, as the page shows it."""
    with open(os.path.join(REPO, "docs", "alerts.md")) as f:
        page = f.read()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    snippet = [block for block in blocks if "def verify_firedetd_request" in block]
    assert len(snippet) == 1
    namespace = {}
    exec(compile(snippet[0], "docs/alerts.md", "exec"), namespace)
    return namespace["verify_firedetd_request"]


def test_the_receiver_snippet_in_docs_alerts_md_verifies_the_daemons_signed_requests(signed_run):
    verify = doc_snippet()
    alerts = signed_run["alerts"]
    assert alerts and [status for _, status in signed_run["attempts"][:3]] == [500, 500, 500]
    assert 401 in [status for _, status in signed_run["attempts"]]  # the other sink's secret is refused
    for alert in alerts:
        assert verify(SECRET, alert.headers, alert.raw, now=alert.received_ns / 1e9)
    alert = alerts[0]
    sent = int(alert.headers["x-firedetd-timestamp"])
    assert not verify("another-secret", alert.headers, alert.raw, now=sent)
    assert not verify(SECRET, alert.headers, alert.raw.replace(b'"fire"', b'"none"').replace(b'"smoke"', b'"none"'),
                      now=sent)
    assert not verify(SECRET, alert.headers, alert.raw, now=sent + 301)  # a replay, five minutes later
    assert not verify(SECRET, {k: v for k, v in alert.headers.items() if k != "x-firedetd-signature"}, alert.raw,
                      now=sent)
    assert verify(SECRET, {k.upper(): v for k, v in alert.headers.items()}, alert.raw, now=sent)


def test_with_snapshots_off_no_picture_is_sent_or_stored(signed_run):
    raised = [a.body for a in signed_run["alerts"] if a.body["state"] == "raised"]
    assert raised and all(body["snapshot"] is None for body in raised)
    db = sqlite3.connect(signed_run["outbox"])
    try:
        assert db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM events WHERE snapshot_bytes IS NOT NULL").fetchone()[0] == 0
    finally:
        db.close()


# ------------------------------------------------------------------------------------------------ loopback


def listening_addresses(pid):
    """(address, port) of every TCP socket process `pid` listens on, read from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open("/proc/%d/net/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    packed = bytes.fromhex(address)
                    # /proc prints each 32-bit word in host (little-endian) order
                    packed = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
                    found.append((socket.inet_ntop(family, packed), int(port, 16)))
    return found


def test_the_http_endpoint_listens_on_loopback_only_by_default(tmp_path):
    default_port = 9108
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", default_port))
        except OSError:
            pytest.skip("the default port %d is in use on this machine" % default_port)
    config = write_config(tmp_path, [{"name": "pattern", "source": "test://?pattern=ball&fps=5"}], http={})
    with running_daemon(config) as daemon:
        wait_until(lambda: scrape(default_port), 60, message="/metrics on the default address")
        addresses = listening_addresses(daemon.proc.pid)
        assert stop_daemon(daemon) == 0
    record_figures("loopback", listening=addresses)
    assert addresses == [("127.0.0.1", default_port)]


# ------------------------------------------------------------------------------------------------ TLS


class _TlsReceiver(object):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate (made with openssl) that accepts every POST."""

    def __init__(self, directory):
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed: no certificate for the HTTPS receiver")
        self.cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
        subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                               "/CN=127.0.0.1", "-keyout", key, "-out", self.cert], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        self.received = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(self.headers.get("Idempotency-Key"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/alerts" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="tls-receiver", daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_https_certificates_are_verified_unless_a_lab_setting_says_otherwise(tmp_path):
    receiver = _TlsReceiver(tmp_path)
    http_port = free_port()
    hooks = [webhook(receiver.url), {"url": receiver.url, "name": "lab", "verify_tls": False}]
    config = write_config(tmp_path, [sample_camera()], hooks, detection=FLAPPING_DETECTION, http_port=http_port)
    try:
        with running_daemon(config) as daemon:
            values = wait_until(lambda: _scrape_where(http_port, lambda v: (
                metric(v, "firedetd_alerts_delivered_total", sink="lab") or 0) >= 3 and total(
                v, "firedetd_alert_delivery_failures_total", sink="hook", reason="tls") >= 1), 60,
                message="the lab sink to deliver and the verifying one to refuse the certificate")
            assert stop_daemon(daemon) == 0
            log = daemon.log()
    finally:
        receiver.close()
    assert metric(values, "firedetd_alerts_delivered_total", sink="hook") == 0
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log
    assert "TLS certificates are not verified (verify_tls: false)" in log  # said once, at start


def _scrape_where(port, predicate):
    values = scrape(port)
    return values if predicate(values) else None


# ------------------------------------------------------------------------------------------------ systemd


def systemd_analyze(*args):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    proc = subprocess.Popen(["systemd-analyze"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def test_the_unit_scores_an_exposure_of_at_most_3_in_systemd_analyze_security():
    code, out, err = systemd_analyze("security", "--offline=true", "systemd/firedetd.service")
    if code != 0 and "offline" in err:
        pytest.skip("this systemd-analyze has no --offline (systemd < 252): %s" % err.strip()[:200])
    match = re.search(r"Overall exposure level for firedetd\.service: ([0-9.]+)", out)
    assert code == 0 and match, out + err
    record_figures("systemd_security", exposure=float(match.group(1)))
    assert float(match.group(1)) <= EXPOSURE_LIMIT


def test_the_unit_passes_systemd_analyze_verify_except_for_the_install_path():
    """verify reports problems on stderr; on a development machine the only one allowed is that the installed
    /opt/firedetd/.venv/bin/firedetd does not exist."""
    code, out, err = systemd_analyze("verify", "systemd/firedetd.service")
    problems = [line for line in err.splitlines() if line.strip() and "/opt/firedetd/.venv/bin/firedetd" not in line]
    assert problems == [], err
