"""The status page: live view, smoothed probabilities, recent incidents with their snapshots, health of the
sources and sinks; served by the daemon's HTTP endpoint (127.0.0.1 by default, see docs/status-page.md).

    / and /status           the page: one self-contained HTML file (the device may have no network: no CDN)
    /api/status             everything the page shows, as JSON (its URLs are relative to the page)
    /live/<camera>.jpg      the camera's newest decided frame
    /stream/<camera>.mjpg   the same as an MJPEG stream (multipart/x-mixed-replace) at http.live_fps
    /alerts/<row_id>.jpg    an alert's snapshot, from the outbox
    POST /login, /logout    with http.password_hash set: a session cookie; every other POST needs it and its
                            CSRF token (StatusPage.action_refusal)

Who may look: with http.password_hash, whoever logged in; without it, anyone who reaches a loopback http.addr
(read-only); with neither, nobody: the page, its API and its images answer 403, /metrics and /healthz stay.

The postprocessor calls LiveView.update for every decided frame, so that call only keeps references;
a JPEG is encoded when someone asks, at most http.live_fps times per camera however many watch.
Privacy: while detection.snapshot.enabled is false (read at each request, so a SIGHUP applies it) no
image leaves the device through these routes.
"""

import collections
import html
import logging
import re
import socket
import threading
from typing import Dict, List, Optional
from urllib.parse import quote, unquote

from . import login
from .clock import monotonic_ns, wall_ns
from .config import host_port
from .errors import FiredetdError
from .httpserver import Response, json_response
from .postprocess import encode_snapshot

log = logging.getLogger(__name__)

RECENT_ALERTS = 20
RECENT_INCIDENTS = 20
MAX_STREAMS = 4  # MJPEG clients at once: each holds a thread and a socket on a 4 GB Nano
STREAM_WRITE_TIMEOUT_S = 10.0  # a client that stops reading loses its stream instead of pinning a thread
BOUNDARY = "firedetd-frame"
IMAGES_OFF = "images are off: detection.snapshot.enabled is false\n"
PAGE_CLOSED = ("the status page is off: http.addr %s is not loopback and http.password_hash is not set; "
               "make one with `firedetd hash-password` (docs/status-page.md#login)\n")
READ_ONLY = "read-only: actions need a login; set http.password_hash (docs/status-page.md#login)\n"


_Latest = collections.namedtuple("_Latest", "frame smoothed active decided_ns")
# one camera frame as JPEG, with the sequence number of the frame it shows
EncodedFrame = collections.namedtuple("EncodedFrame", "seq jpeg encoded_ns")


class LiveView(object):
    """The newest decided frame and smoothed probabilities of each camera, written by the postprocessor thread
    and read by HTTP threads."""

    def __init__(self, labels, max_fps=2.0, overlays=None):
        self.labels = tuple(labels)
        # camera -> [(name, [(x, y), ...] as shares of the frame)]: masks and the crop, drawn on the live view
        self.overlays = dict(overlays or {})
        self.min_interval_ns = int(1e9 / max_fps)
        self.encodes = 0
        # one _Latest per camera, replaced whole: a dict store is atomic, so update() takes no lock
        self._latest: Dict[str, _Latest] = {}
        self._encoded: Dict[str, EncodedFrame] = {}
        self._encode_lock = threading.Lock()

    def update(self, prediction, tracker):
        """Keep references to one decided frame and its tracker's smoothed probabilities (no copy, no encoding).

        `tracker.smoothed` is replaced by a new array on every frame, never written in place, so keeping it is safe.
        """
        active = tuple(tracker.active_kinds)
        self._latest[prediction.frame.camera] = _Latest(prediction.frame, tracker.smoothed, active,
                                                        prediction.decided_ns)

    def cameras(self) -> List[str]:
        """Cameras that have had at least one frame decided."""
        return sorted(self._latest)

    def state(self, camera: str, now_ns: Optional[int] = None) -> Optional[dict]:
        """The camera's newest frame number, smoothed probabilities by label, active alert kinds and age, or None."""
        latest = self._latest.get(camera)
        if latest is None:
            return None
        now = now_ns or monotonic_ns()
        return {"seq": latest.frame.seq,
                "probabilities": {label: round(float(p), 4) for label, p in zip(self.labels, latest.smoothed)},
                "active": list(latest.active),
                "age_s": round(max(0, now - latest.decided_ns) / 1e9, 2)}

    def jpeg(self, camera: str, snapshot_config, now_ns: Optional[int] = None) -> Optional[EncodedFrame]:
        """The camera's newest frame as JPEG (encoded at most once per frame and once per 1/max_fps s), or None
        when no frame was decided yet or snapshots are disabled."""
        latest = self._latest.get(camera)
        if latest is None or not snapshot_config.enabled:
            return None
        now = now_ns or monotonic_ns()
        with self._encode_lock:
            cached = self._encoded.get(camera)
            fresh = cached is not None and (cached.seq == latest.frame.seq
                                            or now - cached.encoded_ns < self.min_interval_ns)
            if fresh:
                return cached
            jpeg = encode_snapshot(latest.frame, snapshot_config, self.overlays.get(camera))
            if jpeg is None:
                return cached
            self.encodes += 1
            encoded = self._encoded[camera] = EncodedFrame(latest.frame.seq, jpeg, now)
            return encoded


def create_live_view(config, spec) -> Optional[LiveView]:
    """A LiveView when the status page is on, else None (then the postprocessor pays nothing per frame)."""
    if not (config.http.enabled and config.http.status_page):
        return None
    return LiveView(spec.labels, max_fps=config.http.live_fps, overlays=camera_overlays(config.cameras))


def camera_overlays(cameras):
    """{camera: [(name, corners)]} of each camera's masks and crop (shares of the frame), for the live view."""
    overlays = {}
    for camera in cameras:
        shapes = [(m.name or "mask %d" % (i + 1), list(m.polygon)) for i, m in enumerate(camera.masks)]
        crop = camera.crop
        if crop is not None and not crop.is_whole_frame:
            x1, y1 = crop.x + crop.width, crop.y + crop.height
            shapes.append(("watched region", [(crop.x, crop.y), (x1, crop.y), (x1, y1), (crop.x, y1)]))
        if shapes:
            overlays[camera.name] = shapes
    return overlays


class StatusPage(object):
    """The status page's routes over a running Pipeline (which must have been built with a LiveView)."""

    def __init__(self, pipeline, live_fps=2.0, recent_alerts=RECENT_ALERTS, recent_incidents=RECENT_INCIDENTS):
        if pipeline.live_view is None:
            raise FiredetdError("status page: the pipeline has no live view; build it with "
                                "live_view=create_live_view(config, spec)")
        self.pipeline = pipeline
        self.live_view = pipeline.live_view
        self.live_fps = live_fps
        self.recent_alerts = recent_alerts
        self.recent_incidents = recent_incidents
        self.stop_event = threading.Event()
        self._streams = 0
        self._streams_lock = threading.Lock()
        # read once: a new password or address takes a restart, which also ends the sessions made under the old one
        http_config = pipeline.config.http
        self.addr = http_config.addr
        self.password_hash = http_config.password_hash
        self.open_without_login = not self.password_hash and login.is_loopback(host_port(self.addr, "http.addr")[0])
        self.sessions = login.Sessions(http_config.session_h * 3600)

    def register(self, http):
        """Add the page, /api/status, the live JPEG and MJPEG routes, the alert snapshots and login/logout to an
        HttpEndpoint."""
        http.add_request_route("/", self._page)
        http.add_request_route("/status", self._page)
        http.add_request_route("/api/status", self._api_status)
        http.add_prefix_route("/live/", self._live_jpeg, gate=self.read_refusal)
        http.add_prefix_route("/alerts/", self._alert_snapshot, gate=self.read_refusal)
        http.add_stream("/stream/", self._stream, gate=self.read_refusal)
        http.add_post_route("/login", self._login)
        http.add_post_route("/logout", self._logout)

    # ------------------------------------------------------------------ access

    def _session(self, info):
        return self.sessions.get(login.cookie_token(info.headers.get("Cookie")))

    def read_refusal(self, info) -> Optional[Response]:
        """None when this request may see the page's data, else the answer: 403 when the page is closed (no
        password on a non-loopback address), 401 without a session when a password is set."""
        if self.open_without_login:
            return None
        if not self.password_hash:
            return Response(403, PAGE_CLOSED % self.addr)
        if self._session(info) is None:
            return Response(401, "log in first: open the status page\n")
        return None

    def action_refusal(self, info) -> Optional[Response]:
        """None when a POST may change something: a live session, its CSRF token (form field `csrf` or header
        X-CSRF-Token) and not sent from another site; else the answer (403, or 401 without a session)."""
        if not self.password_hash:
            return Response(403, READ_ONLY)
        session = self._session(info)
        if session is None:
            return Response(401, "log in first: open the status page\n")
        # browsers that send Sec-Fetch-Site say outright when a form was posted from another site
        if info.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return Response(403, "refused: this request came from another site\n")
        token = info.form.get("csrf") or info.headers.get("X-CSRF-Token")
        if not login.csrf_matches(session, token):
            return Response(403, "refused: missing or wrong CSRF token (reload the page)\n")
        return None

    def _login(self, info):
        if not self.password_hash:
            return Response(404, "no login: http.password_hash is not set\n")
        if not self.sessions.login_allowed():
            return _login_page(self.pipeline.config.device_id, "Too many wrong passwords: wait a minute.", 429)
        if not login.verify_password(info.form.get("password", ""), self.password_hash):
            self.sessions.login_failed()
            log.warning("status page: a login with a wrong password was refused")
            return _login_page(self.pipeline.config.device_id, "Wrong password.", 403)
        token, _ = self.sessions.create()
        log.info("status page: logged in (session for %.1f h)", self.sessions.lifetime_ns / 3.6e12)
        return _redirect_to_page(_session_cookie(token, int(self.sessions.lifetime_ns // 10 ** 9), info))

    def _logout(self, info):
        refusal = self.action_refusal(info)
        if refusal is not None:
            return refusal
        self.sessions.end(login.cookie_token(info.headers.get("Cookie")))
        return _redirect_to_page(_session_cookie("", 0, info))

    def close(self):
        """End every MJPEG stream (within 1/live_fps s); the daemon calls it when it stops."""
        self.stop_event.set()

    def images_allowed(self):
        """Whether images may be shown: the running config's detection.snapshot.enabled."""
        return bool(self.pipeline.config.detection.snapshot.enabled)

    # ------------------------------------------------------------------ JSON

    def status(self):
        """Health, cameras (up, fps, probabilities, active alerts, live URL), sinks and recent alerts."""
        pipeline = self.pipeline
        health = pipeline.health()
        images = self.images_allowed()
        engine = pipeline.runner.engine if pipeline.runner is not None else None
        return {
            "device": pipeline.config.device_id,
            "time_ns": wall_ns(),
            "ok": health["ok"],
            "problems": health["problems"],
            "images": images,
            "live_interval_ms": int(1000 / self.live_fps),
            "labels": list(self.live_view.labels),
            "model": "%s-%s" % (pipeline.spec.name, pipeline.spec.version),
            "engine": {"name": health["engine"]["name"], "provider": getattr(engine, "provider", None),
                       "decided": health["engine"]["decided"]},
            "cameras": self._cameras(health["cameras"], images),
            "sinks": [dict(sink, name=name) for name, sink in sorted(health["sinks"].items())],
            "alerts": [_alert_row(event, images) for event in pipeline.outbox.recent(self.recent_alerts)],
            "incidents": incident_rows(pipeline.outbox.recent_incidents(self.recent_incidents), images),
        }

    def _api_status(self, info):
        return self.read_refusal(info) or json_response(self.status())

    def _cameras(self, sources, images):
        fps = self.pipeline.postprocessor.fps.value if self.pipeline.postprocessor is not None else {}
        now = monotonic_ns()
        rows = []
        for name in sorted(set(sources) | set(self.live_view.cameras())):
            source = sources.get(name, {})
            live = self.live_view.state(name, now) or {"seq": None, "probabilities": {}, "active": [], "age_s": None}
            row = {"name": name, "up": bool(source.get("up")), "state": source.get("state"),
                   "error": source.get("error"), "frames": source.get("frames", 0),
                   "problem": source.get("problem"), "problem_text": source.get("problem_text", ""),
                   "overlays": [{"name": n, "polygon": [list(p) for p in corners]}
                                for n, corners in self.live_view.overlays.get(name, [])],
                   "fps": round(fps[name], 2) if name in fps else None,  # measured over the first 2 s
                   "live_url": "live/%s.jpg" % quote(name, safe="") if images and live["seq"] is not None else None}
            row.update(live)
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ images

    def _live_jpeg(self, rest, query):
        if not rest.endswith(".jpg"):
            return Response(404, "not found\n")
        if not self.images_allowed():
            return Response(403, IMAGES_OFF)
        encoded = self.live_view.jpeg(unquote(rest[:-4]), self.pipeline.config.detection.snapshot)
        if encoded is None:
            return Response(404, "no frame decided yet for this camera\n")
        return Response(200, encoded.jpeg, "image/jpeg", headers={"X-Frame-Seq": str(encoded.seq)})

    def _alert_snapshot(self, rest, query):
        match = re.match(r"^(\d{1,18})\.jpg$", rest)
        if match is None:
            return Response(404, "not found\n")
        if not self.images_allowed():
            return Response(403, IMAGES_OFF)
        jpeg = self.pipeline.outbox.snapshot(int(match.group(1)))
        if jpeg is None:
            return Response(404, "this alert has no snapshot (none taken, or dropped to keep the outbox small)\n")
        return Response(200, jpeg, "image/jpeg")

    def _stream(self, rest, query, request):
        camera = unquote(rest[:-5]) if rest.endswith(".mjpg") else None
        if camera is None or camera not in self.pipeline.captures:
            return _send_text(request, 404, "not found\n")
        if not self.images_allowed():
            return _send_text(request, 403, IMAGES_OFF)
        with self._streams_lock:
            if self._streams >= MAX_STREAMS:
                return _send_text(request, 503, "too many live streams (at most %d)\n" % MAX_STREAMS)
            self._streams += 1
        try:
            self._write_mjpeg(camera, request)
        finally:
            with self._streams_lock:
                self._streams -= 1

    def _write_mjpeg(self, camera, request):
        request.close_connection = True
        try:
            request.connection.settimeout(STREAM_WRITE_TIMEOUT_S)
            request.send_response(200)
            request.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
            request.send_header("Cache-Control", "no-store")
            request.send_header("Connection", "close")
            request.end_headers()
            last_seq = None
            while not self.stop_event.is_set() and self.images_allowed():
                encoded = self.live_view.jpeg(camera, self.pipeline.config.detection.snapshot)
                if encoded is not None and encoded.seq != last_seq:
                    last_seq = encoded.seq
                    request.wfile.write(_mjpeg_part(encoded))
                    request.wfile.flush()
                self.stop_event.wait(1.0 / self.live_fps)
            request.wfile.write(("--%s--\r\n" % BOUNDARY).encode("ascii"))
        except (OSError, socket.timeout) as e:  # the client went away or stopped reading
            log.debug("status: MJPEG stream of %s ended: %s", camera, e)

    # ------------------------------------------------------------------ page

    def _page(self, info):
        if not self.open_without_login and not self.password_hash:
            return Response(403, PAGE_CLOSED % self.addr)
        session = self._session(info) if self.password_hash else None
        if self.password_hash and session is None:
            return _login_page(self.pipeline.config.device_id)
        account = ""
        if session is not None:   # the CSRF token goes only into a page served to its own session
            account = ('<form method="post" action="logout"><input type="hidden" name="csrf" value="%s">'
                       '<button id="logout">Log out</button></form>' % html.escape(session.csrf))
        page = PAGE.replace("{{account}}", account).replace("{{device}}", _device_name(self.pipeline.config))
        return _html(200, page)


def _device_name(config):
    return html.escape(config.device_id or "firedetd")


def _html(status, page, headers=None):
    return Response(status, page, "text/html; charset=utf-8",
                    headers=dict({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                  "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}, **(headers or {})))


def _login_page(device_id, message="", status=200):
    page = LOGIN_PAGE.replace("{{device}}", html.escape(device_id or "firedetd"))
    return _html(status, page.replace("{{message}}", html.escape(message)))


def _session_cookie(token, max_age_s, info):
    # no Path: the browser scopes the cookie to the directory the login was posted from, so behind a proxy's
    # sub-path (/firedetd/) it is not sent to the other applications on that host
    cookie = "%s=%s; Max-Age=%d; HttpOnly; SameSite=Strict" % (login.COOKIE, token, max_age_s)
    if info.headers.get("X-Forwarded-Proto", "").lower() == "https":
        cookie += "; Secure"
    return cookie


def _redirect_to_page(cookie):
    # 303: the browser follows with a GET, so a reload does not post the form again
    return Response(303, "", headers={"Location": "./", "Set-Cookie": cookie})


def incident_rows(pairs, images) -> List[dict]:
    """One row per incident from Outbox.recent_incidents: its camera, kind, when it was raised, escalated and
    cleared, its peak score, the snapshots and the delivery state of its events; newest incident first."""
    incidents = collections.OrderedDict()
    for event, ongoing in pairs:
        row = incidents.get(event["id"])
        if row is None:
            row = incidents[event["id"]] = {
                "id": event["id"], "camera": event["camera"], "kind": event["kind"], "first_kind": event["kind"],
                "started_ns": event["started_ns"], "escalated_ns": None, "cleared_ns": None, "last_event_ns": 0,
                "peak_score": 0.0, "ongoing": ongoing, "snapshot_url": None, "escalation_snapshot_url": None,
                "deliveries": {}}
        row["last_event_ns"] = max(row["last_event_ns"], event["event_ns"])
        row["peak_score"] = max(row["peak_score"], event.get("peak_score") or 0.0, event.get("score") or 0.0)
        snapshot = "alerts/%d.jpg" % event["row_id"] if images and event.get("snapshot_bytes") else None
        if event["state"] == "raised":
            row["first_kind"] = event["kind"]
            row["snapshot_url"] = snapshot
        elif event["state"] == "escalated":
            row["escalated_ns"] = event["event_ns"]
            row["escalation_snapshot_url"] = snapshot
        elif event["state"] == "cleared":
            row["cleared_ns"] = event["event_ns"]
        for sink, d in event["deliveries"].items():
            total = row["deliveries"].setdefault(sink, {"delivered": 0, "pending": 0, "last_error": None})
            if d["delivered_ns"] is not None:
                total["delivered"] += 1
            else:
                total["pending"] += 1
                total["last_error"] = total["last_error"] or d["last_error"]
    # events arrive newest first, so the first kind seen is the incident's latest (fire after an escalation)
    return sorted(incidents.values(), key=lambda r: r["started_ns"], reverse=True)


def _alert_row(event, images):
    has_snapshot = images and bool(event.get("snapshot_bytes"))
    deliveries = {sink: {"delivered": d["delivered_ns"] is not None, "attempts": d["attempts"],
                         "last_error": d["last_error"]} for sink, d in event["deliveries"].items()}
    row = {key: event.get(key) for key in ("row_id", "id", "camera", "kind", "state", "score", "peak_score",
                                           "started_ns", "event_ns", "frame_seq", "latency_ms", "snapshot_dropped")}
    row.update(deliveries=deliveries,
               snapshot_url="alerts/%d.jpg" % event["row_id"] if has_snapshot else None)
    return row


def _mjpeg_part(encoded):
    head = "--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Seq: %d\r\n\r\n" % (
        BOUNDARY, len(encoded.jpeg), encoded.seq)
    return head.encode("ascii") + encoded.jpeg + b"\r\n"


def _send_text(request, status, text):
    body = text.encode("utf-8")
    try:
        request.send_response(status)
        request.send_header("Content-Type", "text/plain; charset=utf-8")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
    except OSError:
        pass


# Everything inline: the page must work on a device without network. Strings from the device (camera names,
# errors, sink names) reach the DOM only through textContent and encoded URLs, never as markup. URLs are
# relative, so the page also works behind a reverse proxy that serves it under a sub-path.
CSP = ("default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

# shared by the page and the login form; below 640 px tables become one card per row (a 390 px phone showed
# the alert table wider than the screen and the delivery column one letter per line)
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f3f4f6;color:#111}
header{display:flex;flex-wrap:wrap;gap:.3em 1em;align-items:baseline;padding:.6em 1.2em;background:#1f2937;
color:#fff}header h1{font-size:1.2em;margin:0}header form{margin-left:auto}
main{padding:1em 1.2em}h2{font-size:1.05em;margin:1.2em 0 .4em}
.badge{display:inline-block;padding:0 .5em;border-radius:.6em;font-size:.85em;font-weight:600}
.ok{background:#d1fae5;color:#065f46}.bad{background:#fee2e2;color:#991b1b}.muted{color:#6b7280}
.note{background:#fef3c7;border:1px solid #f59e0b;padding:.5em .8em;border-radius:.3em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(340px,100%),1fr));gap:1em}
.camera{background:#fff;border-radius:.4em;padding:.7em;box-shadow:0 1px 2px #0002;min-width:0}
.camera.degraded{outline:3px solid #dc2626}
.camera h3{margin:0 0 .4em;font-size:1em;display:flex;flex-wrap:wrap;gap:.3em .5em;align-items:center}
.live{width:100%;aspect-ratio:16/9;object-fit:contain;background:#111;display:block;border-radius:.2em}
.prob{display:grid;grid-template-columns:4.5em 1fr 3.5em;gap:.4em;align-items:center;margin-top:.3em}
.bar{background:#e5e7eb;height:.7em;border-radius:.35em;overflow:hidden}
.fill{background:#6b7280;height:100%}.fill.fire{background:#dc2626}.fill.smoke{background:#2563eb}
.alerting{background:#dc2626;color:#fff}.masks{margin:.3em 0 0;font-size:.9em}
table{border-collapse:collapse;background:#fff;width:100%}th,td{padding:.3em .6em;text-align:left;
border-bottom:1px solid #e5e7eb;vertical-align:middle;overflow-wrap:anywhere}.thumb{height:54px;display:block}
.cols{display:grid;grid-template-columns:2fr 1fr;gap:1em}footer{padding:1em 1.2em;color:#6b7280}
button{font:inherit;padding:.3em .9em}input{font:inherit;padding:.3em}
@media (max-width:640px){
main{padding:.6em}header{padding:.5em .7em}.cols{grid-template-columns:1fr}
table.cards thead{display:none}table.cards,table.cards tbody{display:block;background:none}
table.cards tr{display:block;background:#fff;border-radius:.4em;margin-bottom:.6em;padding:.3em 0;
box-shadow:0 1px 2px #0002}
table.cards td{display:flex;gap:1em;justify-content:space-between;border:0;padding:.15em .7em;text-align:right}
table.cards td::before{content:attr(data-label);font-weight:600;color:#6b7280;text-align:left;flex:none}
table.cards .thumb{height:auto;max-width:60%}
}
"""

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>firedetd &middot; {{device}} &middot; log in</title><style>""" + STYLE + """
form.login{background:#fff;max-width:22em;margin:2em auto;padding:1em 1.2em;border-radius:.4em;
box-shadow:0 1px 2px #0002;display:grid;gap:.6em}</style></head>
<body><header><h1>firedetd</h1><span>{{device}}</span></header>
<main><form class="login" method="post" action="login"><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<button id="login" type="submit">Log in</button><p id="message" class="bad">{{message}}</p></form></main>
</body></html>
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>firedetd &middot; {{device}}</title>
<style>""" + STYLE + """</style></head>
<body>
<header><h1>firedetd</h1><span id="device">{{device}}</span><span id="health" class="badge">connecting</span>
<span id="updated" class="muted"></span>{{account}}</header>
<main>
<p id="privacy" class="note" hidden>Images are off (detection.snapshot.enabled is false): no live view, and
incidents are listed without snapshots.</p>
<p id="problems" class="note" hidden></p>
<section id="cameras" class="grid"></section>
<h2>Incidents</h2>
<table id="incidents" class="cards"><thead><tr><th>Raised</th><th>Camera</th><th>Kind</th><th>Escalated</th>
<th>Cleared</th><th>Peak</th><th>Delivery</th><th>Snapshot</th></tr></thead><tbody></tbody></table>
<p id="no-incidents" class="muted" hidden>No incident in the outbox.</p>
<div class="cols"><div><h2>Alert sinks</h2><table id="sinks"><thead><tr><th>Sink</th><th>Thread</th>
<th>Pending</th></tr></thead><tbody></tbody></table></div>
<div><h2>Engine</h2><table id="engine"><tbody></tbody></table></div></div>
</main>
<footer>Refreshed every second &middot; <a href="api/status">/api/status</a> &middot; <a href="metrics">/metrics</a>
&middot; <a href="healthz">/healthz</a></footer>
<script>
"use strict";
const cards = new Map(), incidentRows = new Map();
let liveTimer = null, status = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function pad(n) { return String(n).padStart(2, "0"); }
// local date and time, year first: an incident from last week must not read like one from this morning
function fmtDateTime(ns) {
  if (!ns) return "";
  const d = new Date(ns / 1e6);
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
    pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}
function fmtTime(ns) { return ns ? new Date(ns / 1e6).toLocaleTimeString() : ""; }

function cameraCard(cam) {
  const card = el("article", "camera"), h = el("h3");
  card.dataset.camera = cam.name;
  const name = el("span", "", cam.name), up = el("span", "badge"), fps = el("span", "muted"),
        active = el("span", "badge alerting"), problem = el("span", "badge bad");
  h.append(name, up, fps, active, problem);
  const img = el("img", "live");
  img.alt = "live view of " + cam.name;
  const probs = el("div", "probs"), error = el("p", "muted"), masks = el("p", "masks muted");
  card.append(h, img, masks, error, probs);
  document.getElementById("cameras").append(card);
  return {card, up, fps, active, problem, img, masks, error, probs, bars: new Map(), loading: false};
}

function updateCard(cam, labels) {
  let c = cards.get(cam.name);
  if (!c) { c = cameraCard(cam); cards.set(cam.name, c); }
  c.up.textContent = cam.up ? "up" : (cam.state || "down");
  c.up.className = "badge " + (cam.up ? "ok" : "bad");
  c.fps.textContent = cam.fps === null ? "measuring fps" : cam.fps.toFixed(1) + " fps";
  c.error.textContent = cam.up ? (cam.problem_text || "") : (cam.error || "");
  c.problem.textContent = cam.problem ? "NO PICTURE: " + cam.problem.replace("_", " ") : "";
  c.problem.hidden = !cam.problem;
  c.card.classList.toggle("degraded", !!cam.problem || !cam.up);
  c.active.textContent = cam.active.map(k => k.toUpperCase()).join(" + ");
  c.active.hidden = cam.active.length === 0;
  // the outlines are drawn on the live view; named here too, so they show while images are off
  const shapes = (cam.overlays || []).map(o => o.name);
  c.masks.textContent = shapes.length ? "Outlined: " + shapes.join(", ") : "No mask, whole frame watched";
  c.img.hidden = !cam.live_url;
  c.liveUrl = cam.live_url;
  for (const label of labels) {
    let b = c.bars.get(label);
    if (!b) {
      const row = el("div", "prob"), bar = el("div", "bar"), fill = el("div", "fill " + label), value = el("span");
      row.append(el("span", "", label), bar, value);
      bar.append(fill);
      c.probs.append(row);
      b = {fill, value};
      c.bars.set(label, b);
    }
    const p = cam.probabilities[label];
    b.fill.style.width = p === undefined ? "0" : (100 * p).toFixed(1) + "%";
    b.value.textContent = p === undefined ? "-" : p.toFixed(3);
  }
}

function refreshLive() {
  // load the next frame off-screen and swap it in when complete: no flicker, one request in flight per camera
  for (const c of cards.values()) {
    if (!c.liveUrl || c.loading) continue;
    c.loading = true;
    const next = new Image();
    next.className = "live";
    next.alt = c.img.alt;
    next.onload = () => { c.img.replaceWith(next); c.img = next; c.loading = false; };
    next.onerror = () => { c.loading = false; };
    next.src = c.liveUrl + "?t=" + Date.now();
  }
}

function deliveryText(deliveries) {
  const parts = [];
  for (const [sink, d] of Object.entries(deliveries)) {
    parts.push(sink + ": " + (d.pending ? d.pending + " pending" + (d.last_error ? " (" + d.last_error + ")" : "")
                                        : "delivered"));
  }
  return parts.join("; ") || "outbox only";
}

function snapshotCell(url, alt) {
  const td = el("td");
  td.dataset.label = "Snapshot";
  if (!url) { td.append(el("span", "muted", "-")); return td; }
  const link = el("a"), img = el("img", "thumb");
  link.href = url;
  img.src = url;
  img.alt = alt;
  link.append(img);
  td.append(link);
  return td;
}

function updateIncidents(incidents) {
  const body = document.querySelector("#incidents tbody"), keep = new Set();
  document.getElementById("no-incidents").hidden = incidents.length > 0;
  incidents.forEach((a, i) => {
    keep.add(a.id);
    let r = incidentRows.get(a.id);
    if (!r) {
      const tr = el("tr");
      tr.dataset.incident = a.id;
      const cells = {};
      for (const label of ["Raised", "Camera", "Kind", "Escalated", "Cleared", "Peak", "Delivery"]) {
        cells[label] = el("td");
        cells[label].dataset.label = label;
        tr.append(cells[label]);
      }
      r = {tr, cells, snapshot: null};
      incidentRows.set(a.id, r);
    }
    const c = r.cells;
    c.Raised.textContent = fmtDateTime(a.started_ns);
    c.Camera.textContent = a.camera;
    c.Kind.textContent = a.kind;
    c.Escalated.textContent = a.escalated_ns ? fmtDateTime(a.escalated_ns) : "-";
    c.Cleared.textContent = a.cleared_ns ? fmtDateTime(a.cleared_ns)
                                         : "active" + (a.ongoing ? " (" + a.ongoing + " reminders)" : "");
    c.Peak.textContent = a.peak_score.toFixed(3);
    c.Delivery.textContent = deliveryText(a.deliveries);
    const url = a.escalation_snapshot_url || a.snapshot_url;
    if (r.snapshot === null || r.snapshotUrl !== url) {
      const cell = snapshotCell(url, a.kind + " snapshot from " + a.camera);
      if (r.snapshot) r.snapshot.replaceWith(cell); else r.tr.append(cell);
      r.snapshot = cell;
      r.snapshotUrl = url;
    }
    if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
  });
  for (const [id, r] of incidentRows) if (!keep.has(id)) { r.tr.remove(); incidentRows.delete(id); }
}

function fillTable(selector, rows) {
  const body = document.querySelector(selector + " tbody");
  body.replaceChildren(...rows.map(cells => {
    const tr = el("tr");
    tr.append(...cells.map(([text, cls]) => el("td", cls || "", text)));
    return tr;
  }));
}

function render(s) {
  status = s;
  const health = document.getElementById("health");
  health.textContent = s.ok ? "healthy" : "problems";
  health.className = "badge " + (s.ok ? "ok" : "bad");
  const problems = document.getElementById("problems");
  problems.textContent = s.problems.join("; ");
  problems.hidden = s.problems.length === 0;
  document.getElementById("privacy").hidden = s.images;
  document.getElementById("updated").textContent = "updated " + fmtTime(s.time_ns);
  s.cameras.forEach(cam => updateCard(cam, s.labels));
  updateIncidents(s.incidents);
  fillTable("#sinks", s.sinks.map(k => [[k.name], [k.alive ? "running" : "stopped", k.alive ? "" : "bad"],
                                         [k.pending]]));
  fillTable("#engine", [[["engine"], [s.engine.name + " (" + s.engine.provider + ")"]], [["model"], [s.model]],
                        [["frames decided"], [s.engine.decided]]]);
  if (!liveTimer && s.images) { refreshLive(); liveTimer = setInterval(refreshLive, s.live_interval_ms); }
}

async function poll() {
  try {
    const response = await fetch("api/status", {cache: "no-store"});
    // the session ended (expired, logged out elsewhere, daemon restarted): the page itself shows the login form
    if (response.status === 401) { location.reload(); return; }
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (e) {
    const health = document.getElementById("health");
    health.textContent = "unreachable";
    health.className = "badge bad";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"""
