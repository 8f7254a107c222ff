"""The notification sink: each alert event as a phone or chat notification through Apprise (ntfy, Telegram,
Pushover, Signal, e-mail, Slack and about a hundred more, each named by a URL such as `ntfy://ntfy.sh/topic`).

One `alerts.notify` entry is one Apprise service and one sink, so it has its own queue in the outbox: a
Telegram outage delays Telegram only, and a retry never sends a second copy to a service that took the first.

What is sent: a title and a body rendered from the config's templates with the fields every sink sends
(`payload.event_fields`), the raised or escalated event's snapshot as a JPEG attachment, and a notification type Apprise
services show as a colour or icon (raised/escalated: failure, ongoing: warning, cleared: success).

Rate limit: at most one notification per incident per `min_interval_s`. Only `ongoing` events are ever left
out (accepted and not sent): raised, escalated and cleared always go. The time is this process's clock at
delivery, so after an outage the backlog of one incident reaches the phone as one notification, not dozens.

Failures: Apprise's notify() only answers True or False and says why in its log; the sink catches those lines
from its own thread, keeps them out of the daemon's log (the delivery thread logs each distinct failure once)
and raises SinkError with them, credentials removed. The outbox retries it like a webhook.
"""

import hashlib
import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, List

from ..errors import ConfigError, SinkError
from ..schema import option
from . import Sink
from .payload import event_fields

log = logging.getLogger(__name__)

# the fields a title or body template may name: those of payload.event_fields, with sample values to check with
TEMPLATE_SAMPLE = {"id": "3f2a:raised", "alert_id": "3f2a", "device": "jetson-1", "camera": "kitchen",
                   "kind": "fire", "state": "raised", "score": 0.91, "peak_score": 0.95,
                   "started_at": "2024-05-01T12:00:00.000Z", "event_at": "2024-05-01T12:00:00.000Z",
                   "frame_seq": 1200, "latency_ms": 85.0, "model": "firedetd"}
# Apprise's notification types (apprise.NotifyType values), written out so the module imports without apprise
_NOTIFY_TYPES = {"raised": "failure", "escalated": "failure", "ongoing": "warning", "cleared": "success"}
_ALWAYS_SENT = ("raised", "escalated", "cleared")
_SECRET_PIECE = re.compile(r"[^/?&=:@,#]{4,}")
try:
    import contextvars
    # which delivery is running, seen from Apprise 2.x's worker threads (it copies the caller's context into them)
    _DELIVERY = contextvars.ContextVar("firedetd_notify_delivery", default=(None, None))
except ImportError:   # Python 3.6: Apprise 1.9 notifies a single service in the calling thread
    _DELIVERY = None
_APPRISE_MISSING = "needs Apprise: pip install 'firedetd[notify]' (scripts/setup.sh installs it)"


@dataclass(frozen=True)
class NotifyConfig:
    """Notification sinks through Apprise (needs the `notify` extra; docs/alerts.md)."""

    url: str = option("", doc="Apprise URL of the service, when it holds no token (e.g. json://host:8080/alerts). "
                              "One of url, url_env, url_file.", example="ntfy://ntfy.sh/firedetd-kitchen")
    url_env: str = option("", doc="Name of an environment variable holding the Apprise URL (for URLs with tokens: "
                                  "tgram://BOT_TOKEN/CHAT_ID, private ntfy topics, passwords).")
    url_file: str = option("", doc="File holding the Apprise URL (e.g. a systemd credential).")
    name: str = option("", doc="Sink name for metrics and the outbox (default: `notify-` and 8 hex digits of the "
                               "sha256 of url, or of the variable or file name, so a rotated token keeps the queue).")
    title: str = option("firedetd: {kind} {state} on {camera}",
                        doc="Title template: Python format fields of the webhook body ({camera}, {kind}, {state}, "
                            "{score:.2f}, {device}, {event_at}, ...).")
    body: str = option("{kind} {state} on camera {camera} of {device} (score {score:.2f}) at {event_at}",
                       doc="Body template (plain text), with the same fields as title.")
    attach_snapshot: bool = option(True, doc="Attach the raised or escalated event's snapshot JPEG (services without "
                                             "attachments send the text alone).")
    min_interval_s: float = option(300.0, doc="At most one notification per incident per this many seconds: "
                                              "ongoing events inside it are not sent; raised, escalated and cleared "
                                              "always are. 0: every event.", minimum=0, maximum=86400)

    def check(self, path):
        given = [key for key in ("url", "url_env", "url_file") if getattr(self, key)]
        if len(given) != 1:
            raise ConfigError("%s: give exactly one of url, url_env, url_file (%s)" % (
                path, "got " + ", ".join(given) if given else "none given"))
        for key in ("title", "body"):
            render_template(getattr(self, key), TEMPLATE_SAMPLE, "%s.%s" % (path, key))
        apprise = _import_apprise(path)
        if self.url and apprise.Apprise.instantiate(self.url) is None:
            raise ConfigError("%s.url: Apprise reads no service from %s (see its wiki for the URL of each service)"
                              % (path, _shown(self.url)))

    def resolve_url(self, path, environ):
        """The Apprise URL, from the YAML, the environment or a file."""
        if self.url:
            return self.url
        if self.url_env:
            url = environ.get(self.url_env, "").strip()
            if not url:
                raise ConfigError("%s.url_env: environment variable %s is %s" % (
                    path, self.url_env, "empty" if self.url_env in environ else "not set"))
            return url
        try:
            with open(self.url_file, "rb") as f:
                url = f.read().decode("utf-8").strip()
        except OSError as e:
            raise ConfigError("%s.url_file: cannot read %s (%s)" % (path, self.url_file, e.strerror))
        except UnicodeDecodeError as e:
            raise ConfigError("%s.url_file: %s is not UTF-8 text (byte %d)" % (path, self.url_file, e.start))
        if not url:
            raise ConfigError("%s.url_file: %s is empty" % (path, self.url_file))
        return url

    def sink_name(self):
        """The configured name, else one made from what names the URL (never from the URL's token)."""
        if self.name:
            return self.name
        source = self.url or ("env:" + self.url_env if self.url_env else "file:" + self.url_file)
        return "notify-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:8]


class NotifySink(Sink):
    """Sends alert events to one Apprise service (`alerts.notify[i]` of the config)."""

    def __init__(self, name: str, notify_config: NotifyConfig, url: str, device_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        apprise = _import_apprise("alerts.notify")
        self.name = name
        self.config = notify_config
        self.device_id = device_id
        self.suppressed = 0                        # ongoing events the rate limit left out
        self._clock = clock
        self._last_sent: Dict[str, float] = {}     # incident id -> clock of its last notification
        self._where = "notify %s (%s)" % (name, _shown(url))
        self._secrets = sorted(set(_SECRET_PIECE.findall(url.partition("://")[2])), key=len, reverse=True)
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            raise ConfigError("alerts.notify: %s: Apprise reads no service from the URL" % self._where)
        self._capture = _AppriseLogCapture(self.scrub)
        logging.getLogger("apprise").addFilter(self._capture)

    def __repr__(self):
        return "NotifySink(%r)" % self._where   # never the URL: its host or path is often the token

    def deliver(self, event: dict) -> None:
        """Send one outbox event (or leave out an ongoing one inside the rate limit); SinkError on failure."""
        incident, state = event["id"], event["state"]
        now = self._clock()
        self._forget_quiet_incidents(now)
        last = self._last_sent.get(incident)
        if state not in _ALWAYS_SENT and last is not None and now - last < self.config.min_interval_s:
            self.suppressed += 1
            log.debug("%s: %s left out (last notification of this incident %.0f s ago)", self._where,
                      event["event_key"], now - last)
            return
        self._send(event)
        if state == "cleared":
            self._last_sent.pop(incident, None)
        else:
            self._last_sent[incident] = now

    def render(self, event: dict):
        """(title, body) of one outbox event."""
        fields = event_fields(event, self.device_id)
        return (render_template(self.config.title, fields, "alerts.notify.title"),
                render_template(self.config.body, fields, "alerts.notify.body"))

    def scrub(self, text: str) -> str:
        """`text` with every piece of the service URL (tokens, topics, hosts) replaced by ***."""
        for piece in self._secrets:
            text = text.replace(piece, "***")
        return text

    def close(self):
        logging.getLogger("apprise").removeFilter(self._capture)

    def _send(self, event):
        title, body = self.render(event)
        attachment = None
        snapshot = event.get("snapshot_jpeg")
        if snapshot and self.config.attach_snapshot:
            attachment = _jpeg_attachment(snapshot, "%s-%s.jpg" % (event["camera"], event["id"]))
        with self._capture.lines_of_this_delivery() as lines:
            try:
                sent = self._apprise.notify(body=body, title=title, notify_type=_NOTIFY_TYPES[event["state"]],
                                            body_format="text", attach=attachment)
            except Exception as e:   # a plugin bug must not read as a delivered notification
                raise SinkError("%s: Apprise raised %s: %s" % (self._where, type(e).__name__, self.scrub(str(e))),
                                True, "exception") from e
        if not sent:
            said = "; ".join(lines) or "Apprise gave no reason (its warnings are filtered by the log level)"
            reason = _reason(said)
            # a refused token or a wrong chat id (4xx) is not fixed by retrying soon; the outbox still retries it
            retryable = not reason.startswith("http_4") or reason in ("http_408", "http_429")
            raise SinkError("%s: not sent: %s" % (self._where, said), retryable, reason)

    def _forget_quiet_incidents(self, now):
        # an incident cut short by a restart never sends `cleared`: drop what no longer limits anything
        quiet = [i for i, t in self._last_sent.items() if now - t >= self.config.min_interval_s]
        for incident in quiet:
            del self._last_sent[incident]


class _AppriseLogCapture(logging.Filter):
    """A filter on Apprise's logger: while a delivery of this sink runs, the warnings Apprise logs for it are kept
    (scrubbed) for the SinkError and left out of the daemon's log; every other line passes, scrubbed."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self._scrub = scrub
        self._lines_by_thread: Dict[int, List[str]] = {}

    def filter(self, record):
        text = self._scrub(record.getMessage())
        lines = self._current_lines()
        if lines is not None and record.levelno >= logging.WARNING:
            lines.append(text)
            return False
        record.msg, record.args = text, None
        return True

    @contextmanager
    def lines_of_this_delivery(self):
        """Collect into the list yielded what Apprise logs while the `with` body runs."""
        lines = []
        self._lines_by_thread[threading.get_ident()] = lines
        token = _DELIVERY.set((self, lines)) if _DELIVERY is not None else None
        try:
            yield lines
        finally:
            self._lines_by_thread.pop(threading.get_ident(), None)
            if token is not None:
                _DELIVERY.reset(token)

    def _current_lines(self):
        # Apprise 2.x may notify from a worker thread, into which it copies the caller's context
        if _DELIVERY is not None:
            owner, lines = _DELIVERY.get()
            if owner is self:
                return lines
        return self._lines_by_thread.get(threading.get_ident())


def sinks_from_config(config, environ) -> List[NotifySink]:
    """The registry's factory: one NotifySink per `alerts.notify` entry, its URL read from env or file."""
    sinks, names = [], {}
    for i, entry in enumerate(config.alerts.notify):
        path = "alerts.notify[%d]" % i
        name = entry.sink_name()
        if name in names:
            raise ConfigError("%s: sink name %r is used twice (also alerts.notify[%d]); give each a name" % (
                path, name, names[name]))
        names[name] = i
        sinks.append(NotifySink(name, entry, entry.resolve_url(path, environ), config.device_id))
    return sinks


def render_template(template: str, fields: dict, path: str) -> str:
    """`template` formatted with the event's fields; ConfigError naming `path` for an unknown or bad field."""
    try:
        return template.format(**fields)
    except KeyError as e:
        raise ConfigError("%s: unknown field {%s}; fields: %s" % (path, e.args[0], ", ".join(sorted(fields))))
    except (ValueError, IndexError) as e:
        raise ConfigError("%s: %r is not a valid template (%s); fields are named: {camera}" % (path, template, e))


def _jpeg_attachment(jpeg: bytes, filename: str):
    import apprise
    from apprise.attachment.memory import AttachMemory  # in memory: the snapshot never touches the disk again

    attachment = apprise.AppriseAttachment()
    attachment.add(AttachMemory(content=jpeg, name=filename, mimetype="image/jpeg"))
    return attachment


def _reason(said: str) -> str:
    # Apprise's wording, stable across 1.9 and 2.x; a reason the metrics can count, the text stays in the error
    status = re.search(r"error=(\d{3})", said)
    if status:
        return "http_5xx" if status.group(1).startswith("5") else "http_%s" % status.group(1)
    if "onnection error" in said:
        return "connection"
    if "imeout" in said or "timed out" in said:
        return "timeout"
    return "not_sent"


def _shown(url: str) -> str:
    return url.partition("://")[0] + "://***"


def _import_apprise(path: str):
    try:
        import apprise
    except ImportError:
        raise ConfigError("%s: %s" % (path, _APPRISE_MISSING))
    return apprise
