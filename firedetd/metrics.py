"""Prometheus metrics, on a registry owned by the pipeline (no global state).

Stages update the counters they own; values that already live in a stage (queue depth and drops,
outbox backlog) are read at scrape time by a collector, so nothing is counted twice.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
ENGINE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)


class Metrics(object):
    """Every metric firedetd exports; see docs/metrics.md."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu seconds, fds
        cam = ["camera"]
        self.frames_captured = Counter("firedetd_frames_captured_total", "Frames read from the source", cam,
                                       registry=r)
        self.frames_processed = Counter("firedetd_frames_processed_total", "Frames decided by the engine", cam,
                                        registry=r)
        self.frames_bad = Counter("firedetd_frames_bad_total", "Frames skipped as unreadable or wrongly shaped",
                                  cam, registry=r)
        self.frames_unusable = Counter("firedetd_frames_unusable_total", "Frames the signal gate found no picture in "
                                       "(never decided), by reason", ["camera", "reason"], registry=r)
        self.camera_degraded = Gauge("firedetd_camera_degraded", "1 while unusable frames have persisted "
                                     "(detection.signal.degraded_after_s), by reason", ["camera", "reason"], registry=r)
        self.fps = Gauge("firedetd_fps", "Decided frames per second over the last seconds", cam, registry=r)
        self.latency = Histogram("firedetd_latency_seconds", "Capture to decision latency", cam,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.engine_seconds = Histogram("firedetd_engine_seconds", "Engine time per batch (preprocess included)",
                                        buckets=ENGINE_BUCKETS, registry=r)
        self.batch_size = Histogram("firedetd_engine_batch_size", "Frames per engine call",
                                    buckets=(1, 2, 3, 4, 6, 8, 16, 32, 64), registry=r)
        self.engine_errors = Counter("firedetd_engine_errors_total", "Engine calls that failed", registry=r)
        self.source_up = Gauge("firedetd_source_up", "1 while the camera delivers frames", cam, registry=r)
        self.source_reconnects = Counter("firedetd_source_reconnects_total", "Source (re)open attempts after a "
                                         "failure", cam, registry=r)
        self.source_errors = Counter("firedetd_source_errors_total", "Source failures", cam, registry=r)
        self.probability = Gauge("firedetd_probability", "Smoothed class probability", ["camera", "class"],
                                 registry=r)
        self.alert_active = Gauge("firedetd_alert_active", "1 while an alert is raised", ["camera", "kind"],
                                  registry=r)
        self.alerts_raised = Counter("firedetd_alerts_raised_total", "Alerts raised", ["camera", "kind"], registry=r)
        self.alert_events = Counter("firedetd_alert_events_total", "Alert events (raised, ongoing, escalated, cleared) "
                                    "written to the outbox", ["camera", "kind", "state"], registry=r)
        self.alerts_delivered = Counter("firedetd_alerts_delivered_total", "Alert events delivered", ["sink"],
                                        registry=r)
        self.delivery_failures = Counter("firedetd_alert_delivery_failures_total", "Failed delivery attempts "
                                         "(each is retried)", ["sink", "reason"], registry=r)
        self.outbox_write_errors = Counter("firedetd_outbox_write_errors_total", "Outbox writes that failed "
                                           "(disk full, I/O); the events wait in memory", registry=r)
        self.thread_alive = Gauge("firedetd_thread_alive", "1 while a stage thread runs", ["thread"], registry=r)
        self.config_reloads = Counter("firedetd_config_reloads_total", "SIGHUP reloads", ["result"], registry=r)
        self.model_info = Gauge("firedetd_model_info", "The loaded model and engine (value 1)",
                                ["name", "version", "sha256", "engine", "provider"], registry=r)
        # the daemon's own id (config device_id) and release, to check against the target labels that name it
        # in a fleet (docs/fleet.md): `device_id`, not `device`, so it never collides with that target label
        self.device_info = Gauge("firedetd_device_info", "This daemon's device id and firedetd version (value 1)",
                                 ["device_id", "version"], registry=r)
        for result in ("applied", "rejected"):
            self.config_reloads.labels(result)
        self._stage_views = []
        r.register(_StageCollector(self._stage_views))

    def watch(self, view):
        """Register a callable returning (name, help, type, labels, samples) rows read at scrape time."""
        self._stage_views.append(view)


class _StageCollector(object):
    """Exports values owned by stages (queues, outbox) at scrape time."""

    def __init__(self, views):
        self._views = views

    def describe(self):
        return []

    def collect(self):
        families = {}
        for view in list(self._views):
            for name, doc, kind, label_names, labels, value in view():
                family = families.get(name)
                if family is None:
                    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                    family = families[name] = cls(name, doc, labels=label_names)
                family.add_metric(labels, value)
        return list(families.values())
