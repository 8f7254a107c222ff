"""The webhook sink: POSTs each alert event as JSON, signed with HMAC-SHA256 when a secret is configured.

Body (UTF-8 JSON, the same bytes on every retry of one event):
    {"id": event_key, "alert_id", "device", "camera", "kind", "state", "score", "peak_score",
     "started_at", "event_at" (ISO-8601 UTC with ms), "frame_seq", "latency_ms", "model",
     "region": [x, y, w, h] (only with a model that has a class activation map, docs/cam.md),
     "snapshot": {"content_type": "image/jpeg", "data_base64": ...} or null}

Headers: `Idempotency-Key: <event_key>` (deliveries are at-least-once: a receiver drops repeats by this key),
`X-Firedetd-Timestamp: <unix seconds>` and, with a secret, `X-Firedetd-Signature: sha256=<hex>` where hex is
HMAC-SHA256(secret, timestamp + "." + raw body). A receiver checks it with `verify_signature` (or the same
three lines in its own language) and refuses timestamps outside a few minutes to stop replays.

Outcome: 2xx delivered; connection errors, timeouts, 408, 429 and 5xx are retryable SinkErrors; any other
status (including redirects, which are not followed: a POST must not turn into a GET) is a non-retryable
SinkError, which the delivery thread still retries, slowly, until someone fixes the receiver.
"""

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from typing import List, Optional, Union

import requests

from ..errors import SinkError
from . import Sink
from .payload import event_fields

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Firedetd-Signature"
TIMESTAMP_HEADER = "X-Firedetd-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RETRYABLE_STATUS = (408, 429)
_ERROR_BODY_CHARS = 200
_DIGITS = re.compile(r"^[0-9]{1,12}$")


class WebhookSink(Sink):
    """Delivers alert events to one HTTP(S) endpoint (`alerts.webhooks[i]` of the config)."""

    def __init__(self, name: str, webhook_config, secret: str, device_id: str) -> None:
        self.name = name
        self.config = webhook_config
        self.device_id = device_id
        self._secret = secret or ""
        self._session = requests.Session()
        self._session.verify = webhook_config.verify_tls
        if not webhook_config.verify_tls and webhook_config.url.startswith("https:"):
            log.warning("webhook %s: TLS certificates are not verified (verify_tls: false)", name)

    def __repr__(self):
        # no secret, no headers: they hold credentials
        return "WebhookSink(%r, %s)" % (self.name, redact_url(self.config.url))

    def deliver(self, event: dict) -> None:
        """POST one outbox event; raise SinkError (with a `reason` and, for 429/503, `retry_after_s`) on failure."""
        body = self.encode(event)
        timestamp = str(int(time.time()))
        headers = dict(self.config.headers)
        headers.update({"Content-Type": "application/json", IDEMPOTENCY_HEADER: event["event_key"],
                        TIMESTAMP_HEADER: timestamp})
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        where = "webhook %s (%s)" % (self.name, redact_url(self.config.url))
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's verify=False
            response = self._session.post(self.config.url, data=body, headers=headers, verify=self.config.verify_tls,
                                          timeout=self.config.timeout_s, allow_redirects=False)
        except requests.exceptions.SSLError as e:
            raise SinkError("%s: TLS failed: %s" % (where, self._scrub(e)), False, "tls") from e
        except requests.exceptions.Timeout as e:
            raise SinkError("%s: no answer within %.1f s" % (where, self.config.timeout_s), True, "timeout") from e
        except requests.exceptions.ConnectionError as e:
            raise SinkError("%s: cannot connect: %s" % (where, self._scrub(e)), True, "connection") from e
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as e:
            raise SinkError("%s: invalid URL: %s" % (where, self._scrub(e)), False, "config") from e
        except requests.exceptions.RequestException as e:
            raise SinkError("%s: request failed: %s" % (where, self._scrub(e)), True, "request") from e
        try:
            _check_status(response, where)
        finally:
            response.close()

    def encode(self, event: dict) -> bytes:
        """The JSON body for one outbox event (stable: the same bytes for every retry)."""
        snapshot = event.get("snapshot_jpeg")
        body = event_fields(event, self.device_id)
        body["snapshot"] = None
        if snapshot and self.config.include_snapshot:
            body["snapshot"] = {"content_type": "image/jpeg",
                                "data_base64": base64.b64encode(snapshot).decode("ascii")}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def close(self):
        """Release the connection pool."""
        self._session.close()

    def _scrub(self, error) -> str:
        # requests' messages quote the request path and query, where some receivers take their token
        text = _short(_root_cause(error))
        query = self.config.url.partition("?")[2]
        return text.replace(query, "***") if query else text


def sinks_from_config(config, environ) -> List[WebhookSink]:
    """The registry's factory: one WebhookSink per `alerts.webhooks` entry, with its signing secret."""
    from ..config import webhook_name, webhook_secrets

    secrets = webhook_secrets(config, environ)
    return [WebhookSink(webhook_name(hook, i), hook, secrets[i], config.device_id)
            for i, hook in enumerate(config.alerts.webhooks)]


def _check_status(response, where):
    status = response.status_code
    if 200 <= status < 300:
        return
    text = "%s: HTTP %d %s" % (where, status, _short(response.text))
    if status >= 500 or status in _RETRYABLE_STATUS:
        reason = "http_5xx" if status >= 500 else "http_%d" % status
        raise SinkError(text, True, reason, _retry_after_s(response))
    if 300 <= status < 400:
        raise SinkError(text + " (redirects are not followed: set the final URL)", False, "http_3xx")
    raise SinkError(text, False, "http_4xx")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Firedetd-Signature` value: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: Union[str, bytes, int, None], body: bytes,
                     signature: Union[str, bytes, None], now: float, window_s: float = 300) -> bool:
    """True when `signature` signs `timestamp`.`body` with `secret` and `timestamp` is within `window_s` of `now`.

    For receivers: pass the raw request body, the X-Firedetd-Timestamp and X-Firedetd-Signature headers and
    time.time(); drop repeated deliveries by the Idempotency-Key header.
    """
    if not secret or timestamp is None or not signature:
        return False
    if isinstance(timestamp, bytes):
        timestamp = timestamp.decode("ascii", "replace")
    if isinstance(signature, bytes):
        signature = signature.decode("ascii", "replace")
    timestamp = str(timestamp).strip()
    if not _DIGITS.match(timestamp) or abs(now - int(timestamp)) > window_s:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("ascii", "replace"))


def redact_url(url: str) -> str:
    """The URL without user:password@ or query string, which may hold credentials, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    host_and_path = rest.split("?", 1)[0].split("#", 1)[0]
    authority, slash, path = host_and_path.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    query = "?***" if "?" in rest else ""
    return scheme + sep + authority + slash + path + query


def _retry_after_s(response) -> Optional[float]:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if _DIGITS.match(value) else None  # the HTTP-date form is rare for webhooks; ignored


def _root_cause(error):
    # requests wraps urllib3's MaxRetryError around the socket error; the socket error is what a user can act on
    wrapped = error.args[0] if error.args else None
    reason = getattr(wrapped, "reason", None)
    if reason is None:
        return error
    text = str(reason)
    marker = "Failed to establish a new connection: "
    return text.split(marker, 1)[1] if marker in text else text


def _short(value) -> str:
    text = " ".join(str(value).split())
    return text[:_ERROR_BODY_CHARS] + ("..." if len(text) > _ERROR_BODY_CHARS else "")
