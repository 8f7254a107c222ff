"""GstSource: pipeline descriptions for every scheme (pure), and real pipelines (videotestsrc, files, RTSP).

The Jetson elements (nvarguscamerasrc, nvv4l2decoder, nvvidconv) are absent on this machine: their pipeline
descriptions are tested by passing the set of "available" elements in; a real CSI open is tested only for its
clear, permanent error.
"""

import os

import numpy as np
import pytest
from support.rtsp_server import start_rtsp_server_or_skip
from support.source_reading import read_frames, read_until_end

from firedetd.clock import monotonic_ns
from firedetd.config import SourceConfig
from firedetd.errors import SourceError
from firedetd.sources import EndOfStream, Geometry, gst, gst_available
from firedetd.sources.gst import GstSource, describe_pipeline, elements_in, packed_rows_to_rgb, quote

DESKTOP = frozenset(["videotestsrc", "v4l2src", "rtspsrc", "souphttpsrc", "filesrc", "decodebin", "tee", "queue",
                     "videoscale", "videoconvert", "aspectratiocrop", "appsink", "capsfilter", "avdec_h264"])
JETSON = DESKTOP | {"nvarguscamerasrc", "nvv4l2decoder", "nvvidconv"}
MODEL_RGB = Geometry(width=224, height=224, color="RGB", resize="stretch", snapshot_width=640)

needs_gst = pytest.mark.skipif(not gst_available(), reason="PyGObject/GStreamer not importable here")


def plan_for(uri, available, geometry=MODEL_RGB, **options):
    return describe_pipeline(SourceConfig(uri=uri, **options), geometry, available)


def branch(description, sink_name):
    """The part of a description from the tee to the named appsink."""
    for part in description.split("split. ! ")[1:]:
        if "appsink name=%s " % sink_name in part:
            return part
    raise AssertionError("no appsink %s in %s" % (sink_name, description))


# -- pipeline descriptions (no GStreamer needed) ----------------------------------------------------------------

def test_csi_on_jetson_uses_nvargus_nvmm_caps_and_nvvidconv_rgba():
    plan = plan_for("csi://1", JETSON, width=1920, height=1080, fps=30)
    assert plan.description.startswith(
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12")
    model = branch(plan.description, "model")
    assert "nvvidconv" in model and "format=RGBA,width=224,height=224" in model
    assert "videoconvert" not in plan.description
    assert plan.nvmm and plan.live and not plan.size_on_caps
    # the snapshot height follows the camera's 16:9 aspect, computed up front since the camera size is known
    assert "width=640,height=360" in branch(plan.description, "snapshot")


def test_csi_on_jetson_bgr_center_crop_sets_nvvidconv_crop_rectangle():
    geometry = Geometry(224, 224, "BGR", "center_crop", 0)
    plan = plan_for("csi://0", JETSON, geometry, width=1280, height=720)
    model = branch(plan.description, "model")
    assert "format=BGRx" in model
    assert "left=280 top=0 right=1000 bottom=720" in model     # the centred 720x720 square
    assert "appsink name=snapshot" not in plan.description


def test_rtsp_on_jetson_auto_prefers_nvv4l2decoder_and_sizes_on_caps():
    plan = plan_for("rtsp://192.0.2.1/live", JETSON, transport="udp", latency_ms=120)
    assert 'rtspsrc location="rtsp://192.0.2.1/live" protocols=udp latency=120 ! decodebin' in plan.description
    assert "video/x-raw(ANY) ! tee" in plan.description       # NVMM buffers from the decoder pass
    assert plan.hardware_decoder and plan.nvmm and plan.size_on_caps
    assert "videoconvert" not in plan.description and plan.skip_decoders == ()


def test_rtsp_on_jetson_with_software_decoder_keeps_nvv4l2decoder_out():
    plan = plan_for("rtsp://192.0.2.1/live", JETSON, decoder="software")
    assert not plan.hardware_decoder and not plan.nvmm
    assert "nvv4l2decoder" in plan.skip_decoders
    assert "videoconvert" in plan.description and "nvvidconv" not in plan.description


def test_hardware_decoder_without_nvv4l2decoder_is_a_permanent_error():
    with pytest.raises(SourceError) as err:
        plan_for("file:///v.mp4", DESKTOP, decoder="hardware")
    assert err.value.permanent and "nvv4l2decoder" in str(err.value) and "file:///v.mp4" in str(err.value)


def test_file_on_desktop_decodes_in_software_with_back_pressure():
    plan = plan_for("file:///videos/a b.mp4", DESKTOP)
    assert plan.description.startswith('filesrc location="/videos/a b.mp4" ! decodebin name=decode ! video/x-raw ! ')
    model = branch(plan.description, "model")
    assert "videoscale add-borders=false ! video/x-raw,width=224,height=224 ! videoconvert ! video/x-raw,format=RGB" \
        in model
    assert model.startswith("queue ! ") and "drop=false sync=false" in model
    assert not plan.live and not plan.nvmm and not plan.hardware_decoder


def test_realtime_file_is_live_and_synced_to_the_clock():
    plan = plan_for("file:///v.mp4", DESKTOP, realtime=True)
    model = branch(plan.description, "model")
    # paced by the synced appsink through a waiting queue; the appsink still drops if the reader is slow
    assert plan.live and model.startswith("queue ! ") and "drop=true sync=true" in model


def test_v4l2_asks_raw_or_mjpeg_at_the_configured_size():
    plan = plan_for("v4l2:///dev/video2", DESKTOP, width=640, height=480, fps=15)
    assert plan.description.startswith(
        'v4l2src device="/dev/video2" ! capsfilter caps="video/x-raw,width=640,height=480,framerate=15/1;'
        'image/jpeg,width=640,height=480,framerate=15/1" ! decodebin')
    assert plan.live


def test_http_uses_a_live_souphttpsrc():
    plan = plan_for("http://192.0.2.1/cam.mjpg", DESKTOP)
    assert plan.description.startswith('souphttpsrc location="http://192.0.2.1/cam.mjpg" is-live=true ! decodebin')


def test_test_uri_maps_to_videotestsrc_options():
    plan = plan_for("test://?pattern=snow&fps=12.5&width=320&height=200&live=false&frames=7", DESKTOP)
    assert plan.description.startswith(
        "videotestsrc pattern=snow is-live=false num-buffers=7 ! video/x-raw,width=320,height=200,framerate=25/2")
    assert not plan.live


def test_center_crop_on_desktop_crops_to_the_model_aspect_before_scaling():
    plan = plan_for("test://", DESKTOP, Geometry(300, 200, "BGR", "center_crop", 0))
    assert "aspectratiocrop aspect-ratio=300/200 ! videoscale" in branch(plan.description, "model")


def test_snapshot_branch_fixes_width_and_square_pixels():
    plan = plan_for("test://", DESKTOP)
    snapshot = branch(plan.description, "snapshot")
    assert "video/x-raw,width=640,pixel-aspect-ratio=1/1" in snapshot and "format=RGB" in snapshot
    assert plan.size_on_caps  # the width drops to the input's when that is narrower


def test_elements_in_lists_factories_not_caps_or_tee_references():
    plan = plan_for("csi://0", JETSON)
    assert elements_in(plan.description) == ("nvarguscamerasrc", "tee", "queue", "nvvidconv", "appsink",
                                             "capsfilter")


def test_quote_escapes_quotes_and_backslashes():
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


def test_packed_rows_drop_row_padding_and_the_fourth_byte():
    width, height, stride = 3, 2, 16
    data = np.zeros(stride * height, np.uint8)
    for row in range(height):
        data[row * stride: row * stride + width * 4] = np.arange(width * 4) + 100 * row
    image = packed_rows_to_rgb(data.tobytes(), width, height, stride, 0, 4)
    assert image.shape == (2, 3, 3) and not image.flags.writeable
    assert image[1, 2].tolist() == [108, 109, 110]


def test_packed_rows_reject_a_short_buffer():
    with pytest.raises(SourceError):
        packed_rows_to_rgb(b"\0" * 10, 4, 4, 12, 0, 3)


# -- real pipelines ---------------------------------------------------------------------------------------------

def open_source(uri, geometry=MODEL_RGB, **options):
    source = GstSource(SourceConfig(uri=uri, **options), geometry)
    source.open()
    return source






@pytest.fixture
def h264_file(tmp_path):
    if not gst_available():
        pytest.skip("PyGObject/GStreamer not importable here")
    from support.video_files import write_h264_mp4

    for element in ("x264enc", "mp4mux"):
        if not gst.import_gst()[0].ElementFactory.find(element):
            pytest.skip("%s not installed" % element)
    return write_h264_mp4(os.path.join(str(tmp_path), "clip.mp4"), frames=30, width=320, height=240, fps=30)


@needs_gst
@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_red_pattern_arrives_in_the_model_colour_order(color):
    source = open_source("test://?pattern=red&width=320&height=240", Geometry(96, 64, color, "stretch", 0))
    try:
        frame = read_frames(source, 1)[0]
    finally:
        source.close()
    assert frame.image.shape == (64, 96, 3) and frame.image.dtype == np.uint8 and frame.snapshot is None
    red, blue = (0, 2) if color == "RGB" else (2, 0)
    assert frame.image[..., red].min() > 200 and frame.image[..., blue].max() < 60


@needs_gst
def test_odd_width_rows_with_stride_padding_are_not_skewed():
    # 74 RGB pixels = 222 bytes, padded to 224 a row: reading rows as 222 would rotate the channels from row 1 on
    source = open_source("test://?pattern=red&width=320&height=240", Geometry(74, 50, "RGB", "stretch", 0))
    try:
        image = read_frames(source, 1)[0].image
    finally:
        source.close()
    assert image.shape == (50, 74, 3)
    assert image[..., 0].min() > 200 and image[..., 1:].max() < 60


@needs_gst
@pytest.mark.parametrize("size,expected", [((640, 480), (240, 320)), ((1280, 720), (180, 320)),
                                           ((200, 150), (150, 200))])  # narrower than 320: never scaled up
def test_snapshot_is_rgb_at_snapshot_width_keeping_the_aspect(size, expected):
    source = open_source("test://?pattern=red&width=%d&height=%d" % size, Geometry(64, 64, "BGR", "stretch", 320))
    try:
        frame = read_frames(source, 1)[0]
    finally:
        source.close()
    assert frame.snapshot.shape == expected + (3,)
    assert frame.snapshot[..., 0].min() > 200 and frame.snapshot[..., 2].max() < 60   # RGB even for a BGR model


@needs_gst
def test_center_crop_keeps_the_middle_while_stretch_keeps_the_edges():
    # SMPTE bars on a 7:2 frame: stretched, the left edge is the grey bar; centre-cropped square, it is cyan.
    uri = "test://?pattern=smpte&width=1280&height=360&live=false"
    edges = {}
    for resize in ("stretch", "center_crop"):
        source = open_source(uri, Geometry(70, 70, "RGB", resize, 0))
        try:
            edges[resize] = read_frames(source, 1)[0].image[35, 1].astype(int)
        finally:
            source.close()
    assert edges["stretch"][0] > 150                                # grey: red channel high
    assert edges["center_crop"][0] < 60 and edges["center_crop"][1] > 150   # cyan: no red, green high


@needs_gst
def test_live_test_source_times_frames_on_the_monotonic_clock():
    before = monotonic_ns()
    source = open_source("test://?pattern=ball&width=160&height=120&fps=30")
    try:
        assert source.live
        frames = read_frames(source, 5)
        now = monotonic_ns()
    finally:
        source.close()
    pts = [f.pts_ns for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 5
    # base time + running time on the pipeline's monotonic clock: the same clock as firedetd.clock, never ahead
    assert all(before <= f.captured_ns <= now for f in frames)
    assert [f.captured_ns for f in frames] == sorted(f.captured_ns for f in frames)


@needs_gst
def test_live_source_returns_none_when_no_frame_comes_in_time():
    source = open_source("test://?pattern=black&width=64&height=64&fps=0.5")   # one frame every 2 s
    try:
        read_frames(source, 1)
        assert source.read(0.05) is None
    finally:
        source.close()


@needs_gst
def test_file_delivers_every_frame_then_end_of_stream(h264_file):
    source = open_source("file://" + h264_file, Geometry(64, 48, "RGB", "stretch", 160))
    try:
        assert not source.live
        frames = read_frames_until_end_checked(source)
        with pytest.raises(EndOfStream):    # and stays at the end
            source.read(1.0)
    finally:
        source.close()
    assert len(frames) == 30
    assert all(f.snapshot is not None and f.snapshot.shape == (120, 160, 3) for f in frames)


@needs_gst
def test_a_file_whose_picture_size_changes_midway_loses_no_frame_and_counts_none(tmp_path):
    """Two recordings joined byte for byte (MPEG-TS, as a camera that changed resolution leaves them): every
    frame arrives, the snapshots follow the new size, and the pts jump at the splice is not taken for frames
    the decoder lost (firedetd_frames_bad_total read 1 here)."""
    from support.video_files import write_h264_mp4

    for element in ("x264enc", "mpegtsmux", "tsdemux"):
        if not gst.import_gst()[0].ElementFactory.find(element):
            pytest.skip("%s not installed" % element)
    parts = [write_h264_mp4(os.path.join(str(tmp_path), "%dx%d.ts" % size), frames=30, width=size[0],
                            height=size[1], mux="mpegtsmux") for size in ((320, 240), (640, 360))]
    joined = os.path.join(str(tmp_path), "joined.ts")
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                out.write(f.read())
    source = open_source("file://" + joined, Geometry(64, 48, "RGB", "stretch", 160))
    try:
        frames = read_frames_until_end_checked(source)
    finally:
        source.close()
    assert len(frames) == 60
    assert {f.snapshot.shape for f in frames[:30]} == {(120, 160, 3)}
    assert {f.snapshot.shape for f in frames[30:]} == {(90, 160, 3)}
    assert source.frames_lost == 0


def read_frames_until_end_checked(source):
    frames = read_until_end(source)
    pts = [f.pts_ns for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    return frames


@needs_gst
def test_looping_file_keeps_delivering_with_increasing_pts(h264_file):
    source = open_source("file://" + h264_file, Geometry(64, 48, "RGB", "stretch", 0), loop=True)
    try:
        frames = read_frames(source, 75)    # two and a half times the file
    finally:
        source.close()
    pts = [f.pts_ns for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))


@needs_gst
def test_realtime_file_is_live_and_delivers_in_order(h264_file):
    source = open_source("file://" + h264_file, Geometry(64, 48, "RGB", "stretch", 0), realtime=True)
    try:
        assert source.live
        frames = read_frames(source, 10)
    finally:
        source.close()
    assert all(b.pts_ns > a.pts_ns for a, b in zip(frames, frames[1:]))


@needs_gst
def test_each_snapshot_is_the_same_instant_as_its_model_frame():
    # The ball moves every frame: a snapshot paired with the wrong frame matches a neighbour better than its own.
    import cv2

    source = open_source("test://?pattern=ball&width=320&height=240&live=false&frames=12",
                         Geometry(80, 60, "RGB", "stretch", 160))
    try:
        frames = read_until_end(source)
    finally:
        source.close()
    shrunk = [cv2.resize(np.asarray(f.snapshot), (80, 60), interpolation=cv2.INTER_AREA).astype(int) for f in frames]
    for i in range(1, len(frames) - 1):
        own = np.abs(shrunk[i] - frames[i].image).mean()
        neighbours = [np.abs(shrunk[i] - frames[j].image).mean() for j in (i - 1, i + 1)]
        assert own < min(neighbours), "snapshot %d is not paired with its own frame" % i


@needs_gst
def test_finite_test_source_ends_with_end_of_stream():
    source = open_source("test://?pattern=ball&width=64&height=64&live=false&frames=4", Geometry(32, 32, "RGB",
                                                                                                  "stretch", 0))
    try:
        assert len(read_until_end(source)) == 4
    finally:
        source.close()


@needs_gst
def test_missing_file_is_a_permanent_error_naming_the_path(tmp_path):
    path = os.path.join(str(tmp_path), "nope.mp4")
    with pytest.raises(SourceError) as err:
        open_source("file://" + path)
    assert path in str(err.value) and err.value.permanent


@needs_gst
def test_file_that_is_not_a_video_fails_to_open_naming_the_uri(tmp_path):
    path = os.path.join(str(tmp_path), "junk.mp4")
    with open(path, "wb") as f:
        f.write(b"this is not a video" * 100)
    with pytest.raises(SourceError) as err:
        open_source("file://" + path)
    assert "file://" + path in str(err.value)


@needs_gst
def test_csi_without_nvarguscamerasrc_is_a_permanent_error():
    """No CSI camera or Jetson plugins here: opening csi://0 must fail clearly, not hang."""
    with pytest.raises(SourceError) as err:
        open_source("csi://0")
    assert err.value.permanent and "nvarguscamerasrc" in str(err.value) and "csi://0" in str(err.value)


@needs_gst
def test_software_decoder_keeps_the_skipped_factories_out_of_decodebin(h264_file, monkeypatch):
    # No Jetson decoder exists here, so avdec_h264 stands in for it: skipped, the H.264 file cannot be decoded.
    monkeypatch.setattr(gst, "JETSON_DECODERS", ("avdec_h264",))
    with pytest.raises(SourceError) as err:
        open_source("file://" + h264_file, decoder="software")
    assert "file://" + h264_file in str(err.value)


@needs_gst
def test_close_is_idempotent_and_read_after_close_fails():
    source = open_source("test://?pattern=black&width=64&height=64")
    read_frames(source, 1)
    source.close()
    source.close()
    with pytest.raises(SourceError):
        source.read(0.1)


# -- RTSP over loopback -----------------------------------------------------------------------------------------

@pytest.fixture
def rtsp_server():
    server = start_rtsp_server_or_skip(width=320, height=240, fps=15)
    yield server
    server.stop()


@needs_gst
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_frames_arrive_over_loopback(rtsp_server, transport):
    source = open_source(rtsp_server.url, Geometry(64, 48, "BGR", "stretch", 160), transport=transport,
                         latency_ms=50)
    try:
        frames = read_frames(source, 5, timeout_s=15.0)
    finally:
        source.close()
    assert source.live
    assert all(f.image.shape == (48, 64, 3) and f.snapshot.shape == (120, 160, 3) for f in frames)


@needs_gst
def test_rtsp_server_going_away_raises_source_error(rtsp_server):
    """rtspsrc sees the connection close and ends the stream; read() raises SourceError (not EndOfStream), so the
    capture thread reconnects."""
    source = open_source(rtsp_server.url, Geometry(64, 48, "RGB", "stretch", 0), latency_ms=50)
    try:
        read_frames(source, 3, timeout_s=15.0)
        rtsp_server.stop()
        with pytest.raises(SourceError) as err:
            for _ in range(300):
                source.read(1.0)
    finally:
        source.close()
    assert rtsp_server.url in str(err.value) and not err.value.permanent


@needs_gst
def test_rtsp_connection_refused_raises_source_error(rtsp_server):
    url = rtsp_server.url
    rtsp_server.stop()      # the port is closed now
    source = GstSource(SourceConfig(uri=url, latency_ms=50), MODEL_RGB)
    try:
        with pytest.raises(SourceError) as err:    # from open() or from a read() soon after: both are fine
            source.open()
            for _ in range(60):
                source.read(1.0)
    finally:
        source.close()
    assert url in str(err.value) and not err.value.permanent


@needs_gst
def test_a_live_reader_that_fell_behind_gets_the_newest_frame_and_counts_the_skipped():
    source = open_source("test://?pattern=ball&fps=30&width=160&height=120", Geometry(32, 32, "RGB", "stretch", 0))
    try:
        first = read_frames(source, 1)[0]
        import time

        time.sleep(0.5)  # the appsink fills (it keeps 2) while nobody reads
        behind = source.read(2.0)
    finally:
        source.close()
    # without draining, the next frame would be the one right after `first` (a frame interval later)
    assert behind.pts_ns - first.pts_ns > 0.3e9
    assert source.frames_superseded >= 1


def test_a_usb_camera_on_a_jetson_decodes_mjpeg_on_the_cpu_not_through_nvv4l2decoder():
    # FAKE: the Jetson's element names are only listed, not run (none exist here)
    plan = plan_for("v4l2:///dev/video0", JETSON | {"nvjpegdec"})
    assert not plan.hardware_decoder and not plan.nvmm
    assert {"nvv4l2decoder", "nvjpegdec"} <= set(plan.skip_decoders)
    assert "nvvidconv" not in plan.description and "decodebin" in plan.description
    rtsp = plan_for("rtsp://192.0.2.1/s", JETSON | {"nvjpegdec"})
    assert rtsp.hardware_decoder and "nvv4l2decoder" not in rtsp.skip_decoders   # streams keep the hardware path


def test_every_gstreamer_name_the_backend_uses_is_resolved_once_at_import():
    """PyGObject builds enums and classes on first access, not thread-safely: two cameras opening at once once
    killed a capture thread with "type object 'MessageType' has no attribute 'ERROR'". import_gst resolves
    them under its lock; a name used in gst.py but missing from that list would be built lazily again."""
    import re

    with open(gst.__file__) as f:
        source = f.read()
    used = set(re.findall(r"\bGst\.([A-Za-z_]+)", source)) - {"init"}
    resolved = {name.split(".")[0] for name in gst._GST_NAMES}
    assert used <= resolved, sorted(used - resolved)
    used_video = set(re.findall(r"\bGstVideo\.([A-Za-z_]+)", source))
    assert used_video <= set(gst._GSTVIDEO_NAMES), sorted(used_video - set(gst._GSTVIDEO_NAMES))


@needs_gst
def test_import_gst_leaves_the_enums_built_before_any_camera_thread_runs():
    # a fresh process: nothing else has touched GStreamer's names yet. Only the CamelCase names (enums, flags,
    # classes) are built lazily into the module; CLOCK_TIME_NONE, SECOND and functions are plain values
    import subprocess
    import sys

    code = ("from firedetd.sources import gst\n"
            "Gst = gst.import_gst()[0]\n"
            "names = {n.split('.')[0] for n in gst._GST_NAMES if n[0].isupper() and n.split('.')[0][1:2].islower()}\n"
            "print(sorted(n for n in names if n not in vars(Gst)))\n")
    out = subprocess.check_output([sys.executable, "-c", code], universal_newlines=True, timeout=60)
    assert out.strip() == "[]"
