"""GStreamer capture backend (PyGObject): every URI scheme, with scaling and colour conversion inside the pipeline.

One pipeline per camera:

    <input> ! tee name=split   split. ! queue ! scale/convert ! appsink name=model     (model size, RGB or BGR)
                               split. ! queue ! scale/convert ! appsink name=snapshot  (snapshot width, RGB)

On a Jetson, nvv4l2decoder decodes and nvvidconv scales and converts on the VIC, so the CPU only copies the
small results out. The description is built by pure functions (`describe_pipeline`) from the config, the
geometry and the set of elements this machine has, so every scheme and the Jetson variants are testable on a
machine that lacks those elements. Jetson paths stay within GStreamer 1.14 (JetPack 4.6): no element or
property newer than that is used there.
"""

import logging
import os
import threading
from typing import Container, NamedTuple, Optional, Tuple

import numpy as np

from ..clock import monotonic_ns
from ..config import SourceConfig
from ..errors import SourceError
from . import EndOfStream, FrameSource, Geometry, RawFrame
from .sizing import center_crop_box, fps_fraction, snapshot_height
from .uri import DECODING_SCHEMES, csi_sensor_id, file_path, parse_test_uri, v4l2_device

log = logging.getLogger(__name__)

HARDWARE_DECODER = "nvv4l2decoder"
# Decoders that output NVMM memory, which videoconvert cannot read: kept out of decodebin for `decoder: software`.
JETSON_DECODERS = ("nvv4l2decoder", "omxh264dec", "omxh265dec", "omxvp8dec", "omxvp9dec", "omxmpeg4videodec")
# USB cameras' MJPEG: on JetPack 4.6 nvv4l2decoder decodes it only behind jpegparse with mjpeg=1, and nvjpegdec
# hands out buffers nvvidconv must convert; decodebin, ranked up for H.264, would pick either as it comes. Like
# jetson-utils, decode MJPEG on the CPU (jpegdec): a 640x480 frame costs about a millisecond.
V4L2_SKIPPED_DECODERS = JETSON_DECODERS + ("nvjpegdec", "omxmjpegdec")
PREROLL_TIMEOUT_S = 10.0
_PULL_SLICE_S = 0.1         # a blocked read() still looks at the bus this often
_AUTOPLUG_TRY, _AUTOPLUG_SKIP = 0, 2   # GstAutoplugSelectResult, which has no introspection data

_gst_lock = threading.Lock()
_gst_modules = []   # [(Gst, GstVideo, GstApp)] once imported and initialised


def import_gst():
    """Import and initialise GStreamer through PyGObject once per process; ImportError says what to install."""
    with _gst_lock:
        if not _gst_modules:
            try:
                import gi

                gi.require_version("Gst", "1.0")
                gi.require_version("GstVideo", "1.0")
                gi.require_version("GstApp", "1.0")
                from gi.repository import Gst, GstApp, GstVideo
            except (ImportError, ValueError) as e:
                raise ImportError(
                    "the gst source backend needs PyGObject and GStreamer 1.x introspection data (Debian/Ubuntu: "
                    "python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0; in a virtualenv also "
                    "pip install PyGObject); or set source.backend: opencv (%s)" % e)
            Gst.init(None)
            _resolve_lazy_attributes(Gst, GstVideo)
            _gst_modules.append((Gst, GstVideo, GstApp))
        return _gst_modules[0]


# PyGObject builds a module's enums, flags and classes on first attribute access, and that is not thread-safe:
# two cameras opening at once on Python 3.6 made one capture thread die with "type object 'MessageType' has no
# attribute 'ERROR'". Every name the backend uses is resolved here, once, under the import lock.
_GST_NAMES = ("MessageType.ERROR", "MessageType.WARNING", "MessageType.EOS", "State.PLAYING", "State.NULL",
              "StateChangeReturn.ASYNC", "StateChangeReturn.FAILURE", "StateChangeReturn.SUCCESS", "Format.TIME",
              "SeekFlags.FLUSH", "SeekFlags.KEY_UNIT", "ParseError.NO_SUCH_ELEMENT", "PadProbeType.BUFFER",
              "PadProbeType.EVENT_DOWNSTREAM", "PadProbeReturn.OK", "PadProbeReturn.REMOVE", "EventType.CAPS",
              "ClockType.MONOTONIC", "Rank.PRIMARY", "ElementFactory.find", "Caps.from_string", "SystemClock.obtain",
              "CLOCK_TIME_NONE", "SECOND", "parse_launch")
_GSTVIDEO_NAMES = ("VideoInfo", "buffer_get_video_meta")


def _resolve_lazy_attributes(Gst, GstVideo):
    for module, names in ((Gst, _GST_NAMES), (GstVideo, _GSTVIDEO_NAMES)):
        for dotted in names:
            value = module
            for part in dotted.split("."):
                value = getattr(value, part)


class PipelinePlan(NamedTuple):
    """A pipeline description and what the backend must do around it."""

    description: str
    live: bool                      # never block the pipeline: leaky queues, dropping appsinks
    hardware_decoder: bool          # raise nvv4l2decoder's rank so decodebin picks it
    skip_decoders: Tuple[str, ...]  # factories decodebin must not pick (decoder: software on a Jetson)
    nvmm: bool                      # nvvidconv converts; appsinks deliver RGBA/BGRx (4 bytes a pixel)
    size_on_caps: bool              # nvvidconv crop and snapshot height are set once the input caps are known


def describe_pipeline(source_config: SourceConfig, geometry: Geometry, available: Container[str]) -> PipelinePlan:
    """Build the pipeline for a SourceConfig and Geometry; `available`: element names this machine has."""
    scheme = source_config.scheme
    hardware = use_hardware_decoder(source_config, available)
    nvmm = scheme == "csi" or hardware
    live = is_live(source_config)
    sync = scheme == "file" and source_config.realtime
    known_size = _known_input_size(source_config) if nvmm else None
    parts = ["%s ! tee name=split" % describe_input(source_config, nvmm),
             "split. ! " + describe_model_branch(geometry, nvmm, live, sync, known_size)]
    if geometry.snapshot_width > 0:
        parts.append("split. ! " + describe_snapshot_branch(geometry, nvmm, live, sync, known_size))
    skip = ()
    if scheme == "v4l2":
        skip = tuple(d for d in V4L2_SKIPPED_DECODERS if d in available)
    elif scheme in DECODING_SCHEMES and source_config.decoder == "software":
        skip = tuple(d for d in JETSON_DECODERS if d in available)
    # snapshots are never scaled up (a 426-wide stream stays 426 wide): the width is set from the input caps
    size_on_caps = (nvmm and known_size is None) or (not nvmm and geometry.snapshot_width > 0)
    return PipelinePlan(description="  ".join(parts), live=live, hardware_decoder=hardware, skip_decoders=skip,
                        nvmm=nvmm, size_on_caps=size_on_caps)


def use_hardware_decoder(source_config: SourceConfig, available: Container[str]) -> bool:
    """Whether decodebin should prefer nvv4l2decoder; `decoder: hardware` without it is a permanent error."""
    if source_config.scheme not in DECODING_SCHEMES or source_config.decoder == "software":
        return False
    if source_config.scheme == "v4l2":   # raw or MJPEG from a USB camera: the CPU path (V4L2_SKIPPED_DECODERS)
        return False
    # The decoder's NVMM output can only be read by nvvidconv: one without the other is no use.
    if HARDWARE_DECODER in available and "nvvidconv" in available:
        return True
    if source_config.decoder == "hardware":
        raise SourceError("%s: decoder: hardware needs the %s and nvvidconv elements (a Jetson with JetPack's "
                          "GStreamer plugins); this machine lacks them, use decoder: auto or software"
                          % (source_config.uri, HARDWARE_DECODER), permanent=True)
    return False


def is_live(source_config: SourceConfig) -> bool:
    """Cameras, streams, live test sources and realtime files must never be blocked by a slow consumer."""
    scheme = source_config.scheme
    if scheme == "file":
        return bool(source_config.realtime)
    if scheme == "test":
        return parse_test_uri(source_config.uri, source_config).live
    return True


def describe_input(source_config: SourceConfig, nvmm: bool = False) -> str:
    """The elements up to decoded video: `<source> [! caps] [! decodebin ! video/x-raw]`."""
    scheme = source_config.scheme
    if scheme in RAW_INPUTS:
        return RAW_INPUTS[scheme](source_config)
    if scheme not in ENCODED_INPUTS:
        # the registry lists a scheme for gst that has no input here: refuse it, never guess an element for it
        raise SourceError("%s: the gst backend has no input for %s:// URIs (it reads %s)" % (
            source_config.uri, scheme, ", ".join(INPUT_SCHEMES)), permanent=True)
    # The capsfilter keeps audio pads of files and streams from being linked into the video branches; on the
    # nvvidconv path it must also let NVMM memory through.
    return "%s ! decodebin name=decode ! video/x-raw%s" % (ENCODED_INPUTS[scheme](source_config),
                                                           "(ANY)" if nvmm else "")


def _size_and_rate(source_config):
    return ("width=%d,height=%d" % (source_config.width, source_config.height),
            "%d/%d" % fps_fraction(source_config.fps))


def describe_csi_input(source_config: SourceConfig) -> str:
    """`csi://N`: the Argus camera N as NV12 in NVMM memory, which nvvidconv reads without a copy."""
    size, rate = _size_and_rate(source_config)
    return "nvarguscamerasrc sensor-id=%d ! video/x-raw(memory:NVMM),%s,framerate=%s,format=NV12" % (
        csi_sensor_id(source_config.uri), size, rate)


def describe_test_input(source_config: SourceConfig) -> str:
    """`test://?...`: videotestsrc with the pattern, size, rate and length the URI asks for."""
    spec = parse_test_uri(source_config.uri, source_config)
    frames = " num-buffers=%d" % spec.frames if spec.frames else ""
    return "videotestsrc pattern=%s is-live=%s%s ! video/x-raw,width=%d,height=%d,framerate=%d/%d" % (
        spec.pattern, "true" if spec.live else "false", frames, spec.width, spec.height, *fps_fraction(spec.fps))


def describe_v4l2_source(source_config: SourceConfig) -> str:
    """`v4l2:///dev/videoN`: USB cameras offer raw and/or MJPEG at a given size; decodebin passes raw through and
    decodes MJPEG."""
    size, rate = _size_and_rate(source_config)
    caps = "video/x-raw,{0},framerate={1};image/jpeg,{0},framerate={1}".format(size, rate)
    return "v4l2src device=%s ! capsfilter caps=%s" % (quote(v4l2_device(source_config.uri)), quote(caps))


def describe_rtsp_source(source_config: SourceConfig) -> str:
    """`rtsp://` and `rtsps://`: rtspsrc with the configured transport and jitter-buffer latency."""
    return "rtspsrc location=%s protocols=%s latency=%d" % (quote(source_config.uri), source_config.transport,
                                                            source_config.latency_ms)


def describe_http_source(source_config: SourceConfig) -> str:
    """`http://` and `https://`: a live stream (MJPEG, MPEG-TS...) read by souphttpsrc."""
    return "souphttpsrc location=%s is-live=true" % quote(source_config.uri)


def describe_file_source(source_config: SourceConfig) -> str:
    """`file://PATH`: a video file."""
    return "filesrc location=%s" % quote(file_path(source_config.uri))


# The schemes this backend reads (sources/__init__.py's SCHEMES lists gst for exactly these): those whose source
# hands out decoded video, and those whose source is followed by decodebin.
RAW_INPUTS = {"csi": describe_csi_input, "test": describe_test_input}
ENCODED_INPUTS = {"v4l2": describe_v4l2_source, "rtsp": describe_rtsp_source, "rtsps": describe_rtsp_source,
                  "http": describe_http_source, "https": describe_http_source, "file": describe_file_source}
INPUT_SCHEMES = tuple(RAW_INPUTS) + tuple(ENCODED_INPUTS)


def describe_model_branch(geometry: Geometry, nvmm: bool, live: bool, sync: bool,
                          known_size: Optional[Tuple[int, int]] = None) -> str:
    """`queue ! scale/convert ! appsink name=model`: exactly the model's size and colour order."""
    size = "width=%d,height=%d" % (geometry.width, geometry.height)
    if nvmm:
        # nvvidconv cannot write packed 3-byte RGB/BGR to system memory; it writes RGBA/BGRx and the backend drops
        # the 4th byte while copying the frame out, which costs nothing extra (the copy is needed anyway) and
        # spares the Nano's CPU a videoconvert pass.
        crop = ""
        if geometry.resize == "center_crop" and known_size:
            crop = " " + nvvidconv_crop(known_size[0], known_size[1], geometry)
        fmt = "RGBA" if geometry.color == "RGB" else "BGRx"
        convert = "nvvidconv name=modelconv%s ! video/x-raw,format=%s,%s" % (crop, fmt, size)
    else:
        # aspectratiocrop (a bin) fails to link at parse time unless its input caps are pinned to video/x-raw.
        crop = "video/x-raw ! aspectratiocrop aspect-ratio=%d/%d ! " % (geometry.width, geometry.height) if (
            geometry.resize == "center_crop") else ""
        # Scale first, in the decoder's format, then convert only the small picture; add-borders=false makes
        # `stretch` stretch instead of letterboxing.
        convert = "%svideoscale add-borders=false ! video/x-raw,%s ! videoconvert ! video/x-raw,format=%s" % (
            crop, size, geometry.color)
    # A realtime file is paced by its synced appsink pushing back through a waiting queue: a leaky one would
    # let the decoder race ahead and drop nearly every frame.
    return "%s ! %s ! %s" % (describe_queue(live and not sync), convert, describe_appsink("model", live, sync))


def describe_snapshot_branch(geometry: Geometry, nvmm: bool, live: bool, sync: bool,
                             known_size: Optional[Tuple[int, int]] = None) -> str:
    """`queue ! scale/convert ! appsink name=snapshot`: RGB, snapshot_width wide, square pixels."""
    if nvmm:
        # nvvidconv does not derive a height from the display aspect: it is computed from the input size, here
        # or (decoded streams) when the caps arrive.
        height = ",height=%d" % snapshot_height(known_size[0], known_size[1], geometry.snapshot_width) if (
            known_size) else ""
        convert = "nvvidconv name=snapshotconv ! capsfilter name=snapshotcaps caps=%s" % quote(
            "video/x-raw,format=RGBA,width=%d%s" % (geometry.snapshot_width, height))
    else:
        # videoscale picks the height that keeps the display aspect when only the width and the PAR are fixed;
        # the width drops to the input's once its caps are known (no upscaling: measured 0.64 of the pipeline's
        # 1.49 ms a frame went to scaling 426-wide frames up to 640, docs/benchmarks.md)
        convert = ("videoscale ! capsfilter name=snapshotcaps caps=%s ! videoconvert ! video/x-raw,format=RGB"
                   % quote("video/x-raw,width=%d,pixel-aspect-ratio=1/1" % geometry.snapshot_width))
    return "%s ! %s ! %s" % (describe_queue(live and not sync), convert, describe_appsink("snapshot", live, sync))


def describe_queue(leaky: bool) -> str:
    """A live branch keeps at most two frames and drops the oldest; a file branch waits (back-pressure)."""
    if leaky:
        return "queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0"
    return "queue"


def describe_appsink(name: str, live: bool, sync: bool) -> str:
    """Appsink pulled by read(): live sources drop old frames instead of blocking; files deliver every frame."""
    return "appsink name=%s emit-signals=false enable-last-sample=false max-buffers=2 drop=%s sync=%s" % (
        name, "true" if live else "false", "true" if sync else "false")


def nvvidconv_crop(src_width: int, src_height: int, geometry: Geometry) -> str:
    """nvvidconv's crop properties for a centre crop; they are the crop rectangle's edges (JetPack 4.x)."""
    left, top, width, height = center_crop_box(src_width, src_height, geometry.width, geometry.height)
    return "left=%d top=%d right=%d bottom=%d" % (left, top, left + width, top + height)


def quote(value: str) -> str:
    """A property value quoted for gst_parse_launch."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def elements_in(description: str) -> Tuple[str, ...]:
    """Element factory names a description uses (for a clear error before parse_launch)."""
    names = []
    for segment in description.split("!"):
        words = segment.split()
        if words and "/" not in words[0] and not words[0].endswith(".") and words[0] not in names:
            names.append(words[0])
    return tuple(names)


def _known_input_size(source_config):
    # A CSI camera delivers the size asked for; a decoded stream's size is known only from its caps.
    return (source_config.width, source_config.height) if source_config.scheme == "csi" else None


class _Elements(object):
    """`name in elements`: whether this machine's GStreamer has that element."""

    def __init__(self, gst):
        self._gst = gst

    def __contains__(self, name):
        return self._gst.ElementFactory.find(name) is not None


class GstSource(FrameSource):
    """A GStreamer pipeline delivering model-size frames (and snapshots) from one URI, pulled by read()."""

    name = "gst"

    def __init__(self, source_config: SourceConfig, geometry: Geometry) -> None:
        self.config = source_config
        self.geometry = geometry
        self.uri = source_config.uri
        self.live = is_live(source_config)
        self._pipeline = None
        self._model_sink = None
        self._snapshot_sink = None
        self._bus = None
        self._plan = None
        self.frames_superseded = 0   # live frames skipped to read the newest (counted as drops by the capture thread)
        self._failure = None          # the SourceError a bus ERROR became; raised again on later reads
        self._last_warning = None
        self._pending_snapshot = None
        self._pts_base = 0            # added to buffer pts after a loop, so pts keeps increasing
        self._last_pts = None
        self._frame_duration = int(1e9 / source_config.fps)
        self._frames = 0
        self._monotonic_clock = None  # whether buffer running times are CLOCK_MONOTONIC times
        # Frames of a file its decoder skipped (libav conceals corrupt data by dropping frames, silently) or that a
        # truncated file lacks at its end; the capture thread counts them in firedetd_frames_bad_total.
        self.frames_lost = 0
        self._last_stream_pts = None
        self._input_size = None       # the decoded picture's (width, height), from the input caps
        # pts of the first frame after the picture size changed mid-file: recordings spliced together (a camera
        # that changed resolution, concatenated MPEG-TS) jump in pts there without losing a frame
        self._resized_at_pts = set()

    # -- open / close ------------------------------------------------------------------------------------------

    def open(self):
        """Build and start the pipeline; SourceError names the URI and the missing element, file or failure."""
        if self._pipeline is not None:
            return
        self._failure = None
        self._last_warning = None
        self._pending_snapshot = None
        self._monotonic_clock = None
        Gst, _, _ = self._gst()
        plan = describe_pipeline(self.config, self.geometry, _Elements(Gst))
        self._check_elements(plan, Gst)
        if self.config.scheme == "file":
            self._check_file()
        self._set_decoder_ranks(plan, Gst)
        log.debug("%s: pipeline %s", self.uri, plan.description)
        self._plan = plan
        self._pipeline = self._parse(plan.description, Gst)
        self._model_sink = self._pipeline.get_by_name("model")
        self._snapshot_sink = self._pipeline.get_by_name("snapshot")
        self._bus = self._pipeline.get_bus()
        decodebin = self._pipeline.get_by_name("decode")
        if plan.skip_decoders and decodebin is not None:
            decodebin.connect("autoplug-select", _skip_factories, frozenset(plan.skip_decoders))
        self._input_size = None
        if plan.size_on_caps or not plan.live:
            self._pipeline.get_by_name("split").get_static_pad("sink").add_probe(
                Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_input_event)
        try:
            self._start(Gst)
        except SourceError as e:
            self.close()
            if self.config.scheme == "file" and not e.permanent:
                # a file that cannot even start plays no better on the next try: say so once instead of forever
                raise SourceError("%s (the file is damaged, truncated or not a video)" % e, permanent=True)
            raise
        log.info("%s: opened (gst, %s%s)", self.uri, "live" if self.live else "every frame",
                 ", nvvidconv" if plan.nvmm else "")

    def close(self):
        """Stop the pipeline and release it; safe to call twice or before open()."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.set_state(self._gst()[0].State.NULL)
        self._model_sink = self._snapshot_sink = self._bus = None
        self._pending_snapshot = None

    def _gst(self):
        try:
            return import_gst()
        except ImportError as e:
            raise SourceError("%s: %s" % (self.uri, e), permanent=True)

    def _check_elements(self, plan, Gst):
        missing = [name for name in elements_in(plan.description) if Gst.ElementFactory.find(name) is None]
        if not missing:
            return
        hint = ""
        if "nvarguscamerasrc" in missing:
            hint = " (CSI cameras need a Jetson with JetPack's nvarguscamerasrc and nvvidconv)"
        raise SourceError("%s: GStreamer element%s %s not installed on this machine%s" % (
            self.uri, "s" if len(missing) > 1 else "", ", ".join(missing), hint), permanent=True)

    def _check_file(self):
        path = file_path(self.uri)
        if not os.path.isfile(path):
            raise SourceError("%s: video file %s does not exist" % (self.uri, os.path.abspath(path)), permanent=True)
        if not os.access(path, os.R_OK):
            raise SourceError("%s: video file %s is not readable" % (self.uri, os.path.abspath(path)), permanent=True)

    def _set_decoder_ranks(self, plan, Gst):
        # Ranks are per process, not per pipeline: raising nvv4l2decoder's is harmless for other cameras, which
        # would pick it anyway on `auto`; `software` cameras skip it per pipeline instead (autoplug-select).
        if plan.hardware_decoder:
            factory = Gst.ElementFactory.find(HARDWARE_DECODER)
            factory.set_rank(max(factory.get_rank(), int(Gst.Rank.PRIMARY) + 100))

    def _parse(self, description, Gst):
        from gi.repository import GLib

        try:
            return Gst.parse_launch(description)
        except GLib.Error as e:
            missing = e.matches(Gst.ParseError.quark(), Gst.ParseError.NO_SUCH_ELEMENT)
            raise SourceError("%s: cannot build the GStreamer pipeline: %s" % (self.uri, e.message),
                              permanent=missing)

    def _start(self, Gst):
        result = self._pipeline.set_state(Gst.State.PLAYING)
        if result == Gst.StateChangeReturn.FAILURE:
            self._raise_bus_error()
            raise SourceError("%s: the GStreamer pipeline did not start" % self.uri)
        if result == Gst.StateChangeReturn.ASYNC:   # not live: wait until the first frame reached the sinks
            result = self._wait_for_preroll(Gst)
            if result == Gst.StateChangeReturn.FAILURE:
                self._raise_bus_error()
                raise SourceError("%s: the GStreamer pipeline failed while starting" % self.uri)
            if result == Gst.StateChangeReturn.ASYNC:
                raise SourceError("%s: no frame within %.0f s of starting (stream not decodable?)" % (
                    self.uri, PREROLL_TIMEOUT_S))

    def _wait_for_preroll(self, Gst):
        # An element can fail without failing the state change (rtspsrc refused by a camera that is going away):
        # look at the bus between short waits, or a reconnect would sit out the whole timeout blind.
        deadline = monotonic_ns() + int(PREROLL_TIMEOUT_S * 1e9)
        while True:
            result, _, _ = self._pipeline.get_state(int(_PULL_SLICE_S * Gst.SECOND))
            if result != Gst.StateChangeReturn.ASYNC or monotonic_ns() >= deadline:
                return result
            self._raise_bus_error()

    def _on_input_event(self, pad, info):
        # Runs in the streaming thread before the caps reach the branches, so the sizes apply to the first frame.
        Gst = self._gst()[0]
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.CAPS:
            structure = event.parse_caps().get_structure(0)
            has_width, width = structure.get_int("width")
            has_height, height = structure.get_int("height")
            if has_width and has_height:
                self._note_input_size(pad, (width, height), Gst)
            if self._plan.size_on_caps and has_width and has_height and self._plan.nvmm:
                self._size_nvvidconv_branches(width, height, Gst)
            elif self._plan.size_on_caps and has_width:
                self._size_snapshot_branch(width, Gst)
        return Gst.PadProbeReturn.OK

    def _note_input_size(self, pad, size, Gst):
        previous, self._input_size = self._input_size, size
        if previous is not None and previous != size and not self.live:
            pad.add_probe(Gst.PadProbeType.BUFFER, self._note_resized_buffer)

    def _note_resized_buffer(self, pad, info):
        # one-shot: the first buffer in the new size marks where the pts may jump without a lost frame
        buffer = info.get_buffer()
        if buffer is not None:
            self._resized_at_pts.add(buffer.pts)
        return self._gst()[0].PadProbeReturn.REMOVE

    def _size_nvvidconv_branches(self, width, height, Gst):
        pipeline = self._pipeline
        if pipeline is None:
            return
        if self.geometry.resize == "center_crop":
            left, top, crop_width, crop_height = center_crop_box(width, height, self.geometry.width,
                                                                 self.geometry.height)
            modelconv = pipeline.get_by_name("modelconv")
            for prop, value in (("left", left), ("top", top), ("right", left + crop_width),
                                ("bottom", top + crop_height)):
                modelconv.set_property(prop, value)
        snapshot_caps = pipeline.get_by_name("snapshotcaps")
        if snapshot_caps is not None:
            snapshot_caps.set_property("caps", Gst.Caps.from_string("video/x-raw,format=RGBA,width=%d,height=%d" % (
                self.geometry.snapshot_width, snapshot_height(width, height, self.geometry.snapshot_width))))

    def _size_snapshot_branch(self, width, Gst):
        snapshot_caps = self._pipeline.get_by_name("snapshotcaps") if self._pipeline is not None else None
        if snapshot_caps is not None:
            target = min(self.geometry.snapshot_width, width - width % 2)
            snapshot_caps.set_property("caps", Gst.Caps.from_string(
                "video/x-raw,width=%d,pixel-aspect-ratio=1/1" % target))

    # -- reading -----------------------------------------------------------------------------------------------

    def read(self, timeout_s: float) -> Optional[RawFrame]:
        """The next frame, None if none came within timeout_s; EndOfStream at a file's end; SourceError on failure.

        A camera or stream that ends (an RTSP server that goes away) raises SourceError, not EndOfStream.
        """
        if self._failure is not None:
            raise self._failure
        sink = self._model_sink
        if sink is None:
            raise SourceError("%s: read() on a source that is not open" % self.uri)
        Gst = self._gst()[0]
        deadline = monotonic_ns() + int(max(0.0, timeout_s) * 1e9)
        while True:
            self._raise_bus_error()
            remaining = deadline - monotonic_ns()
            sample = sink.try_pull_sample(max(0, min(remaining, int(_PULL_SLICE_S * 1e9))))
            if sample is not None:
                if self.live:
                    sample = self._newest_sample(sink, sample)
                return self._frame_from(sample, deadline, Gst)
            if self._model_sink is None:        # closed by another thread while we waited
                return None
            if sink.get_property("eos"):
                self._end_of_stream(Gst)
                continue
            if monotonic_ns() >= deadline:
                self._raise_bus_error()
                return None

    def _newest_sample(self, sink, sample):
        """On a live source, skip to the newest frame the appsink holds: after one slow moment the sink would
        otherwise stay a frame behind for good (measured: p99 latency a frame interval higher at 60 fps,
        docs/benchmarks.md). The frames skipped are counted as dropped, like the queue's own."""
        while True:
            newer = sink.try_pull_sample(0)
            if newer is None:
                return sample
            sample = newer
            self.frames_superseded += 1

    def _raise_bus_error(self):
        bus = self._bus
        if bus is None:
            return
        Gst = self._gst()[0]
        while True:
            # Messages of other types are popped and dropped here too, so the bus never piles up.
            message = bus.timed_pop_filtered(0, Gst.MessageType.ERROR | Gst.MessageType.WARNING)
            if message is None:
                return
            source = _element_label(message.src)
            if message.type == Gst.MessageType.WARNING:
                warning, debug = message.parse_warning()
                self._last_warning = "%s: %s" % (source, warning.message)
                log.warning("%s: %s", self.uri, self._last_warning)
                log.debug("%s: %s", self.uri, debug)
                continue
            error, debug = message.parse_error()
            log.debug("%s: %s", self.uri, debug)
            if self.config.scheme == "file" and not self.config.loop and self._frames:
                # Reopening would decode the same frames again and raise their alerts again: a file that breaks
                # part-way ends where it breaks.
                self._count_missing_tail(Gst)
                log.warning("%s: decoding stopped after %d frames (%s: %s); treating it as the end of the file",
                            self.uri, self._frames, source, error.message)
                self._failure = EndOfStream(self.uri)
                raise self._failure
            self._failure = SourceError("%s: %s: %s" % (self.uri, source, error.message))
            raise self._failure

    def _end_of_stream(self, Gst):
        scheme = self.config.scheme
        if scheme not in ("file", "test"):
            # A camera or stream that ends has failed (rtspsrc ends with EOS when the server drops the
            # connection); the capture thread reconnects.
            raise SourceError("%s: the stream ended%s" % (
                self.uri, " (%s)" % self._last_warning if self._last_warning else ""))
        if scheme == "file":
            self._count_missing_tail(Gst)
        if not (scheme == "file" and self.config.loop):
            raise EndOfStream(self.uri)
        # A flushing seek restarts the file without rebuilding the pipeline; pts continue from the last frame.
        if self._last_pts is not None:
            self._pts_base = self._last_pts + self._frame_duration
        self._pending_snapshot = None
        self._last_stream_pts = None
        if not self._pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0):
            raise SourceError("%s: cannot seek back to the start to loop the file" % self.uri)
        log.debug("%s: looped", self.uri)

    def _count_skipped_frames(self, pts):
        # A file is read with back-pressure, so every frame its decoder makes arrives: a gap in the pts is frames
        # the decoder dropped.
        last, self._last_stream_pts = self._last_stream_pts, pts
        if last is None or pts <= last:
            return
        if pts in self._resized_at_pts:
            self._resized_at_pts.discard(pts)
            log.debug("%s: picture size changed at %.3f s; the pts jump there is a splice, not lost frames",
                      self.uri, pts / 1e9)
            return
        skipped = int(round((pts - last) / float(self._frame_duration))) - 1
        if skipped > 0:
            self.frames_lost += skipped
            log.debug("%s: %d frame(s) not decoded before %.3f s", self.uri, skipped, pts / 1e9)

    def _count_missing_tail(self, Gst):
        """A file whose frames stop short of its duration is truncated (or broke): count the frames it lacks."""
        if self._last_stream_pts is None or self._pipeline is None:
            return
        ok, duration = self._pipeline.query_duration(Gst.Format.TIME)
        if not ok or duration <= 0:
            return
        # rounded down: containers often state a duration up to a frame longer than their last frame's pts
        missing = int((duration - self._last_stream_pts) / float(self._frame_duration) + 0.01) - 1
        if missing > 0:
            self.frames_lost += missing
            log.warning("%s: the frames end at %.2f s of the file's %.2f s: %d frame(s) missing (truncated or "
                        "damaged file)", self.uri, self._last_stream_pts / 1e9, duration / 1e9, missing)
        self._last_stream_pts = None

    def _frame_from(self, sample, deadline, Gst):
        buffer = sample.get_buffer()
        self._frames += 1
        if buffer.duration != Gst.CLOCK_TIME_NONE and buffer.duration > 0:
            self._frame_duration = buffer.duration
        if buffer.pts == Gst.CLOCK_TIME_NONE:
            stream_pts = (self._frames - 1) * self._frame_duration
        else:
            stream_pts = buffer.pts
            if not self.live:
                self._count_skipped_frames(buffer.pts)
        captured_ns = self._captured_ns(sample, buffer, Gst)   # before waiting for the snapshot
        image = self._image(sample, self.geometry.width, self.geometry.height)
        snapshot = None
        if self._snapshot_sink is not None:
            snapshot_sample = self._matching_snapshot(buffer.pts, deadline)
            if snapshot_sample is not None:
                snapshot = self._image(snapshot_sample, None, None)
        pts = self._pts_base + stream_pts
        self._last_pts = pts
        return RawFrame(pts_ns=pts, captured_ns=captured_ns, image=image, snapshot=snapshot)

    def _matching_snapshot(self, pts, deadline):
        # Both branches see the same tee'd buffers, so the snapshot with the same pts exists unless a live branch
        # dropped it; then the nearest one is used. A newer-than-wanted one is kept for the next frame.
        best, self._pending_snapshot = self._pending_snapshot, None
        # A file's snapshot branch always delivers; wait for it even if the caller's timeout has run out.
        wait_until = deadline if self.live else max(deadline, monotonic_ns() + int(PREROLL_TIMEOUT_S * 1e9))
        while best is None or best.get_buffer().pts < pts:
            remaining = max(0, wait_until - monotonic_ns())
            sample = self._snapshot_sink.try_pull_sample(min(remaining, int(_PULL_SLICE_S * 1e9)))
            if sample is None:
                if remaining == 0 or self._snapshot_sink is None or self._snapshot_sink.get_property("eos"):
                    break
                continue
            if best is None or abs(sample.get_buffer().pts - pts) <= abs(best.get_buffer().pts - pts):
                best = sample
            else:
                self._pending_snapshot = sample
                break
        return best

    def _image(self, sample: object, width: Optional[int], height: Optional[int]) -> np.ndarray:
        """Copy one packed RGB/BGR(x) frame out of a sample into a read-only (height, width, 3) array; a width or
        height of None accepts what the caps say (snapshots: at most snapshot_width, never scaled up)."""
        _, GstVideo, _ = self._gst()
        info = video_info_from_caps(GstVideo, sample.get_caps())
        wrong_width = width is not None and info is not None and info.width != width
        wrong_height = height is not None and info is not None and info.height != height
        if info is None or wrong_width or wrong_height:
            raise SourceError("%s: appsink delivered unexpected caps %s" % (self.uri, sample.get_caps().to_string()))
        buffer = sample.get_buffer()
        stride, offset = info.stride[0], info.offset[0]
        meta = GstVideo.buffer_get_video_meta(buffer)
        if meta is not None:    # the producer's own row stride (padding) wins over the caps' default
            stride, offset = meta.stride[0], meta.offset[0]
        return packed_rows_to_rgb(buffer.extract_dup(0, buffer.get_size()), info.width, info.height, stride, offset,
                                  4 if self._plan.nvmm else 3)

    def _captured_ns(self, sample, buffer, Gst):
        now = monotonic_ns()
        if not self.live or buffer.pts == Gst.CLOCK_TIME_NONE or self._pipeline is None:
            return now
        if self._monotonic_clock is None:
            clock = self._pipeline.get_clock()
            self._monotonic_clock = isinstance(clock, Gst.SystemClock) and (
                clock.get_property("clock-type") == Gst.ClockType.MONOTONIC)
        if not self._monotonic_clock:
            return now
        running = sample.get_segment().to_running_time(Gst.Format.TIME, buffer.pts)
        if running == Gst.CLOCK_TIME_NONE or running < 0:
            return now
        return min(now, self._pipeline.get_base_time() + running)


def video_info_from_caps(GstVideo, caps):
    """GstVideo.VideoInfo for caps, on GStreamer 1.14 (from_caps fills an instance) and 1.20+ (new_from_caps)."""
    new_from_caps = getattr(GstVideo.VideoInfo, "new_from_caps", None)
    if new_from_caps is not None:
        return new_from_caps(caps)
    info = GstVideo.VideoInfo.new()
    result = info.from_caps(caps)
    if isinstance(result, tuple):   # some PyGObject versions return the filled struct as an out value
        return result[1] if result[0] else None
    return info if result else None


def packed_rows_to_rgb(data: bytes, width: int, height: int, stride: int, offset: int,
                       pixel_bytes: int) -> np.ndarray:
    """(height, width, 3) read-only uint8 view or copy of packed rows; drops a 4th byte (RGBA/BGRx) and padding."""
    needed = offset + stride * (height - 1) + width * pixel_bytes
    if len(data) < needed:
        raise SourceError("video frame of %d bytes is shorter than %dx%d with stride %d" % (
            len(data), width, height, stride))
    flat = np.frombuffer(data, dtype=np.uint8)
    rows = np.lib.stride_tricks.as_strided(flat[offset:], shape=(height, width, pixel_bytes),
                                           strides=(stride, pixel_bytes, 1), writeable=False)
    if pixel_bytes == 3 and stride == width * 3:
        return rows    # already a view of our own copy of the buffer: no second copy
    image = np.ascontiguousarray(rows[:, :, :3])
    image.flags.writeable = False
    return image


def _skip_factories(decodebin, pad, caps, factory, skipped):
    return _AUTOPLUG_SKIP if factory.get_name() in skipped else _AUTOPLUG_TRY


def _element_label(obj):
    """`rtspsrc0 (rtspsrc)`: the element that posted a message, with its factory when known."""
    name = obj.get_name() if obj is not None else "pipeline"
    factory = obj.get_factory() if hasattr(obj, "get_factory") else None
    return "%s (%s)" % (name, factory.get_name()) if factory is not None and factory.get_name() != name else name
