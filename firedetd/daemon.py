"""`firedetd run`: start the pipeline, serve HTTP, talk to systemd, handle signals, stop cleanly.

SIGTERM/SIGINT: stop capture, finish the frames in flight, keep the outbox, exit 0 within 5 s.
SIGHUP: reload the config file; thresholds and sinks change without dropping a camera; an invalid
file is reported and the running config stays. The systemd watchdog is pinged (every WatchdogSec / 2) only while
every stage thread beats and frames that arrive get decided, so a hung engine or capture gets us restarted.
"""

import ctypes
import ctypes.util
import logging
import re
import signal
import threading
import time

from .clock import monotonic_ns
from .config import host_port, load_config
from .errors import EXIT_FAILURE, EXIT_OK, ConfigError, FiredetdError
from .httpserver import HttpEndpoint
from .login import is_loopback
from .modelspec import load_spec
from .pipeline import Pipeline
from .status import StatusPage, create_live_view
from .systemd import Notifier

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
LOOP_S = 0.25
OUTBOX_MAINTENANCE_S = 600
MEMORY_TRIM_S = 60


MALLOC_ARENA_MAX = 2
_M_ARENA_MAX = -8   # mallopt's parameter number, from glibc's malloc.h


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas=MALLOC_ARENA_MAX):
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX does) before any thread starts; False where there is no
    glibc. glibc gives threads their own arenas, up to 8 per core, and memory freed in one stays there,
    fragmented: threads come and go here (one per HTTP request, a GStreamer pipeline's threads per camera
    reconnect), and RSS went up a few MiB with some reconnects in the 30-minute soak although nothing leaked
    (docs/reliability.md, item 8). The frame path allocates little per frame, so two arenas cost no speed."""
    libc = _libc()
    try:
        return libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1
    except AttributeError:  # musl
        return False


def malloc_trim_function():
    """glibc's malloc_trim, called every MEMORY_TRIM_S to hand back the memory the allocator keeps after it was
    freed; None where there is none (musl)."""
    return getattr(_libc(), "malloc_trim", None)


class Limits(object):
    """Optional run limits from the command line."""

    def __init__(self, max_frames=0, duration_s=0.0):
        self.max_frames = max_frames or 0
        self.duration_s = duration_s or 0.0


class Daemon(object):
    def __init__(self, config, config_path=None, limits=None, notifier=None, reload_config=None,
                 pipeline_factory=Pipeline, extra_routes=None):
        self.config = config
        self.config_path = config_path
        self.limits = limits or Limits()
        self.notifier = notifier or Notifier()
        self.reload_config = reload_config or (lambda: load_config(self.config_path))
        self.pipeline_factory = pipeline_factory
        self.extra_routes = extra_routes
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.pipeline = None
        self.http = None
        self.status_page = None
        self._last_problems = None
        self._malloc_trim = malloc_trim_function()

    def install_signal_handlers(self):
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def request_stop(self):
        self.stop_requested.set()
        if self.pipeline is not None:
            self.pipeline.wake_event.set()

    def request_reload(self):
        self.reload_requested.set()
        if self.pipeline is not None:
            self.pipeline.wake_event.set()

    def run(self):
        """Run until stopped, the sources end, a limit is reached, or a fatal error; return the exit code."""
        spec = load_spec(self.config.model.spec)
        # the live view exists only with the status page: otherwise the postprocessor pays nothing per frame
        self.pipeline = self.pipeline_factory(self.config, spec, live_view=create_live_view(self.config, spec))
        try:
            self.pipeline.start()
            self._start_http()
            self.notifier.ready("watching %d camera(s)" % len(self.pipeline.captures))
            log.info("firedetd running: %d camera(s), engine %s (%s), state in %s", len(self.pipeline.captures),
                     self.pipeline.runner.engine.name, self.pipeline.runner.engine.provider, self.config.state_dir)
            code = self._loop()
        finally:
            self.notifier.stopping()
            if self.status_page is not None:
                self.status_page.close()  # live streams end now, not when their clients go
            self.pipeline.stop(STOP_TIMEOUT_S)
            if self.http is not None:
                self.http.stop()
            log.info("firedetd stopped: %d frame(s) decided", self.pipeline.postprocessor.decided
                     if self.pipeline.postprocessor else 0)
        # alert events that neither the outbox nor the spill file took: say so in the exit status too
        return EXIT_FAILURE if self.pipeline.lost_alerts and code == 0 else code

    def _start_http(self):
        if not self.config.http.enabled:
            return
        host, port = host_port(self.config.http.addr, "http.addr")
        if not is_loopback(host):
            # Prometheus scrapes without a login, so /metrics and /healthz stay open and only warned about;
            # the page and its API (live camera images) are gated by StatusPage itself
            page = ("the status page asks for the password (http.password_hash)" if self.config.http.password_hash
                    else "the status page and its API answer 403 until http.password_hash is set")
            log.warning("http.addr %s: not loopback; /metrics and /healthz are open to the network (put them behind "
                        "something that filters, or use 127.0.0.1); %s", self.config.http.addr, page)
        try:
            self.http = HttpEndpoint(host, port, self.pipeline.metrics.registry, self.pipeline.health)
        except OSError as e:
            raise ConfigError("http.addr: cannot listen on %s (%s)" % (self.config.http.addr, e.strerror or e))
        if self.extra_routes is not None:
            self.extra_routes(self.http, self.pipeline)
        if self.pipeline.live_view is not None and self.config.http.status_page:
            self.status_page = StatusPage(self.pipeline, self.config.http.live_fps)
            self.status_page.register(self.http)
        self.http.start()

    def _loop(self):
        started = monotonic_ns()
        last_maintenance = last_trim = started
        while True:
            self.pipeline.wake_event.wait(LOOP_S)
            self.pipeline.wake_event.clear()
            if self.stop_requested.is_set():
                log.info("stop requested: draining")
                return EXIT_OK
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()
            if self.pipeline.fatal_error is not None:
                error = self.pipeline.fatal_error
                log.error("fatal: %s", error)
                return getattr(error, "exit_code", 1)
            if self._limit_reached(started) or self._sources_done():
                return EXIT_OK
            self._watchdog()
            self.pipeline.publish_status()  # MQTT state and FPS; sinks rate-limit and never block
            if monotonic_ns() - last_maintenance > OUTBOX_MAINTENANCE_S * 1e9:
                last_maintenance = monotonic_ns()
                self.pipeline.maintain_outbox()
            if self._malloc_trim is not None and monotonic_ns() - last_trim > MEMORY_TRIM_S * 1e9:
                last_trim = monotonic_ns()
                self._malloc_trim(0)

    def _sources_done(self):
        if self.pipeline.finished_sources() and self.pipeline.drained():
            log.info("all sources ended and every frame was decided")
            return True
        return False

    def _limit_reached(self, started):
        # every frame handed on counts, decided or found unusable: a black camera must not run forever
        handled = self.pipeline.postprocessor.seen
        if self.limits.max_frames and handled >= self.limits.max_frames:
            log.info("--max-frames %d reached", self.limits.max_frames)
            return True
        if self.limits.duration_s and monotonic_ns() - started >= self.limits.duration_s * 1e9:
            log.info("--duration %.0f s reached", self.limits.duration_s)
            return True
        return False

    def _watchdog(self, now_s=None):
        problems = self.pipeline.stall_reasons(self.config.watchdog.stall_s)
        if not problems:
            # the loop looks four times a second; systemd needs a ping only every WatchdogSec / 2
            self.notifier.watchdog_if_due(time.monotonic() if now_s is None else now_s)
        # compared without their durations, which grow every loop: one log line per change, not four a second
        kinds = [re.sub(r"[0-9.]+ s\b", "N s", p) for p in problems]
        if kinds != self._last_problems:
            if problems:
                log.error("watchdog: not pinging systemd: %s", "; ".join(problems))
            elif self._last_problems:
                log.info("watchdog: healthy again")
            self._last_problems = kinds

    def _reload(self):
        try:
            new_config = self.reload_config()
            self.pipeline.reload(new_config)
        except FiredetdError as e:
            self.pipeline.metrics.config_reloads.labels("rejected").inc()
            log.error("reload rejected, keeping the running config: %s", e)
            return
        self.config = self.pipeline.config
        self.pipeline.metrics.config_reloads.labels("applied").inc()
