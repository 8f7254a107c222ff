"""The one typed, validated configuration object, built once from YAML (and again on SIGHUP).

Nothing else in firedetd reads YAML or environment variables. Every error names its key path, e.g.
`cameras[1].source.uri: unsupported scheme 'htp'`; docs/config.md is generated from the fields below
(`firedetd config-doc`).
"""

import difflib
import os
import re
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

from . import paths
from .errors import ConfigError
from .inference import ENGINE_CHOICES
from .schema import build_dataclass, option
from .sources import BACKENDS as SOURCE_BACKENDS
from .sources import backends_for_scheme, source_schemes

TEST_PATTERNS = ("smpte", "snow", "black", "white", "red", "green", "blue", "ball", "gradient")
LOG_LEVELS = ("debug", "info", "warning", "error")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_source_uri(uri, path):
    """Return (scheme, rest) or raise ConfigError naming the key path and the supported schemes: those some source
    backend reads (the registry in sources/__init__.py), so a scheme no backend reads is never guessed at."""
    schemes = source_schemes()
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", uri or "")
    if not match:
        raise ConfigError("%s: %r is not a URI; use one of %s" % (
            path, uri, ", ".join(s + "://" for s in schemes)))
    scheme = match.group(1).lower()
    if scheme not in schemes:
        hint = difflib.get_close_matches(scheme, schemes, n=1)
        raise ConfigError("%s: unsupported scheme %r%s; supported: %s" % (
            path, scheme, " (did you mean %r?)" % hint[0] if hint else "", ", ".join(schemes)))
    return scheme, match.group(2)


@dataclass(frozen=True)
class SourceConfig:
    uri: str = option(doc="Where frames come from: `csi://0`, `v4l2:///dev/video0`, `rtsp://host/path`, "
                          "`file:///path/video.mp4`, `test://?pattern=ball&fps=30` (test options: pattern, fps, width, "
                          "height, live=true|false, frames=N to end after N frames).",
                      example="rtsp://192.0.2.10:554/stream1")
    backend: str = option("auto", doc="Capture backend: `gst` (GStreamer through PyGObject), `opencv` "
                                      "(cv2.VideoCapture fallback) or `auto` (gst when PyGObject imports).",
                          choices=("auto",) + tuple(SOURCE_BACKENDS))
    loop: bool = option(False, doc="file:// only: start again at the end instead of ending the run.")
    realtime: bool = option(False, doc="file:// only: pace frames at the file's own rate, like a camera "
                                       "(default: as fast as the pipeline takes them).")
    width: int = option(1280, doc="Capture width asked of csi:// and v4l2:// cameras.", minimum=16, maximum=8192)
    height: int = option(720, doc="Capture height asked of csi:// and v4l2:// cameras.", minimum=16, maximum=8192)
    fps: float = option(30.0, doc="Frame rate asked of csi://, v4l2:// and test:// sources.", minimum=0.1, maximum=240)
    latency_ms: int = option(200, doc="rtsp:// jitter-buffer latency.", minimum=0, maximum=10000)
    transport: str = option("tcp", doc="rtsp:// transport.", choices=("tcp", "udp"))
    decoder: str = option("auto", doc="Video decoder: `auto` (nvv4l2decoder on a Jetson, else software), "
                                      "`hardware` or `software`.", choices=("auto", "hardware", "software"))
    reconnect_initial_s: float = option(0.5, doc="First wait before reopening a failed source; doubles each "
                                                 "failure.", minimum=0.05, maximum=60)
    reconnect_max_s: float = option(3.0, doc="Longest wait between reconnect attempts: a camera that comes back is "
                                             "watched again within about this plus its connect time "
                                             "(docs/reliability.md).", minimum=0.1, maximum=600)
    stall_timeout_s: float = option(5.0, doc="A source that delivers no frame for this long is restarted.",
                                    minimum=0.5, maximum=600)

    @staticmethod
    def coerce(raw, path):
        return {"uri": raw} if isinstance(raw, str) else raw

    def check(self, path):
        scheme, _ = parse_source_uri(self.uri, path + ".uri")
        readers = backends_for_scheme(scheme)
        if self.backend != "auto" and self.backend not in readers:
            raise ConfigError("%s.backend: the %s backend does not read %s:// URIs (%s does); use backend: auto" % (
                path, self.backend, scheme, " or ".join(readers)))
        if (self.loop or self.realtime) and scheme != "file":
            raise ConfigError("%s.loop: loop and realtime apply to file:// sources only" % path)
        if scheme in ("test", "file"):
            self._check_local_source(scheme, path)
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ConfigError("%s.reconnect_max_s: must be >= reconnect_initial_s" % path)

    def _check_local_source(self, scheme, path):
        """What run would refuse, said now: a test:// option it does not know, a file URI without a path."""
        from .errors import SourceError
        from .sources.uri import file_path, parse_test_uri

        try:
            if scheme == "test":
                parse_test_uri(self.uri, self)
            else:
                file_path(self.uri)
        except SourceError as e:
            raise ConfigError("%s.uri: %s" % (path, e))

    def check_file_exists(self, path):
        """For check-config and run's start (not for a config read on another machine): the video is there."""
        if self.scheme != "file":
            return
        from .sources.uri import file_path

        video = file_path(self.uri)
        if not os.path.isfile(video):
            raise ConfigError("%s.uri: %s: no such file%s" % (path, video, "" if os.path.isabs(video) else
                                                             " (relative to %s)" % os.getcwd()))

    @property
    def scheme(self):
        return parse_source_uri(self.uri, "source.uri")[0]


@dataclass(frozen=True)
class CameraThresholds:
    on: Optional[float] = option(None, doc="This camera's `on` (default: detection.<kind>.on).", minimum=0.0,
                                 maximum=1.0)
    off: Optional[float] = option(None, doc="This camera's `off`.", minimum=0.0, maximum=1.0)
    raise_frames: Optional[int] = option(None, doc="This camera's `raise_frames`.", minimum=1, maximum=1000)
    clear_frames: Optional[int] = option(None, doc="This camera's `clear_frames`.", minimum=1, maximum=10000)

    def over(self, base):
        """`base` (a ThresholdConfig) with the values this camera sets."""
        return replace(base, **{k: v for k, v in self.__dict__.items() if v is not None})


@dataclass(frozen=True)
class CameraDetectionConfig:
    smoothing_alpha: Optional[float] = option(None, doc="This camera's smoothing (default: detection's).",
                                              minimum=0.01, maximum=1.0)
    clear_after_s: Optional[float] = option(None, doc="This camera's quiet time.", minimum=0, maximum=86400)
    fire: CameraThresholds = option(factory=CameraThresholds, doc="This camera's fire thresholds; unset keys "
                                                                  "come from detection.fire.")
    smoke: CameraThresholds = option(factory=CameraThresholds, doc="This camera's smoke thresholds; unset keys "
                                                                   "come from detection.smoke.")
    motion: Optional[bool] = option(None, doc="Motion as evidence on this camera (default: "
                                              "detection.motion.enabled).")

    def over(self, detection):
        """The global DetectionConfig with this camera's values in place."""
        changed = {"fire": self.fire.over(detection.fire), "smoke": self.smoke.over(detection.smoke)}
        if self.smoothing_alpha is not None:
            changed["smoothing_alpha"] = self.smoothing_alpha
        if self.clear_after_s is not None:
            changed["clear_after_s"] = self.clear_after_s
        if self.motion is not None:
            changed["motion"] = replace(detection.motion, enabled=self.motion)
        return replace(detection, **changed)


@dataclass(frozen=True)
class MaskConfig:
    polygon: Tuple[Tuple[float, ...], ...] = option(
        doc="Corners `[x, y]`, at least 3, as shares of the full camera frame (0,0 top left; 1,1 bottom right). "
            "The model never sees inside it, and motion there does not count.",
        minimum=0.0, maximum=1.0, example="[[0.1, 0.5], [0.3, 0.5], [0.3, 0.9], [0.1, 0.9]]")
    name: str = option("", doc="What the mask hides (for people reading the config and the status page).",
                       example="fireplace")

    def check(self, path):
        if len(self.polygon) < 3:
            raise ConfigError("%s.polygon: a mask needs at least 3 corners, got %d" % (path, len(self.polygon)))
        for i, point in enumerate(self.polygon):
            if len(point) != 2:
                raise ConfigError("%s.polygon[%d]: a corner is [x, y], got %d number(s)" % (path, i, len(point)))


@dataclass(frozen=True)
class CropConfig:
    x: float = option(0.0, doc="Left edge, as a share of the frame width.", minimum=0.0, maximum=1.0)
    y: float = option(0.0, doc="Top edge, as a share of the frame height.", minimum=0.0, maximum=1.0)
    width: float = option(1.0, doc="Width, as a share of the frame width.", minimum=0.05, maximum=1.0)
    height: float = option(1.0, doc="Height, as a share of the frame height.", minimum=0.05, maximum=1.0)

    def check(self, path):
        if self.x + self.width > 1.0 + 1e-9:
            raise ConfigError("%s.width: x + width = %.3g goes past the frame's right edge (1)" % (
                path, self.x + self.width))
        if self.y + self.height > 1.0 + 1e-9:
            raise ConfigError("%s.height: y + height = %.3g goes past the frame's bottom edge (1)" % (
                path, self.y + self.height))

    @property
    def is_whole_frame(self):
        return self.x == 0 and self.y == 0 and self.width == 1 and self.height == 1


@dataclass(frozen=True)
class CameraConfig:
    name: str = option(doc="Camera name: letters, digits, `_ . -`; used in metrics labels, alerts and topics.",
                       example="warehouse-east")
    source: SourceConfig = option(doc="The camera's source (a URI string, or a mapping with `uri` and options).")
    queue_size: int = option(1, doc="Latest-frame queue length: 1 = always the newest frame; older frames are "
                                    "dropped and counted.", minimum=1, maximum=8)
    enabled: bool = option(True, doc="A disabled camera is kept in the config but not opened.")
    detection: CameraDetectionConfig = option(factory=CameraDetectionConfig,
                                              doc="This camera's own detection settings, over the global ones "
                                                  "(a SIGHUP applies them).")
    masks: Tuple[MaskConfig, ...] = option(factory=tuple, doc="Regions the model must ignore: a fireplace, a neon "
                                                              "sign, a stove (drawn on the status page's live view).")
    crop: Optional[CropConfig] = option(None, doc="Watch only this part of the frame (the rest is never decided); "
                                                  "the snapshot still shows the whole frame.")
    tiles: int = option(1, doc="Tiled inference for wide views where a fire starts small: the watched region is "
                               "also decided as N x N tiles, in the same batch as the whole view (2 = 5 images a "
                               "frame). Costs N*N + 1 times the engine time.", minimum=1, maximum=4)

    def check(self, path):
        if not _NAME.match(self.name):
            raise ConfigError("%s.name: %r must be 1-64 letters, digits, '_', '.' or '-'" % (path, self.name))


@dataclass(frozen=True)
class ThresholdConfig:
    on: float = option(0.6, doc="Raise when the smoothed probability is at or above this...", minimum=0.0, maximum=1.0)
    off: float = option(0.35, doc="...clear when it is below this (hysteresis: off <= on).", minimum=0.0, maximum=1.0)
    raise_frames: int = option(3, doc="Consecutive frames at or above `on` before an alert is raised.",
                               minimum=1, maximum=1000)
    clear_frames: int = option(15, doc="Consecutive decided frames below `off` before the incident may clear "
                                       "(it also needs detection.clear_after_s of quiet).",
                               minimum=1, maximum=10000)

    def check(self, path):
        if self.off > self.on:
            raise ConfigError("%s.off: %s must not exceed on (%s)" % (path, self.off, self.on))


@dataclass(frozen=True)
class SnapshotConfig:
    enabled: bool = option(True, doc="Attach a JPEG of the triggering frame to alerts (turn off for privacy).")
    width: int = option(640, doc="Snapshot width in pixels, at most: a narrower camera keeps its own width "
                                 "(height keeps the camera's aspect).",
                        minimum=64, maximum=3840)
    jpeg_quality: int = option(85, doc="JPEG quality of snapshots.", minimum=10, maximum=100)
    draw_region: bool = option(True, doc="Outline on the snapshot where the model sees the fire or smoke (the "
                                         "alert's `region`, from the model's class activation map), labelled with "
                                         "the kind. false: the picture as the camera saw it. A model without a map "
                                         "draws nothing.")


SENSOR_KINDS = ("temperature", "gas", "smoke_detector", "generic")


@dataclass(frozen=True)
class SensorConfig:
    name: str = option(doc="Sensor name (letters, digits, `_ . -`), in logs and metrics.", example="kitchen-heat")
    topic: str = option(doc="MQTT topic the sensor publishes its readings on (one topic, no wildcards).",
                        example="zigbee2mqtt/kitchen_sensor")
    kind: str = option("generic", doc="What it measures: `temperature`, `gas`, `smoke_detector` (ON/OFF) or "
                                      "`generic`.", choices=SENSOR_KINDS)
    value_key: str = option("", doc="For JSON payloads, the key of the reading (dots for nesting: "
                                    "`air.temperature`); empty: the payload is the reading (a number, ON/OFF, "
                                    "true/false).")
    threshold: Optional[float] = option(None, doc="A reading at or above this is an alarm (ON and true read as 1, "
                                                  "OFF and false as 0). Required except for smoke_detector (0.5).")
    cameras: Tuple[str, ...] = option(factory=tuple, doc="Cameras the sensor covers (empty: every camera).")
    kinds: Tuple[str, ...] = option(factory=tuple, doc="Alert kinds its alarm supports (empty: fire and smoke).",
                                    choices=("fire", "smoke"))
    boost: float = option(0.15, doc="During a fresh alarm, the `on` threshold of those kinds on those cameras is "
                                    "this much lower (never below `off`). The camera must still see it: a sensor "
                                    "alone never raises an alert.", minimum=0.0, maximum=0.5)
    max_age_s: float = option(120.0, doc="A reading older than this (since it arrived) is ignored. Set it above "
                                         "the sensor's reporting interval.", minimum=1, maximum=86400)

    def check(self, path):
        if not _NAME.match(self.name):
            raise ConfigError("%s.name: %r must be 1-64 letters, digits, '_', '.' or '-'" % (path, self.name))
        if not self.topic or "+" in self.topic or "#" in self.topic:
            raise ConfigError("%s.topic: %r must be one topic, without the wildcards + and #" % (path, self.topic))
        if self.threshold is None and self.kind != "smoke_detector":
            raise ConfigError("%s.threshold: required for a %s sensor" % (path, self.kind))

    @property
    def alarm_threshold(self):
        return 0.5 if self.threshold is None else self.threshold


@dataclass(frozen=True)
class MotionConfig:
    enabled: bool = option(True, doc="Ask for more confidence in a scene that stands still: flames flicker and "
                                     "smoke drifts; a neon sign, a red object or a picture of a fire does not.")
    window_s: float = option(2.0, doc="How far back (media time) the picture's change is looked at.",
                             minimum=0.2, maximum=60)
    still_below: float = option(0.003, doc="The scene stands still while at most this share of the (unmasked) "
                                           "picture changed within window_s.", minimum=0.0, maximum=1.0)
    static_boost: float = option(0.2, doc="In a still scene, `on` is this much higher (at most 0.99).",
                                 minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class SignalConfig:
    enabled: bool = option(True, doc="Check every frame before it is decided: black, one flat colour, white, "
                                     "colour bars, snow and frozen pictures are counted as unusable "
                                     "(firedetd_frames_unusable_total) and never raise an alert.")
    degraded_after_s: float = option(5.0, doc="Unusable frames for this long (media time) report the camera "
                                              "degraded (healthz, status page, MQTT problem sensor); as long usable "
                                              "again reports it well.", minimum=0.5, maximum=3600)
    frozen_after_s: float = option(5.0, doc="The same picture, pixel for pixel, for this long is `frozen`.",
                                   minimum=0.5, maximum=3600)


@dataclass(frozen=True)
class DetectionConfig:
    smoothing_alpha: float = option(0.5, doc="Exponential smoothing of probabilities: weight of the newest frame "
                                             "(1 = no smoothing).", minimum=0.01, maximum=1.0)
    fire: ThresholdConfig = option(factory=ThresholdConfig, doc="Fire thresholds.")
    # smoke's `on` is higher: most of the model's false alarms on ordinary scenes are smoke (haze, steam, grey
    # skies), and smoke builds up over seconds, so it can wait for a surer score (docs/model-report.md)
    smoke: ThresholdConfig = option(factory=lambda: ThresholdConfig(on=0.8, off=0.35, raise_frames=4),
                                    doc="Smoke thresholds.")
    clear_after_s: float = option(30.0, doc="Quiet time: an incident clears only after neither fire nor smoke "
                                            "reached its `off` threshold for this long (media time). A fire that "
                                            "flares up again within it continues the same incident.",
                                  minimum=0, maximum=86400)
    cooldown_s: float = option(5.0, doc="After an incident clears, a new one on the same camera waits this long "
                                        "(media time).", minimum=0, maximum=86400)
    ongoing_interval_s: float = option(60.0, doc="While an incident lasts, an `ongoing` event is sent this often "
                                                 "(0 = never).", minimum=0, maximum=86400)
    motion: MotionConfig = option(factory=MotionConfig, doc="Motion as evidence (docs/detection.md).")
    signal: SignalConfig = option(factory=SignalConfig, doc="The signal-quality gate (docs/detection.md).")
    snapshot: SnapshotConfig = option(factory=SnapshotConfig, doc="Alert snapshots.")
    sensors: Tuple[SensorConfig, ...] = option(factory=tuple, doc="External sensors read over MQTT (broker: "
                                                                  "`sensors_mqtt`, else `alerts.mqtt`); a fresh "
                                                                  "alarm lowers thresholds (docs/sensors.md).")

    def thresholds(self, kind):
        return {"fire": self.fire, "smoke": self.smoke}[kind]


@dataclass(frozen=True)
class TensorRTConfig:
    precision: str = option("fp16", doc="Engine precision. The Nano (Maxwell) has no INT8.",
                            choices=("fp16", "fp32", "int8"))
    workspace_mib: int = option(256, doc="Builder workspace / memory-pool limit; small enough for the Nano's "
                                         "shared 4 GB.", minimum=16, maximum=65536)
    cache_dir: str = option("", doc="Where built plans are kept (default: <state_dir>/engines).")
    tactic_sources: str = option("all", doc="Kernels the builder may choose from. `all`: TensorRT's default, its "
                                            "own plus cuBLAS, cuBLASLt and cuDNN. `tensorrt`: its own only, so "
                                            "those libraries are neither loaded nor initialised (several hundred "
                                            "MiB less of the Nano's shared memory, docs/jetson.md §4; possibly "
                                            "slower kernels: measure with `firedetd bench`).",
                                 choices=("all", "tensorrt"))


@dataclass(frozen=True)
class ModelConfig:
    spec: str = option("", doc="Model spec JSON (labels, input, files); default: the shipped "
                               "`engines/firedetd.json`.")
    engine: str = option("auto", doc="Inference backend, or `auto`: the first of the others, in this order, that "
                                     "can run here (TensorRT when it imports and a GPU exists, else ONNX Runtime).",
                         choices=ENGINE_CHOICES)
    variant: str = option("fp32", doc="Which model file of the spec ONNX Runtime loads (`fp32`, `int8`, ...).")
    threads: int = option(2, doc="Intra-op threads for ONNX Runtime (the Nano and these hosts have few cores).",
                          minimum=1, maximum=64)
    max_batch: int = option(4, doc="Most frames (one per camera) the runner batches into one engine call.",
                            minimum=1, maximum=64)
    batch_timeout_ms: float = option(5.0, doc="How long the runner waits for more cameras' frames to fill a batch.",
                                     minimum=0, maximum=1000)
    cuda: bool = option(True, doc="ONNX Runtime: use the CUDA execution provider when present.")
    tensorrt: TensorRTConfig = option(factory=TensorRTConfig, doc="TensorRT engine building and cache.")


@dataclass(frozen=True)
class WebhookConfig:
    url: str = option(doc="Where alerts are POSTed (http:// or https://).", example="https://alerts.example/firedetd")
    name: str = option("", doc="Sink name for metrics and the outbox (default: `webhook-` and 8 hex digits of the "
                               "URL's sha256, so a sink is its URL). Renaming a sink, or changing the URL of an "
                               "unnamed one, starts a new delivery queue: the old one's undelivered events are "
                               "dropped with a warning naming how many.")
    secret_env: str = option("", doc="Name of an environment variable holding the HMAC-SHA256 signing secret.")
    secret_file: str = option("", doc="File holding the signing secret (e.g. a systemd credential).")
    timeout_s: float = option(5.0, doc="Per-request timeout.", minimum=0.1, maximum=300)
    verify_tls: bool = option(True, doc="Verify https certificates (keep on outside a lab).")
    include_snapshot: bool = option(True, doc="Send the snapshot (base64 JPEG) in the body.")
    headers: Dict[str, str] = option(factory=dict, doc="Extra HTTP headers (e.g. Authorization).")

    def check(self, path):
        check_http_url(self.url, path + ".url")
        for name, value in self.headers.items():
            if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name):
                raise ConfigError("%s.headers: %r is not a valid HTTP header name" % (path, name))
            if re.search(r"[\r\n\x00]", value):
                raise ConfigError("%s.headers.%s: the value holds a line break or NUL (a trailing newline from a "
                                  "pasted token?)" % (path, name))
        if self.secret_env and self.secret_file:
            raise ConfigError("%s.secret_env: give secret_env or secret_file, not both" % path)

    def resolve_secret(self, path, environ):
        """The signing secret from the environment or a file (never from the YAML itself), or ''."""
        if self.secret_env:
            if self.secret_env not in environ:
                raise ConfigError("%s.secret_env: environment variable %s is not set" % (path, self.secret_env))
            secret = environ[self.secret_env].strip()
            if not secret:  # an empty secret would send unsigned webhooks to a receiver that expects signed ones
                raise ConfigError("%s.secret_env: environment variable %s is empty" % (path, self.secret_env))
            return secret
        if self.secret_file:
            try:
                with open(self.secret_file, "rb") as f:
                    secret = f.read().decode("utf-8").strip()
            except OSError as e:
                raise ConfigError("%s.secret_file: cannot read %s (%s)" % (path, self.secret_file, e.strerror))
            except UnicodeDecodeError as e:
                raise ConfigError("%s.secret_file: %s is not UTF-8 text (byte %d)" % (path, self.secret_file, e.start))
            if not secret:
                raise ConfigError("%s.secret_file: %s is empty" % (path, self.secret_file))
            return secret
        return ""


@dataclass(frozen=True)
class MqttConfig:
    host: str = option("127.0.0.1", doc="MQTT broker host.")
    port: int = option(1883, doc="Broker port.", minimum=1, maximum=65535)
    username: str = option("", doc="Username, if the broker wants one.")
    password_env: str = option("", doc="Environment variable holding the password.")
    tls: bool = option(False, doc="Connect with TLS (certificate verified).")
    topic_prefix: str = option("firedetd", doc="Topics are <prefix>/<device_id>/... (no `+` or `#`: a broker drops "
                                               "every connection that publishes to a wildcard).")
    discovery: bool = option(True, doc="Publish Home Assistant MQTT discovery configs.")
    discovery_prefix: str = option("homeassistant", doc="Home Assistant discovery prefix.")
    qos: int = option(1, doc="QoS of alert events and states. 1 or 2: an event counts as delivered once the broker "
                             "acknowledged it; 0: once it left this device (no acknowledgement exists; see "
                             "docs/mqtt.md).", choices=(0, 1, 2))
    include_snapshot: bool = option(False, doc="Publish snapshots (binary JPEG) on "
                                                "<prefix>/<device>/<camera>/snapshot, retained, and announce a Home "
                                                "Assistant `image` entity per camera showing the last alert's "
                                                "picture (docs/mqtt.md).")
    timeout_s: float = option(10.0, doc="How long one delivery waits for a connection and for the broker's "
                                        "acknowledgement before it fails and the outbox retries it.",
                              minimum=0.1, maximum=300)
    keepalive_s: int = option(30, doc="MQTT keepalive: a dead connection is noticed (and the last will "
                                      "published) within about 1.5x this.", minimum=5, maximum=3600)
    status_interval_s: float = option(10.0, doc="How often each camera's FPS is published; fire/smoke state "
                                                "changes are published at once.", minimum=0.5, maximum=3600)

    def check(self, path):
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if "+" in value or "#" in value or "\x00" in value:
                raise ConfigError("%s.%s: %r must not hold the wildcards + or # (the broker would drop every "
                                  "connection that publishes there)" % (path, key, value))
        if not self.host.strip() or re.search(r"\s", self.host):
            raise ConfigError("%s.host: %r is not a host name" % (path, self.host))

    def resolve_password(self, path, environ):
        """The broker password from the environment (never from the YAML itself), or ''."""
        if not self.password_env:
            return ""
        if self.password_env not in environ:
            raise ConfigError("%s.password_env: environment variable %s is not set" % (path, self.password_env))
        return environ[self.password_env]


@dataclass(frozen=True)
class SensorBrokerConfig:
    host: str = option("127.0.0.1", doc="MQTT broker host.")
    port: int = option(1883, doc="Broker port.", minimum=1, maximum=65535)
    username: str = option("", doc="Username, if the broker wants one.")
    password_env: str = option("", doc="Environment variable holding the password.")
    tls: bool = option(False, doc="Connect with TLS (certificate verified).")
    keepalive_s: int = option(30, doc="MQTT keepalive.", minimum=5, maximum=3600)

    def resolve_password(self, path, environ):
        """The broker password from the environment (never from the YAML itself), or ''."""
        if self.password_env and self.password_env not in environ:
            raise ConfigError("%s.password_env: environment variable %s is not set" % (path, self.password_env))
        return environ[self.password_env] if self.password_env else ""


@dataclass(frozen=True)
class OutboxConfig:
    max_mb: float = option(64.0, doc="Size cap of the outbox. Above it, snapshots are dropped oldest first (delivered "
                                     "before pending), then delivered history; undelivered alerts are never dropped.",
                           minimum=1, maximum=100000)
    keep_delivered_h: float = option(24.0, doc="Delivered alerts are kept this long for the status page, then "
                                               "deleted.", minimum=0, maximum=87600)
    retry_initial_s: float = option(1.0, doc="First retry delay after a failed delivery; doubles each failure "
                                             "(with jitter).", minimum=0.01, maximum=3600)
    retry_max_s: float = option(300.0, doc="Longest retry delay.", minimum=0.1, maximum=86400)


@dataclass(frozen=True)
class AlertsConfig:
    webhooks: Tuple[WebhookConfig, ...] = option(factory=tuple, doc="Webhook sinks.")
    mqtt: Optional[MqttConfig] = option(None, doc="MQTT sink (needs the `mqtt` extra).")
    log: bool = option(True, doc="Also write each alert event to the log.")
    outbox: OutboxConfig = option(factory=OutboxConfig, doc="The durable SQLite outbox.")

    def check(self, path):
        names = [webhook_name(w) for w in self.webhooks]
        for i, name in enumerate(names):
            if names.index(name) != i:
                what = "sink name %r" % name if self.webhooks[i].name else "URL %s" % redact_url(self.webhooks[i].url)
                raise ConfigError("%s.webhooks[%d]: %s is used twice (also webhooks[%d]%s)" % (
                    path, i, what, names.index(name), "" if self.webhooks[i].name else "; give each a name"))


def _with_plugin_sinks(base):
    """`base` plus one list key per sink kind that declares its options beside its code (`SinkKind.options`):
    the sink's one file and one registry line are all it takes to get a validated, documented config block."""
    from dataclasses import make_dataclass

    from .alerts import SINKS, options_class

    extra = []
    for kind in SINKS.values():
        cls = options_class(kind)
        if cls is not None:
            doc = (cls.__doc__ or "").strip().split("\n")[0]
            extra.append((kind.config_key, Tuple[cls, ...], option(factory=tuple, doc=doc)))
    merged = make_dataclass(base.__name__, extra, bases=(base,), frozen=True)
    merged.__module__ = base.__module__
    merged.__doc__ = base.__doc__
    return merged


AlertsConfig = _with_plugin_sinks(AlertsConfig)


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = option(True, doc="Serve /metrics, /healthz and the status page.")
    addr: str = option("127.0.0.1:9108", doc="HOST:PORT to listen on. Loopback by default: expose it only "
                                             "behind something that authenticates.")
    status_page: bool = option(True, doc="Serve the status page at / (live view, probabilities, recent alerts, "
                                         "health; docs/status-page.md). It shows images only while "
                                         "detection.snapshot.enabled is true.")
    live_fps: float = option(2.0, doc="Most live-view JPEGs encoded per camera per second, however many pages "
                                      "or /stream/<camera>.mjpg clients watch.", minimum=0.2, maximum=30)
    password_hash: str = option("", doc="Turns on the status page's login: a `pbkdf2_sha256$ITERATIONS$SALT$HASH` "
                                        "string from `firedetd hash-password` (docs/status-page.md#login). Without "
                                        "it the page is read-only and served only when `addr` is loopback; "
                                        "/metrics and /healthz never ask for a login.",
                                example="pbkdf2_sha256$200000$...$...")
    session_h: float = option(12.0, doc="How long a login lasts (hours) before the page asks for the password "
                                        "again. Sessions are kept in memory: a restart ends them all.",
                              minimum=0.01, maximum=720)

    def check(self, path):
        host_port(self.addr, path + ".addr")
        if self.password_hash:
            from .login import parse_password_hash

            parse_password_hash(self.password_hash, path + ".password_hash")


@dataclass(frozen=True)
class WatchdogConfig:
    stall_s: float = option(10.0, doc="If no frame is decided for this long while sources are up, or a stage "
                                      "thread stops beating, watchdog pings stop (systemd restarts us).",
                            minimum=1, maximum=3600)


@dataclass(frozen=True)
class Config:
    cameras: Tuple[CameraConfig, ...] = option(factory=tuple, doc="Cameras. Empty: the bundled sample video.")
    model: ModelConfig = option(factory=ModelConfig, doc="The model and its engine.")
    detection: DetectionConfig = option(factory=DetectionConfig, doc="Smoothing, thresholds, alert lifecycle.")
    alerts: AlertsConfig = option(factory=AlertsConfig, doc="Where alerts go.")
    http: HttpConfig = option(factory=HttpConfig, doc="Metrics, health and status HTTP endpoint.")
    watchdog: WatchdogConfig = option(factory=WatchdogConfig, doc="Liveness checks behind systemd's watchdog.")
    state_dir: str = option("", doc="Outbox, engine cache and snapshots. Default: $STATE_DIRECTORY (systemd) "
                                    "or ./state.")
    device_id: str = option("", doc="This device's id in alerts, topics and metrics (default: the host name).")
    log_level: str = option("info", doc="Log level.", choices=LOG_LEVELS)
    sensors_mqtt: Optional[SensorBrokerConfig] = option(None, doc="The MQTT broker detection.sensors are read "
                                                                  "from; default: alerts.mqtt's.")

    def check(self, path):
        seen = {}
        for i, camera in enumerate(self.cameras):
            if camera.name in seen:
                raise ConfigError("cameras[%d].name: %r is already used by cameras[%d]" % (i, camera.name,
                                                                                          seen[camera.name]))
            seen[camera.name] = i
            self._check_camera_detection(i, camera)
        self._check_cameras_enabled()
        self._check_sensors(seen)

    def _check_cameras_enabled(self):
        if self.cameras and not self.active_cameras:
            raise ConfigError("cameras: every camera has enabled: false; the daemon would watch nothing (enable one, "
                              "or remove `cameras` to watch the bundled sample)")

    def _check_camera_detection(self, index, camera):
        merged = camera.detection.over(self.detection)
        for kind in ("fire", "smoke"):
            thresholds = merged.thresholds(kind)
            if thresholds.off > thresholds.on:
                raise ConfigError("cameras[%d].detection.%s.off: %s must not exceed on (%s, with the global "
                                  "detection.%s)" % (index, kind, thresholds.off, thresholds.on, kind))

    def detection_for(self, camera_name):
        """The DetectionConfig a camera runs with: its cameras[].detection over the global detection."""
        for camera in self.cameras:
            if camera.name == camera_name:
                return camera.detection.over(self.detection)
        return self.detection

    def _check_sensors(self, camera_names):
        sensors = self.detection.sensors
        if sensors and self.sensors_mqtt is None and self.alerts.mqtt is None:
            raise ConfigError("detection.sensors: no broker to read them from; set sensors_mqtt or alerts.mqtt")
        names = set()
        for i, sensor in enumerate(sensors):
            if sensor.name in names:
                raise ConfigError("detection.sensors[%d].name: %r is used twice" % (i, sensor.name))
            names.add(sensor.name)
            unknown = [c for c in sensor.cameras if c not in camera_names]
            if self.cameras and unknown:
                raise ConfigError("detection.sensors[%d].cameras: no camera named %r" % (i, unknown[0]))

    @property
    def active_cameras(self):
        return tuple(c for c in self.cameras if c.enabled)


def redact_url(text):
    """`text` with the user:password@ of every URL in it replaced by ***@ (for logs, errors and /healthz)."""
    return re.sub(r"(://)[^/@\s]*@", r"\1***@", text or "")


def check_http_url(url, path):
    """An http:// or https:// URL with a host and a valid port, or ConfigError naming what is wrong."""
    from urllib.parse import urlsplit

    if not re.match(r"^https?://", url or "", re.IGNORECASE):
        raise ConfigError("%s: %r must be an http:// or https:// URL" % (path, url))
    if re.search(r"\s", url):
        raise ConfigError("%s: %r holds a space or line break" % (path, url))
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("%s: %r has a port outside 1-65535 or not a number" % (path, url))
    if not parts.hostname:
        raise ConfigError("%s: %r has no host name" % (path, url))
    if port == 0:
        raise ConfigError("%s: %r has port 0" % (path, url))


def host_port(addr, path):
    """Split HOST:PORT (IPv6 as [::1]:PORT) or raise ConfigError."""
    match = re.match(r"^\[?([^\[\]]*?)\]?:(\d{1,5})$", addr or "")
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ConfigError("%s: %r must be HOST:PORT, e.g. 127.0.0.1:9108" % (path, addr))
    return match.group(1), int(match.group(2))


def yaml_loader():
    """A safe loader with YAML 1.2 booleans: only true/false. YAML 1.1 would read the threshold keys
    `on:`/`off:` (and yes/no) as booleans."""
    import re as _re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    # YAML 1.2 floats: PyYAML (YAML 1.1) reads 5e2 or 1e-3 as strings, so `max_mb: 5e2` would be refused
    Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 _re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
                                 list("-+0123456789."))

    def construct_mapping(loader, node, deep=False):
        # a key given twice would silently win over the first (a second `cameras:` drops the first list)
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: PyYAML names it below
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key %r (first given at line %d)" % (key, first.line + 1),
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Loader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    return Loader


def parse_yaml(text):
    """Parse YAML text with YAML 1.2 booleans (see yaml_loader)."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())


def read_yaml(path):
    """Parse a YAML file; syntax errors name the file, line and column."""
    import yaml

    try:
        # UTF-8 whatever the locale: Python 3.6 under LANG=C (a bare systemd unit) would read ASCII only
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read config (%s)" % (path, e.strerror or e))
    except UnicodeDecodeError as e:
        raise ConfigError("%s: not UTF-8 text (byte %d: %s)" % (path, e.start, e.reason))
    try:
        return parse_yaml(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = "%s:%d:%d" % (path, mark.line + 1, mark.column + 1) if mark else path
        kind = "YAML error" if isinstance(e, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise ConfigError("%s: %s: %s" % (where, kind, e.problem or e.context))
    except yaml.YAMLError as e:
        # reader errors (a NUL byte, a control character) carry a position, not a mark: keep it to one line
        raise ConfigError("%s: YAML error: %s" % (path, " ".join(str(e).split())))


def key_lines(text):
    """{key path tuple: 1-based line} of every mapping key and list item in YAML text, e.g.
    ("cameras", 1, "source", "uri") -> 7; {} when the text does not compose (its error is reported elsewhere)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml_loader())
    except yaml.YAMLError:
        return {}
    lines = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = path + (key_node.value,)
                lines.setdefault(child, key_node.start_mark.line + 1)
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = path + (index,)
                lines.setdefault(child, item.start_mark.line + 1)
                walk(item, child)

    if root is not None:
        walk(root, ())
    return lines


def parse_key_path(text):
    """"cameras[1].source.uri" -> ("cameras", 1, "source", "uri")."""
    parts = []
    for name, index in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def line_of_error(message, lines):
    """The file line of the key an error message starts with (`key.path: ...`), or of its nearest parent given
    in the file; None when the key is not in the file (a default, or an error without a key path)."""
    match = re.match(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): ", message)
    if not match or not lines:
        return None
    path = parse_key_path(match.group(1))
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def default_camera():
    return CameraConfig(name="sample", source=SourceConfig(uri="file://" + paths.sample_video_path()))


def build_config(raw, environ=None, cwd=None):
    """Validate a parsed mapping into a Config and fill the defaults that depend on the machine."""
    environ = os.environ if environ is None else environ
    config = build_dataclass(Config, raw)
    if not config.cameras:
        config = replace(config, cameras=(default_camera(),))
    spec = config.model.spec or paths.default_spec_path()
    if not os.path.isfile(spec):
        raise ConfigError("model.spec: model spec %s not found" % spec)
    state_dir = config.state_dir or environ.get("STATE_DIRECTORY", "").split(":")[0] or os.path.join(
        cwd or os.getcwd(), "state")
    for i, hook in enumerate(config.alerts.webhooks):
        hook.resolve_secret("alerts.webhooks[%d]" % i, environ)
    device_id = config.device_id or _hostname()
    return replace(config, model=replace(config.model, spec=os.path.abspath(spec)),
                   state_dir=os.path.abspath(state_dir), device_id=device_id)


def _hostname():
    import socket

    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "firedetd"


def load_config(path=None, environ=None):
    """Load and validate the config file (None: all defaults)."""
    raw = read_yaml(path) if path else {}
    return build_config(raw, environ)


def webhook_secrets(config, environ=None):
    # type: (Config, Optional[dict]) -> Tuple[str, ...]
    environ = os.environ if environ is None else environ
    return tuple(h.resolve_secret("alerts.webhooks[%d]" % i, environ) for i, h in enumerate(config.alerts.webhooks))


def webhook_name(hook, index=None):
    """A webhook's sink name: its `name`, else one made from its URL (`webhook-` and 8 hex digits of its sha256),
    so adding or removing another webhook never hands this one's pending events to a different receiver."""
    if hook.name:
        return hook.name
    import hashlib

    return "webhook-" + hashlib.sha256(hook.url.encode("utf-8")).hexdigest()[:8]
