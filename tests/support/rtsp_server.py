"""A real RTSP server on 127.0.0.1 for tests: GstRtspServer serving videotestsrc as H.264.

    server = RtspTestServer(width=320, height=240, fps=15)
    server.start()          # binds a free port (or port=N); server.url is rtsp://127.0.0.1:PORT/test
    ...
    server.stop()           # drops every client connection and closes the port

It runs its own GLib MainLoop on its own MainContext in a background thread, so it does not interfere with
the code under test. Needs PyGObject, GstRtspServer introspection data and x264enc; `rtsp_server_missing()`
says why not, for a skip reason.
"""

import threading

_ERRORS = (ImportError, ValueError)


def rtsp_server_missing():
    """None when an RTSP test server can run here, else the reason (for pytest.skip)."""
    try:
        _import()
    except _ERRORS as e:
        return "GstRtspServer unavailable: %s" % e
    from gi.repository import Gst

    for element in ("x264enc", "rtph264pay", "videotestsrc"):
        if Gst.ElementFactory.find(element) is None:
            return "GStreamer element %s is not installed" % element
    return None


def start_rtsp_server_or_skip(**options):
    """A started RtspTestServer, or pytest.skip with the reason it cannot run here."""
    import pytest

    reason = rtsp_server_missing()
    if reason:
        pytest.skip(reason)
    return RtspTestServer(**options).start()


def _import():
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    return GLib, Gst, GstRtspServer


class RtspTestServer(object):
    """An RTSP server on 127.0.0.1 (free port) serving one H.264 test stream at `url`."""

    def __init__(self, width=320, height=240, fps=15, pattern="ball", path="/test", port=0):
        self.width, self.height, self.fps, self.pattern, self.path = width, height, fps, pattern, path
        self.requested_port = port  # 0: a free port; a fixed one lets a test stop and restart "the same camera"
        self.port = None
        self._server = None
        self._context = None
        self._loop = None
        self._thread = None
        self._source_id = None

    @property
    def url(self):
        """rtsp://127.0.0.1:PORT/PATH (only valid after start())."""
        if self.port is None:
            raise RuntimeError("RtspTestServer.url: the server is not started")
        return "rtsp://127.0.0.1:%d%s" % (self.port, self.path)

    def launch_description(self):
        """The media pipeline each client is served (shared by all clients)."""
        # Keyframes every second and SPS/PPS with each one, so a client that connects late decodes at once.
        return ("( videotestsrc is-live=true pattern=%s ! video/x-raw,format=I420,width=%d,height=%d,framerate=%d/1 "
                "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=%d "
                "! rtph264pay name=pay0 pt=96 config-interval=1 )"
                % (self.pattern, self.width, self.height, self.fps, self.fps))

    def start(self):
        """Bind 127.0.0.1 (on `port`, or a free one) and serve in a background thread."""
        GLib, _, GstRtspServer = _import()
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        self._server = GstRtspServer.RTSPServer.new()
        self._server.set_address("127.0.0.1")
        self._server.set_service(str(self.requested_port))   # "0": the kernel picks a free port
        factory = GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(self.launch_description())
        factory.set_shared(True)
        self._server.get_mount_points().add_factory(self.path, factory)
        self._source_id = self._server.attach(self._context)
        if not self._source_id:
            raise RuntimeError("RtspTestServer: could not bind 127.0.0.1")
        self.port = self._server.get_bound_port()
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s=10.0):
        """Disconnect every client, close the listening port and end the thread; idempotent."""
        if self._thread is None:
            return
        done = threading.Event()
        GLib, _, GstRtspServer = _import()

        def shut_down(*_):
            self._server.client_filter(lambda server, client, *args: GstRtspServer.RTSPFilterResult.REMOVE)
            source = self._context.find_source_by_id(self._source_id)
            if source is not None:
                source.destroy()
            self._server.get_mount_points().remove_factory(self.path)
            done.set()
            self._loop.quit()
            return False

        # GstRtspServer objects belong to the server's main context: change them from its own thread.
        idle = GLib.idle_source_new()
        idle.set_callback(shut_down)
        idle.attach(self._context)
        done.wait(timeout_s)
        self._thread.join(timeout_s)
        self._thread = None
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
