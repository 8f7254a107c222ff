"""firedetd/status.py: the LiveView on real frames and trackers, and the status routes over a real running
Pipeline (test:// GStreamer source, the shipped ONNX model, a real SQLite outbox) behind a real HttpEndpoint."""

import re
import threading
from dataclasses import replace

import cv2
import numpy as np
import pytest
import requests
from support.daemon import free_port, wait_until

from firedetd.config import DetectionConfig, SnapshotConfig, build_config
from firedetd.daemon import Daemon
from firedetd.httpserver import HttpEndpoint
from firedetd.incidents import CameraTracker, Incident
from firedetd.login import COOKIE, hash_password
from firedetd.pipeline import Pipeline
from firedetd.status import LiveView, StatusPage, create_live_view
from firedetd.types import Frame, Prediction

LABELS = ("fire", "smoke", "none")
# thresholds at 0: every frame is "fire" and "smoke", so an incident (fire, with a snapshot) is raised at once
ALWAYS_ALERT = {"fire": {"on": 0.0, "off": 0.0, "raise_frames": 1},
                "smoke": {"on": 0.0, "off": 0.0, "raise_frames": 1}}


def decided(camera, seq, probs, tracker=None, value=0):
    image = np.full((8, 8, 3), value, np.uint8)
    frame = Frame(camera=camera, seq=seq, pts_ns=seq * 10 ** 8, captured_ns=seq, image=image,
                  snapshot=np.full((36, 64, 3), value, np.uint8))
    tracker = tracker or CameraTracker(camera, LABELS)
    tracker.update(probs, frame.pts_ns, DetectionConfig())
    return Prediction(frame=frame, probs=probs, engine_ms=1.0, decided_ns=10 ** 9 + seq), tracker


def test_live_view_reports_smoothed_probabilities_and_active_kinds_per_camera():
    view = LiveView(LABELS)
    prediction, tracker = decided("east", 1, (0.9, 0.05, 0.05))
    tracker.incident = Incident("fire", 0, 0.9)
    view.update(prediction, tracker)
    state = view.state("east", now_ns=3 * 10 ** 9)
    assert view.cameras() == ["east"] and view.state("west") is None
    assert state["seq"] == 1 and state["active"] == ["fire"] and state["age_s"] == pytest.approx(2.0, abs=0.01)
    assert state["probabilities"] == {"fire": 0.9, "smoke": 0.05, "none": 0.05}


def test_live_view_encodes_each_frame_once_and_at_most_max_fps():
    view = LiveView(LABELS, max_fps=2.0)
    snapshots = SnapshotConfig()
    prediction, tracker = decided("east", 1, (0.1, 0.1, 0.8), value=40)
    view.update(prediction, tracker)
    first = view.jpeg("east", snapshots, now_ns=10 ** 9)
    assert view.jpeg("east", snapshots, now_ns=5 * 10 ** 9) is first  # same frame: no new encode
    view.update(*decided("east", 2, (0.1, 0.1, 0.8), tracker, value=200))
    assert view.jpeg("east", snapshots, now_ns=10 ** 9 + 10 ** 8) is first  # 0.1 s later: under the 2 fps cap
    second = view.jpeg("east", snapshots, now_ns=2 * 10 ** 9)
    assert (first.seq, second.seq, view.encodes) == (1, 2, 2)
    image = cv2.imdecode(np.frombuffer(second.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (36, 64, 3) and abs(int(image.mean()) - 200) < 5


def test_live_view_gives_no_image_when_snapshots_are_disabled():
    view = LiveView(LABELS)
    view.update(*decided("east", 1, (0.1, 0.1, 0.8)))
    assert view.jpeg("east", SnapshotConfig(enabled=False)) is None
    assert view.encodes == 0


@pytest.mark.parametrize("http,expected", [({}, LiveView), ({"status_page": False}, type(None)),
                                           ({"enabled": False}, type(None))])
def test_live_view_exists_only_with_the_status_page(tmp_path, spec, http, expected):
    config = build_config({"http": http, "state_dir": str(tmp_path)})
    assert isinstance(create_live_view(config, spec), expected)


class RunningStatus(object):
    """A started Pipeline with a LiveView, its StatusPage registered on a real HttpEndpoint."""

    def __init__(self, tmp_path, spec, snapshot=True, device_id="lab", http=None):
        config = build_config({"cameras": [{"name": "cam.1", "source": "test://?pattern=ball&fps=15"}],
                               "detection": dict(ALWAYS_ALERT, snapshot={"enabled": snapshot}),
                               "http": dict({"live_fps": 10}, **(http or {})), "state_dir": str(tmp_path)})
        self.config = replace(config, device_id=device_id)  # bypass validation: the page must escape anything
        self.pipeline = Pipeline(self.config, spec, sink_factory=lambda cfg: [],
                                 live_view=create_live_view(self.config, spec))
        self.page = StatusPage(self.pipeline, live_fps=10)
        self.http = HttpEndpoint("127.0.0.1", 0, self.pipeline.metrics.registry, self.pipeline.health)
        self.page.register(self.http)
        self.url = "http://127.0.0.1:%d" % self.http.port

    def __enter__(self):
        self.pipeline.start()
        self.http.start()
        # asked of the page object, not over HTTP: a page behind a login answers 401 to a plain GET
        wait_until(lambda: self.page.status()["alerts"], 30, message="the first alerts")
        return self

    def __exit__(self, *exc):
        self.page.close()
        self.pipeline.stop(5)
        self.http.stop()

    def get(self, path, **kwargs):
        return requests.get(self.url + "/" + path.lstrip("/"), timeout=10, **kwargs)

    def post(self, path, **kwargs):
        return requests.post(self.url + "/" + path.lstrip("/"), timeout=10, allow_redirects=False, **kwargs)


def test_status_json_shows_cameras_probabilities_alerts_and_serves_their_images(tmp_path, spec):
    with RunningStatus(tmp_path, spec) as running:
        status = running.get("/api/status").json()
        camera = status["cameras"][0]
        live = running.get(camera["live_url"])
        raised = [a for a in status["alerts"] if a["state"] == "raised"]
        snapshot = running.get(raised[0]["snapshot_url"])
        missing = running.get("/alerts/999999.jpg")
    assert status["images"] and status["labels"] == list(LABELS) and status["engine"]["name"] == "onnxruntime"
    assert (camera["name"], camera["up"], camera["live_url"]) == ("cam.1", True, "live/cam.1.jpg")
    assert sorted(camera["probabilities"]) == sorted(LABELS)
    assert sum(camera["probabilities"].values()) == pytest.approx(1.0, abs=0.01)
    assert sorted(camera["active"]) == ["fire", "smoke"]   # one incident, which has shown both
    assert [a["kind"] for a in raised] == ["fire"] and all(a["camera"] == "cam.1" for a in raised)
    incident = status["incidents"][0]
    assert (incident["id"], incident["first_kind"]) == (raised[0]["id"], "fire")
    assert incident["started_ns"] == raised[0]["started_ns"] and incident["snapshot_url"] == raised[0]["snapshot_url"]
    for response in (live, snapshot):
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        assert response.headers["Content-Type"] == "image/jpeg" and image.shape[1] == 640
    assert missing.status_code == 404


def test_snapshots_disabled_means_no_image_on_any_route(tmp_path, spec):
    with RunningStatus(tmp_path, spec, snapshot=False) as running:
        status = running.get("/api/status").json()
        responses = [running.get(p) for p in ("/live/cam.1.jpg", "/stream/cam.1.mjpg",
                                              "/alerts/%d.jpg" % status["alerts"][0]["row_id"])]
        page = running.get("/").text
    assert status["images"] is False and status["cameras"][0]["live_url"] is None
    assert all(a["snapshot_url"] is None for a in status["alerts"])
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert "Images are off" in page


def test_mjpeg_stream_sends_new_frames_and_ends_when_the_page_closes(tmp_path, spec):
    with RunningStatus(tmp_path, spec) as running:
        response = running.get("/stream/cam.1.mjpg", stream=True)
        parts = read_mjpeg_parts(response, 2)
        ended = threading.Event()
        threading.Thread(target=lambda: (response.content, ended.set()), daemon=True).start()
        running.page.close()
        assert ended.wait(10), "the stream did not end after close()"
        assert running.get("/stream/nope.mjpg").status_code == 404
    assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    assert parts[0][0] < parts[1][0]
    assert all(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None for _, jpeg in parts)


def read_mjpeg_parts(response, count):
    """[(seq, jpeg)] of the first `count` parts of a multipart/x-mixed-replace body."""
    raw, parts = response.raw, []
    while len(parts) < count:
        headers = {}
        line = raw.readline()
        while line.strip() in (b"", b"--firedetd-frame"):
            line = raw.readline()
        while line.strip():
            name, _, value = line.decode("ascii").partition(":")
            headers[name.strip().lower()] = value.strip()
            line = raw.readline()
        parts.append((int(headers["x-frame-seq"]), raw.read(int(headers["content-length"]))))
    return parts


def test_page_is_self_contained_and_escapes_the_device_name(tmp_path, spec):
    with RunningStatus(tmp_path, spec, device_id='<img src=x onerror="alert(1)">') as running:
        response = running.get("/")
    page = response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page and "<img src=x" not in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN: the device may be offline
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_daemon_without_status_page_has_no_live_view_and_no_page(tmp_path):
    port = free_port()
    config = build_config({"cameras": [{"name": "x", "source": "test://?pattern=black&fps=10"}],
                           "http": {"addr": "127.0.0.1:%d" % port, "status_page": False}, "state_dir": str(tmp_path)})
    daemon = Daemon(config)
    thread = threading.Thread(target=daemon.run, name="test-daemon", daemon=True)
    thread.start()
    try:
        wait_until(lambda: requests.get("http://127.0.0.1:%d/healthz" % port, timeout=2).ok, 60, message="/healthz")
        page = requests.get("http://127.0.0.1:%d/" % port, timeout=5)
        status = requests.get("http://127.0.0.1:%d/api/status" % port, timeout=5)
    finally:
        daemon.request_stop()
        thread.join(15)
    assert not thread.is_alive()
    assert daemon.pipeline.live_view is None and daemon.pipeline.postprocessor.live_view is None
    assert (page.status_code, status.status_code) == (404, 404)


def test_the_live_view_outlines_a_cameras_masks_and_crop():
    from firedetd.config import CameraConfig, CropConfig, MaskConfig, SourceConfig
    from firedetd.status import camera_overlays

    camera = CameraConfig(name="east", source=SourceConfig(uri="test://"),
                          masks=(MaskConfig(polygon=((0.1, 0.1), (0.4, 0.1), (0.4, 0.4)), name="stove"),),
                          crop=CropConfig(x=0.5, width=0.5))
    overlays = camera_overlays([camera, CameraConfig(name="west", source=SourceConfig(uri="test://"))])
    assert [name for name, _ in overlays["east"]] == ["stove", "watched region"] and "west" not in overlays
    view = LiveView(LABELS, overlays=overlays)
    prediction, tracker = decided("east", 1, (0.1, 0.1, 0.8), value=0)
    view.update(prediction, tracker)
    image = cv2.imdecode(np.frombuffer(view.jpeg("east", SnapshotConfig()).jpeg, np.uint8), cv2.IMREAD_COLOR)
    amber = (image[..., 2] > 150) & (image[..., 1] > 120) & (image[..., 0] < 100)   # BGR (0, 215, 255)
    cyan = (image[..., 0] > 150) & (image[..., 1] > 150) & (image[..., 2] < 100)    # BGR (255, 255, 0)
    assert amber[:, : image.shape[1] // 2].any() and cyan[:, image.shape[1] // 2:].any()


PASSWORD = "open sesame, please"


def test_a_page_on_a_non_loopback_address_without_a_password_answers_403_but_metrics_stay_open(tmp_path, spec):
    # the endpoint itself listens on 127.0.0.1 here; the page decides from http.addr, as configured
    with RunningStatus(tmp_path, spec, http={"addr": "0.0.0.0:9108"}) as running:
        refused = [running.get(p) for p in ("/", "/api/status", "/live/cam.1.jpg", "/alerts/1.jpg",
                                            "/stream/cam.1.mjpg")]
        metrics, health = running.get("/metrics"), running.get("/healthz")
    assert [r.status_code for r in refused] == [403] * 5
    assert "http.addr 0.0.0.0:9108 is not loopback and http.password_hash is not set" in refused[0].text
    assert metrics.status_code == 200 and "firedetd_" in metrics.text and health.status_code in (200, 503)


def test_the_loopback_page_without_a_password_is_read_only(tmp_path, spec):
    with RunningStatus(tmp_path, spec) as running:
        page, status = running.get("/"), running.get("/api/status")
        logout, login_post = running.post("/logout", data={"csrf": "x"}), running.post("/login", data={"password": "x"})
    assert (page.status_code, status.status_code) == (200, 200) and "Log out" not in page.text
    assert logout.status_code == 403 and "read-only" in logout.text and login_post.status_code == 404


def test_with_a_password_the_page_asks_for_it_and_a_session_cookie_opens_it(tmp_path, spec):
    http = {"addr": "0.0.0.0:9108", "password_hash": hash_password(PASSWORD, iterations=1000)}
    with RunningStatus(tmp_path, spec, http=http) as running:
        anonymous = [running.get(p) for p in ("/", "/api/status", "/live/cam.1.jpg", "/stream/cam.1.mjpg")]
        wrong = running.post("/login", data={"password": PASSWORD[:-1]})
        right = running.post("/login", data={"password": PASSWORD}, headers={"X-Forwarded-Proto": "https"})
        cookies = {COOKIE: right.cookies[COOKIE]}
        page = running.get("/", cookies=cookies)
        status, live = running.get("/api/status", cookies=cookies), running.get("/live/cam.1.jpg", cookies=cookies)
    assert anonymous[0].status_code == 200 and 'name="password"' in anonymous[0].text
    assert [r.status_code for r in anonymous[1:]] == [401, 401, 401]
    assert wrong.status_code == 403 and "Wrong password" in wrong.text and COOKIE not in wrong.cookies
    assert (right.status_code, right.headers["Location"]) == (303, "./")
    attributes = [a.strip().lower() for a in right.headers["Set-Cookie"].split(";")]
    assert {"httponly", "samesite=strict", "secure", "max-age=43200"} <= set(attributes)
    assert 'id="logout"' in page.text and status.status_code == 200 and live.status_code == 200
    assert PASSWORD not in page.text


def test_logout_without_the_csrf_token_is_refused_and_with_it_ends_the_session(tmp_path, spec, caplog):
    caplog.set_level("DEBUG")
    http = {"password_hash": hash_password(PASSWORD, iterations=1000), "session_h": 1}
    with RunningStatus(tmp_path, spec, http=http) as running:
        cookies = {COOKIE: running.post("/login", data={"password": PASSWORD}).cookies[COOKIE]}
        csrf = re.search(r'name="csrf" value="([^"]+)"', running.get("/", cookies=cookies).text).group(1)
        without = running.post("/logout", cookies=cookies)
        wrong = running.post("/logout", cookies=cookies, data={"csrf": csrf[:-2] + "xx"})
        cross_site = running.post("/logout", cookies=cookies, data={"csrf": csrf},
                                  headers={"Sec-Fetch-Site": "cross-site"})
        still = running.get("/api/status", cookies=cookies)
        logout = running.post("/logout", cookies=cookies, headers={"X-CSRF-Token": csrf})
        after = running.get("/api/status", cookies=cookies)
        anonymous = running.post("/logout", data={"csrf": csrf})
    assert [r.status_code for r in (without, wrong, cross_site)] == [403, 403, 403]
    assert "CSRF" in without.text and still.status_code == 200
    assert logout.status_code == 303 and "Max-Age=0" in logout.headers["Set-Cookie"]
    assert after.status_code == 401 and anonymous.status_code == 401
    assert PASSWORD not in caplog.text and csrf not in caplog.text and cookies[COOKIE] not in caplog.text


def test_a_post_body_larger_than_a_form_is_refused_unread(tmp_path, spec):
    with RunningStatus(tmp_path, spec, http={"password_hash": hash_password(PASSWORD, iterations=1000)}) as running:
        response = running.post("/login", data={"password": "x" * 10000})
    assert response.status_code == 413
