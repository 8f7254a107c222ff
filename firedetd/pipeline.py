"""Wires the stages and owns their lifecycle: start, liveness, reload (SIGHUP), drain and stop.

    capture-<camera> --Frame--> FrameQueues --Frame--> engine --Prediction--> postprocess --Alert-->
    outbox (SQLite) --> deliver-<sink> threads;  http: /metrics /healthz /status

Tests build the same Pipeline with their own sources, engines or sinks.
"""

import logging
import os
import queue
import threading

from . import __version__, alerts
from .alerts.delivery import DeliveryThread
from .alerts.outbox import Outbox, OutboxWriter, read_spilled
from .clock import monotonic_ns, wall_ns
from .config import CameraDetectionConfig, redact_url
from .errors import EngineError, FiredetdError, SourceError
from .framequeue import FrameQueues
from .incidents import ALERT_KINDS
from .inference import create_engine
from .metrics import Metrics
from .postprocess import Postprocessor
from .runner import EngineRunner
from .sensors import start_sensor_input
from .signal_quality import PROBLEMS, REASONS, SignalGate
from .sources import Geometry, create_source
from .sources.capture import FAILED, FINISHED, CaptureThread
from .sources.region import WatchedRegion
from .statedir import lock_state_dir, spill_path
from .types import ALERT_STATES

log = logging.getLogger(__name__)

PREDICTION_QUEUE_SIZE = 256
FAILURES_BEFORE_UNHEALTHY = 3   # a single failed POST is retried within a second; three in a row is an outage
ENGINE_START_TIMEOUT_S = 880  # a first TensorRT build on a Nano takes minutes; the unit allows 900 s


def geometry_for(spec, detection, region=None):
    """What the camera's source must deliver: the model's input, or for a camera with a crop or tiles, the frame
    scaled so that its watched region comes out at (tiles x) the model's size."""
    snapshot_width = detection.snapshot.width if detection.snapshot.enabled else 0
    if region is None or region.size == (spec.input.width, spec.input.height):
        return Geometry(width=spec.input.width, height=spec.input.height, color=spec.input.color,
                        resize=spec.input.resize, snapshot_width=snapshot_width)
    return Geometry(width=region.size[0], height=region.size[1], color=spec.input.color, resize="stretch",
                    snapshot_width=snapshot_width)


class Pipeline(object):
    def __init__(self, config, spec, metrics=None, engine_factory=None, source_factory=create_source,
                 sink_factory=alerts.create_sinks, live_view=None, on_alert=None):
        self.config = config
        self.spec = spec
        self.metrics = metrics or Metrics()
        self.metrics.device_info.labels(config.device_id, __version__).set(1)
        self.engine_factory = engine_factory or (lambda: create_engine(spec, config.model, config.state_dir))
        self.source_factory = source_factory
        self.sink_factory = sink_factory
        self.live_view = live_view
        self.on_alert = on_alert
        self.frame_queues = FrameQueues()
        self.prediction_queue = queue.Queue(maxsize=PREDICTION_QUEUE_SIZE)
        self.captures = {}
        self.deliveries = {}
        self.sinks = []
        self.outbox = None
        self.writer = None
        self.runner = None
        self.postprocessor = None
        self.sensor_input = None
        self.state_lock = None
        self.lost_alerts = 0   # alert events neither the outbox nor the spill file took at stop (exit status 1)
        self.fatal_error = None
        self.wake_event = threading.Event()  # set when the daemon loop should look: fatal error or sources done
        self._lock = threading.Lock()
        self._started_ns = monotonic_ns()

    # ------------------------------------------------------------------ start

    def start(self):
        """Start every stage; raise EngineError/ModelError if the engine cannot be loaded, ConfigError if the
        state directory is unusable or another firedetd holds it."""
        self.state_lock = lock_state_dir(self.config.state_dir)
        self._started_ns = monotonic_ns()
        self._start_alerting()
        self._start_engine()
        self.sensor_input = start_sensor_input(self.config, self.metrics)
        self.postprocessor = Postprocessor(self.spec, self.config.detection, self.prediction_queue, self.writer,
                                           self.metrics, on_event=self._wake_deliveries, live_view=self.live_view,
                                           sensor_view=self.sensor_input,
                                           camera_detection=camera_detection(self.config),
                                           on_camera_problem=self._on_camera_problem)
        self.postprocessor.start()
        for camera in self.config.active_cameras:
            self._start_capture(camera)
        self.metrics.watch(self._stage_samples)

    def _start_alerting(self):
        outbox_cfg = self.config.alerts.outbox
        self.outbox = Outbox(os.path.join(self.config.state_dir, "outbox.sqlite"),
                             max_bytes=int(outbox_cfg.max_mb * 1024 * 1024),
                             keep_delivered_s=outbox_cfg.keep_delivered_h * 3600)
        sinks = self.sink_factory(self.config)
        self._forget_removed_sinks([s.name for s in sinks])
        self.outbox.prune(wall_ns())
        self._replace_sinks(sinks)
        self._store_spilled()

    def _store_spilled(self):
        """Alerts the last run kept in memory when its state disk was full, written to /dev/shm at its stop."""
        path = spill_path(self.config.state_dir)
        if not os.path.isfile(path):
            return
        alerts = read_spilled(path)
        for alert in alerts:
            self.writer.enqueue(alert)
        if self.writer.flush_backlog(force=True):
            os.unlink(path)
            log.warning("alerts: stored %d alert event(s) the last run could not write to its full disk (%s)",
                        len(alerts), path)

    def _spill_backlog(self):
        """At stop, with the disk still refusing: keep the in-memory alerts in /dev/shm for the next start."""
        count = self.writer.backlog_size()
        path = spill_path(self.config.state_dir)
        try:
            self.writer.spill(path)
        except OSError as e:
            self.lost_alerts = count
            log.error("alerts: %d alert event(s) could not be stored (outbox: %s; %s: %s): they are lost",
                      count, self.writer.last_error, path, e)
            return
        log.error("alerts: the outbox is still unwritable (%s); %d alert event(s) kept in %s, stored at the next "
                  "start", self.writer.last_error, count, path)

    def _forget_removed_sinks(self, names):
        """Events pending for a sink that left the config can never be delivered: say so and let them go."""
        for old in self.outbox.sinks():
            if old not in names:
                pending = self.outbox.pending_count(old)
                log.warning("alerts: sink %r is no longer configured; forgetting its %d undelivered event(s)",
                            old, pending)
                self.outbox.forget_sink(old)

    def maintain_outbox(self):
        """Delete delivered history past keep_delivered_h (called periodically by the daemon)."""
        if self.outbox is not None:
            self.outbox.prune(wall_ns())

    def _replace_sinks(self, sinks):
        for thread in self.deliveries.values():
            thread.stop(2.0)
        for sink in self.sinks:
            sink.close()
        self.sinks = sinks
        names = [s.name for s in sinks]
        if self.writer is None:
            self.writer = OutboxWriter(self.outbox, names, metrics_error=self.metrics.outbox_write_errors.inc)
        else:
            self.writer.set_sinks(names)
        self.deliveries = {}
        for sink in sinks:
            thread = DeliveryThread(sink, self.outbox, self.config.alerts.outbox, stats=self._delivery_stats(sink.name))
            self.deliveries[sink.name] = thread
            thread.start()
        log.info("alerts: %d sink(s): %s", len(sinks), ", ".join(names) or "none (outbox only)")

    def _delivery_stats(self, sink_name):
        metrics = self.metrics
        metrics.alerts_delivered.labels(sink_name)

        def on_delivered(count=1):
            metrics.alerts_delivered.labels(sink_name).inc(count)

        def on_failed(reason):
            metrics.delivery_failures.labels(sink_name, reason).inc()

        return {"delivered": on_delivered, "failed": on_failed}

    def _start_engine(self):
        self.runner = EngineRunner(self.engine_factory, self.spec, self.config.model, self.frame_queues,
                                   self.prediction_queue, self.metrics, on_fatal=self._on_fatal)
        self.runner.start()
        if not self.runner.ready.wait(ENGINE_START_TIMEOUT_S):
            self.runner.stop()   # an engine that still arrives is closed by the runner, never served
            raise EngineError("model.engine: the engine was not ready after %g s (a first TensorRT build on a Nano "
                              "takes minutes: build the plan beforehand with `firedetd build-engine`, "
                              "docs/jetson.md section 3)" % ENGINE_START_TIMEOUT_S)
        if self.runner.error is not None:
            error = self.runner.error
            if isinstance(error, FiredetdError):
                raise error
            raise EngineError("engine failed to start: %s" % error)
        engine = self.runner.engine
        model_file = self.spec.files.get(self.config.model.variant) or self.spec.files["fp32"]
        self.metrics.model_info.labels(self.spec.name, self.spec.version, model_file.sha256[:12],
                                       engine.name, engine.provider).set(1)

    def _start_capture(self, camera):
        region = WatchedRegion(camera, self.spec.input.width, self.spec.input.height)
        geometry = geometry_for(self.spec, self.config.detection, region)
        self.postprocessor.crops[camera.name] = region.crop   # alert regions come back to shares of the frame
        signal = self.config.detection.signal
        gate = SignalGate(frozen_after_s=signal.frozen_after_s, enabled=signal.enabled)
        for reason in REASONS:  # every series from the start, so a dashboard sees 0 before the first problem
            self.metrics.frames_unusable.labels(camera.name, reason)
            self.metrics.camera_degraded.labels(camera.name, reason).set(0)
        for kind in ALERT_KINDS:  # and before the first alert: increase() over a window then counts it whole
            self.metrics.alerts_raised.labels(camera.name, kind)
            self.metrics.alert_active.labels(camera.name, kind).set(0)
            for state in ALERT_STATES:
                self.metrics.alert_events.labels(camera.name, kind, state)
        thread = CaptureThread(camera, geometry, self.frame_queues, self.metrics, on_exit=self._on_capture_exit,
                               source_factory=self.source_factory, region=region, gate=gate)
        self.captures[camera.name] = thread
        thread.start()

    # ------------------------------------------------------------------ events

    def _wake_deliveries(self, alert, frame):
        for thread in list(self.deliveries.values()):
            thread.wake()
        if self.on_alert is not None:
            self.on_alert(alert, frame)

    def _on_camera_problem(self, camera, reason):
        """A camera became degraded (reason) or well again (None): tell the sinks that publish live state now."""
        self.wake_event.set()

    def _on_fatal(self, error):
        self.fatal_error = error
        self.wake_event.set()

    def _on_capture_exit(self, capture):
        if capture.state == FAILED and all(c.state == FAILED for c in self.captures.values()):
            self._on_fatal(SourceError("every camera failed for good; last: %s" % capture.error, permanent=True))
        if self.finished_sources():
            self.wake_event.set()  # the daemon loop drains what is in flight and exits

    # ------------------------------------------------------------------ state

    def finished_sources(self):
        """True when every camera's source has ended (files) or failed for good."""
        return bool(self.captures) and all(c.state in (FINISHED, FAILED) for c in self.captures.values())

    def drained(self):
        """True when nothing is left between the sources and the outbox."""
        return self.frame_queues.empty() and self.prediction_queue.unfinished_tasks == 0

    def stall_reasons(self, stall_s, now_ns=None):
        """Why the watchdog should stop pinging ([] = healthy): a stage thread dead or not beating,
        or no decision for stall_s while some source is up."""
        now = now_ns or monotonic_ns()
        limit = int(stall_s * 1e9)
        reasons = []
        for thread in self._stage_threads():
            if not thread.is_alive() and getattr(thread, "state", "") not in (FINISHED, FAILED):
                reasons.append("%s thread is dead" % thread.name)
            elif thread.is_alive() and now - thread.last_beat_ns > limit:
                reasons.append("%s thread is stuck (no heartbeat for %.1f s)" % (thread.name,
                                                                                 (now - thread.last_beat_ns) / 1e9))
        if self.runner is not None and any(c.up for c in self.captures.values()):
            newest_frame = max(c.last_frame_ns for c in self.captures.values())
            if newest_frame - max(self.runner.last_decision_ns, self._started_ns) > limit:
                reasons.append("frames arrive but none was decided for %.1f s"
                               % ((newest_frame - self.runner.last_decision_ns) / 1e9))
        return reasons

    def _stage_threads(self):
        threads = list(self.captures.values())
        for t in (self.runner, self.postprocessor):
            if t is not None:
                threads.append(t)
        return threads

    def health(self):
        reasons = self.stall_reasons(self.config.watchdog.stall_s)
        problems = self.postprocessor.camera_problems() if self.postprocessor is not None else {}
        cameras = {name: {"up": c.up, "state": c.state, "frames": c.seq, "error": c.error,
                          "problem": problems.get(name), "problem_text": PROBLEMS.get(problems.get(name), "")}
                   for name, c in self.captures.items()}
        sinks = {name: {"alive": t.is_alive(), "pending": self.outbox.pending_count(name)}
                 for name, t in self.deliveries.items()}
        reasons = reasons + self._sink_problems(sinks)
        reasons = reasons + ["camera %s: %s" % (name, PROBLEMS[reason]) for name, reason in sorted(problems.items())]
        ok = not reasons and self.writer is not None and self.writer.healthy
        return {"ok": ok, "problems": reasons + ([] if self.writer is None or self.writer.healthy
                                                 else ["outbox cannot be written: %s" % self.writer.last_error]),
                "cameras": cameras, "sinks": sinks,
                "engine": {"name": self.runner.engine.name if self.runner and self.runner.engine else None,
                           "decided": self.postprocessor.decided if self.postprocessor else 0}}

    def _sink_problems(self, sinks):
        """Alerts that cannot leave: a sink that says why (a broker down), or one whose pending events keep failing."""
        problems = []
        for sink in list(self.sinks):
            said = sink.problem()
            if said:
                problems.append("alerts to %s cannot leave: %s" % (sink.name, said))
                continue
            thread = self.deliveries.get(sink.name)
            pending = sinks.get(sink.name, {}).get("pending", 0)
            if thread is not None and pending and thread.stats.consecutive_failures >= FAILURES_BEFORE_UNHEALTHY:
                problems.append("alerts to %s are not delivered: %d pending, %d attempts failed in a row (last: %s)"
                                % (sink.name, pending, thread.stats.consecutive_failures,
                                   redact_url(thread.stats.last_error)))
        return problems

    def camera_status(self):
        """{camera: {"fire": bool, "smoke": bool, "fps": float or None, "problem": reason or None, "up": bool}}: the
        alert states, decided FPS, picture problem and whether the source delivers, now."""
        fps = dict(self.postprocessor.fps.value) if self.postprocessor is not None else {}
        trackers = dict(self.postprocessor.trackers) if self.postprocessor is not None else {}
        problems = self.postprocessor.camera_problems() if self.postprocessor is not None else {}
        status = {}
        for name, capture in list(self.captures.items()):
            tracker = trackers.get(name)
            active = tracker.active_kinds if tracker is not None else ()
            entry = {"fps": fps.get(name) if capture.up else 0.0, "problem": problems.get(name), "up": capture.up}
            for kind in ("fire", "smoke"):
                entry[kind] = kind in active
            status[name] = entry
        return status

    def publish_status(self):
        """Hand every sink the camera_status() (the daemon's loop calls this); those that keep a live state (MQTT)
        publish it, the others keep Sink's no-op."""
        sinks = list(self.sinks)
        if not sinks:
            return
        status = self.camera_status()
        for sink in sinks:
            try:
                sink.publish_status(status)
            except Exception:  # the same loop pings the watchdog: a sink must not stop it
                log.exception("alerts: publishing the live status to %s failed", sink.name)

    def _stage_samples(self):
        rows = []
        for camera, depth in self.frame_queues.depths().items():
            rows.append(("firedetd_queue_depth", "Frames waiting in the latest-frame queue", "gauge", ["camera"],
                         [camera], depth))
            q = self.frame_queues.get(camera)
            if q is not None:
                rows.append(("firedetd_frames_dropped", "Frames dropped by the latest-frame queue (newest wins)",
                             "counter", ["camera"], [camera], q.dropped))
        if self.outbox is not None:
            for sink in self.deliveries:
                rows.append(("firedetd_alerts_pending", "Alert events not yet delivered", "gauge", ["sink"], [sink],
                             self.outbox.pending_count(sink)))
            rows.append(("firedetd_outbox_bytes", "Size of the outbox file", "gauge", [], [], self.outbox.size_bytes()))
            rows.append(("firedetd_outbox_snapshots_dropped", "Snapshots dropped to keep the outbox under its cap",
                         "counter", [], [], self.outbox.snapshots_dropped))
            rows.append(("firedetd_outbox_backlog", "Alert events waiting in memory for the outbox (disk full)",
                         "gauge", [], [], self.writer.backlog_size() if self.writer else 0))
        return rows

    # ------------------------------------------------------------------ reload / stop

    def reload(self, new_config):
        """Apply a new config's thresholds and sinks without touching the cameras or the engine."""
        with self._lock:
            new_sinks = None
            if new_config.alerts != self.config.alerts:
                # built before anything changes: a sink that cannot be built (an unset password variable, a
                # missing paho-mqtt) raises here and leaves the running config whole
                new_sinks = self.sink_factory(_with_alerts(self.config, new_config))
            if new_config.cameras != self.config.cameras or new_config.model != self.config.model:
                log.warning("reload: camera and model changes need a restart; applying thresholds and sinks only")
            self.postprocessor.camera_detection = camera_detection(new_config)
            self.postprocessor.detection = new_config.detection
            if self.sensor_input is not None:
                self.sensor_input.set_sensors(new_config.detection.sensors)
            elif new_config.detection.sensors:
                log.warning("reload: detection.sensors are read only after a restart")
            if new_sinks is not None:
                self.config = _with_alerts(self.config, new_config)
                self._replace_sinks(new_sinks)
            self.config = _with_detection(self.config, new_config)
            log.info("reload: thresholds and sinks applied")

    def stop(self, timeout_s=5.0):
        """Stop capture, finish the frames in flight, write their alerts, stop delivery. Returns when done
        or after timeout_s; the outbox keeps whatever is undelivered for the next start."""
        deadline = monotonic_ns() + int(timeout_s * 1e9)

        def left():
            return max(0.05, (deadline - monotonic_ns()) / 1e9)

        for capture in self.captures.values():
            capture.stop()
        for capture in self.captures.values():
            capture.join(min(1.0, left()))
        if self.runner is not None:
            self.runner.stop()
            self.runner.join(left() * 0.5)
        if self.postprocessor is not None:
            self.postprocessor.stop()
            self.postprocessor.join(left() * 0.5)
            if not self.writer.flush_backlog(force=True):
                self._spill_backlog()
        for thread in self.deliveries.values():
            thread.stop(min(1.0, left()))
        for sink in self.sinks:
            sink.close()
        if self.sensor_input is not None:
            self.sensor_input.stop()
        if self.outbox is not None:
            self.outbox.close()
        if self.state_lock is not None:
            self.state_lock.release()


def camera_detection(config):
    """{camera: callable(global detection) -> its detection} for the cameras with settings of their own."""
    return {c.name: c.detection.over for c in config.cameras if c.detection != CameraDetectionConfig()}


def _with_alerts(config, new_config):
    from dataclasses import replace

    return replace(config, alerts=new_config.alerts)


def _with_detection(config, new_config):
    from dataclasses import replace

    return replace(config, detection=new_config.detection)
