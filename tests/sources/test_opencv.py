"""OpenCVSource: the synthetic test video, real MP4 files written with cv2.VideoWriter, and a real loopback RTSP
server (skipped where GstRtspServer is unavailable). There is no CSI camera here; csi:// is tested only for its
clear, permanent error."""

import os

import numpy as np
import pytest
from support.rtsp_server import start_rtsp_server_or_skip
from support.source_reading import read_frames, read_until_end
from support.video_files import write_mp4v

from firedetd.config import SourceConfig
from firedetd.errors import SourceError
from firedetd.sources import EndOfStream, Geometry
from firedetd.sources.opencv import OpenCVSource, SyntheticVideo, scale_to_model, scale_to_snapshot
from firedetd.sources.uri import parse_test_uri

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "samples",
                      "furg_house6.mp4")

SMALL_RGB = Geometry(64, 48, "RGB", "stretch", 0)


def open_source(uri, geometry=SMALL_RGB, **options):
    source = OpenCVSource(SourceConfig(uri=uri, **options), geometry)
    source.open()
    return source






def increasing(values):
    return all(b > a for a, b in zip(values, values[1:]))


@pytest.fixture
def mp4_file(tmp_path):
    return write_mp4v(os.path.join(str(tmp_path), "clip.mp4"), frames=12, width=160, height=120, fps=10.0)


# -- scaling and colour -----------------------------------------------------------------------------------------

def three_bands(width=400, height=100):
    """BGR: blue on the left quarter-plus, green in the middle, red on the right."""
    bgr = np.zeros((height, width, 3), np.uint8)
    bgr[:, :150] = (255, 0, 0)
    bgr[:, 150:250] = (0, 255, 0)
    bgr[:, 250:] = (0, 0, 255)
    return bgr


def test_center_crop_keeps_only_the_middle_and_stretch_keeps_the_edges():
    cropped = scale_to_model(three_bands(), Geometry(50, 50, "BGR", "center_crop", 0))
    stretched = scale_to_model(three_bands(), Geometry(50, 50, "BGR", "stretch", 0))
    assert cropped.shape == stretched.shape == (50, 50, 3)
    assert (cropped[..., 1] > 200).all()                       # all green
    assert stretched[25, 0].tolist() == [255, 0, 0] and stretched[25, -1].tolist() == [0, 0, 255]


def test_rgb_model_gets_channels_swapped_from_opencv_bgr():
    image = scale_to_model(three_bands(), Geometry(40, 10, "RGB", "stretch", 0))
    assert image[5, 0].tolist() == [0, 0, 255] and not image.flags.writeable


def test_snapshot_is_rgb_and_keeps_the_aspect():
    snapshot = scale_to_snapshot(three_bands(400, 100), 200)
    assert snapshot.shape == (50, 200, 3) and snapshot[25, 0].tolist() == [0, 0, 255]


@pytest.mark.parametrize("pattern", ["smpte", "snow", "black", "white", "red", "green", "blue", "ball", "gradient"])
def test_every_test_pattern_draws_a_frame_of_the_asked_size(pattern):
    spec = parse_test_uri("test://?pattern=%s&width=120&height=90" % pattern, SourceConfig(uri="test://"))
    frame = SyntheticVideo(spec).frame(3)
    assert frame.shape == (90, 120, 3) and frame.dtype == np.uint8


def test_ball_moves_between_frames():
    spec = parse_test_uri("test://?pattern=ball&width=160&height=120&fps=10", SourceConfig(uri="test://"))
    video = SyntheticVideo(spec)
    assert not np.array_equal(video.frame(0), video.frame(5))


# -- the test:// source -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_red_test_source_arrives_in_the_model_colour_order(color):
    source = open_source("test://?pattern=red&width=320&height=240&fps=60",
                         Geometry(96, 64, color, "stretch", 160))
    try:
        frame = read_frames(source, 1)[0]
    finally:
        source.close()
    assert frame.image.shape == (64, 96, 3) and frame.image.dtype == np.uint8
    red, blue = (0, 2) if color == "RGB" else (2, 0)
    assert frame.image[..., red].min() > 200 and frame.image[..., blue].max() < 60
    assert frame.snapshot.shape == (120, 160, 3) and frame.snapshot[..., 0].min() > 200


def test_finite_test_source_ends_after_its_frames():
    source = open_source("test://?pattern=ball&width=64&height=64&live=false&frames=5")
    try:
        frames = read_until_end(source)
    finally:
        source.close()
    assert len(frames) == 5 and increasing([f.pts_ns for f in frames])


def test_live_test_source_returns_none_until_the_next_frame_is_due():
    source = open_source("test://?pattern=black&width=64&height=64&fps=0.5")   # one frame every 2 s
    try:
        read_frames(source, 1)
        assert source.live and source.read(0.05) is None
    finally:
        source.close()


# -- files ------------------------------------------------------------------------------------------------------

def test_file_delivers_every_frame_then_end_of_stream(mp4_file):
    source = open_source("file://" + mp4_file, Geometry(32, 24, "RGB", "stretch", 80))
    try:
        assert not source.live
        frames = read_until_end(source)
        with pytest.raises(EndOfStream):
            source.read(1.0)
    finally:
        source.close()
    assert len(frames) == 12 and increasing([f.pts_ns for f in frames])
    assert frames[0].snapshot.shape == (60, 80, 3)
    # the writer's grey ramp: frame i is 20*i everywhere (within the codec's error)
    assert abs(int(frames[5].image.mean()) - 100) < 12


def test_looping_file_keeps_delivering_with_increasing_pts(mp4_file):
    source = open_source("file://" + mp4_file, loop=True)
    try:
        frames = read_frames(source, 30)
    finally:
        source.close()
    assert increasing([f.pts_ns for f in frames])


def test_realtime_file_holds_a_frame_that_is_not_due_yet(tmp_path):
    path = write_mp4v(os.path.join(str(tmp_path), "slow.mp4"), frames=3, fps=0.5)   # a frame every 2 s
    source = open_source("file://" + path, realtime=True)
    try:
        assert source.live
        first = read_frames(source, 1)[0]
        assert source.read(0.05) is None          # not due for ~2 s
        second = read_frames(source, 1)[0]        # the held frame, not a skipped one
    finally:
        source.close()
    assert second.pts_ns - first.pts_ns == pytest.approx(2e9, rel=0.01)


def test_missing_file_is_a_permanent_error_naming_the_path(tmp_path):
    path = os.path.join(str(tmp_path), "nope.mp4")
    with pytest.raises(SourceError) as err:
        open_source("file://" + path)
    assert path in str(err.value) and err.value.permanent


def test_file_that_is_not_a_video_fails_naming_the_path(tmp_path):
    path = os.path.join(str(tmp_path), "junk.mp4")
    with open(path, "wb") as f:
        f.write(b"this is not a video" * 100)
    with pytest.raises(SourceError) as err:
        open_source("file://" + path)
    assert path in str(err.value)


# -- what the fallback cannot do --------------------------------------------------------------------------------

def test_csi_needs_gstreamer():
    """No CSI camera here, and OpenCV has no nvarguscamerasrc: the error says to use the gst backend."""
    with pytest.raises(SourceError) as err:
        open_source("csi://0")
    assert err.value.permanent and "nvarguscamerasrc" in str(err.value)


def test_hardware_decoding_is_refused_permanently(mp4_file):
    with pytest.raises(SourceError) as err:
        open_source("file://" + mp4_file, decoder="hardware")
    assert err.value.permanent and "hardware" in str(err.value)


def test_read_before_open_fails():
    with pytest.raises(SourceError):
        OpenCVSource(SourceConfig(uri="file:///x.mp4"), Geometry(8, 8, "RGB", "stretch", 0)).read(0.1)


# -- RTSP over loopback -----------------------------------------------------------------------------------------

@pytest.fixture
def rtsp_server():
    server = start_rtsp_server_or_skip(width=320, height=240, fps=15)
    yield server
    server.stop()


def test_rtsp_frames_arrive_and_a_lost_server_raises_source_error(rtsp_server):
    source = open_source(rtsp_server.url, Geometry(64, 48, "BGR", "stretch", 160), stall_timeout_s=5)
    try:
        frames = read_frames(source, 5)
        assert all(f.image.shape == (48, 64, 3) and f.snapshot.shape == (120, 160, 3) for f in frames)
        rtsp_server.stop()
        with pytest.raises(SourceError) as err:
            for _ in range(1000):    # frames FFmpeg had buffered come first
                source.read(1.0)
    finally:
        source.close()
    assert rtsp_server.url in str(err.value) and not err.value.permanent


def test_the_opencv_fallback_hands_the_model_the_frames_gstreamer_does():
    """Both backends decode and scale the bundled video to the same model input (to within 3 grey levels on
    average), so a machine without PyGObject decides what one with it decides."""
    pytest.importorskip("gi", reason="PyGObject/GStreamer not importable here")
    from firedetd.sources import Geometry, gst_available, load_backend

    if not gst_available():
        pytest.skip("PyGObject/GStreamer not importable here")
    geometry = Geometry(224, 224, "RGB", "stretch", 0)
    frames = {}
    for backend in ("opencv", "gst"):
        source = load_backend(backend)(SourceConfig(uri="file://" + SAMPLE), geometry)
        source.open()
        try:
            frames[backend] = [source.read(5).image.astype(np.float32) for _ in range(10)]
        finally:
            source.close()
    differences = [float(np.abs(a - b).mean()) for a, b in zip(frames["opencv"], frames["gst"])]
    assert max(differences) < 3.0, differences
