"""Camera faults against the whole daemon: a real loopback RTSP server (GstRtspServer) that the test stops and
starts again while `firedetd run` watches it beside a second camera, and real damaged video files (made here with
x264 and then truncated or overwritten), read through the GStreamer backend."""

import os
import random
import time

import pytest
from support.daemon import free_port, metric, scrape, wait_until
from support.rtsp_server import RtspTestServer, rtsp_server_missing

from .daemon_setup import record_figures, running_daemon, stop_daemon, write_config

RECONNECT_LIMIT_S = 5.0  # the bound; the default reconnect_max_s (3 s) plus connect time keeps within it
STAGE_THREADS = ("capture-rtsp", "capture-pattern", "engine", "postprocess")


@pytest.fixture
def rtsp_port():
    reason = rtsp_server_missing()
    if reason:
        pytest.skip(reason)
    return free_port()


def up(values, camera):
    return metric(values, "firedetd_source_up", camera=camera)


def processed(values, camera):
    return metric(values, "firedetd_frames_processed_total", camera=camera) or 0


def threads_alive(values):
    return {name: metric(values, "firedetd_thread_alive", thread=name) for name in STAGE_THREADS}


def test_rtsp_camera_that_goes_away_is_reconnected_within_5_s_while_the_other_camera_keeps_running(tmp_path,
                                                                                                    rtsp_port):
    server = RtspTestServer(port=rtsp_port, fps=15).start()
    http_port = free_port()
    cameras = [{"name": "rtsp", "source": {"uri": server.url, "latency_ms": 100}},  # default reconnect delays
               {"name": "pattern", "source": "test://?pattern=ball&fps=10"}]
    config = write_config(tmp_path, cameras, http_port=http_port)
    try:
        with running_daemon(config) as daemon:
            wait_until(lambda: up(scrape(http_port), "rtsp") == 1 and processed(scrape(http_port), "rtsp") > 5, 60,
                       message="the RTSP camera to deliver frames")

            server.stop()
            down_at = time.time()
            values = wait_until(lambda: _scrape_where(http_port, lambda v: up(v, "rtsp") == 0), 30,
                                message="source_up of the RTSP camera to drop to 0")
            seen_down_s = time.time() - down_at
            other_before = processed(values, "pattern")
            time.sleep(6.0)  # long enough for the reconnect backoff to reach its ceiling
            values = scrape(http_port)
            assert up(values, "rtsp") == 0
            other_during = processed(values, "pattern") - other_before
            assert threads_alive(values) == dict.fromkeys(STAGE_THREADS, 1)
            rtsp_frames_before = processed(values, "rtsp")

            server = RtspTestServer(port=rtsp_port, fps=15).start()
            back_at = time.time()
            wait_until(lambda: up(scrape(http_port), "rtsp") == 1, 30, interval=0.1,
                       message="the RTSP camera to come back")
            reconnect_s = time.time() - back_at
            values = wait_until(lambda: _scrape_where(http_port, lambda v: processed(v, "rtsp") > rtsp_frames_before),
                                30, message="frames from the RTSP camera again")
            assert threads_alive(values) == dict.fromkeys(STAGE_THREADS, 1)
            assert daemon.alive()
            assert stop_daemon(daemon) == 0
    finally:
        server.stop()
    record_figures("rtsp_reconnect", outage_s=round(back_at - down_at, 1), noticed_down_s=round(seen_down_s, 1),
                   reconnect_s=round(reconnect_s, 2), other_camera_frames_during_outage=other_during,
                   reconnect_attempts=metric(values, "firedetd_source_reconnects_total", camera="rtsp"),
                   source_errors=metric(values, "firedetd_source_errors_total", camera="rtsp"))
    assert other_during > 20  # 10 fps for 6 s: the other camera never waited for the broken one
    assert reconnect_s <= RECONNECT_LIMIT_S
    assert metric(values, "firedetd_source_errors_total", camera="rtsp") >= 2  # the drop, then refused attempts


def _scrape_where(port, predicate):
    values = scrape(port)
    return values if predicate(values) else None


# ------------------------------------------------------------------------------------------------ damaged files

FRAMES = 150  # 5 s at 30 fps


@pytest.fixture(scope="module")
def damaged_videos(tmp_path_factory):
    """A good H.264 MP4 and four damaged copies: index at the end, then
    - corrupt: 4 KiB of random bytes in the middle of the frame data (the decoder drops the frames it hits);
    - truncated: the file cut at 60 % with its index up front (faststart): plays, then ends early;
    - broken-index: sample sizes in the index overwritten (the demuxer fails part-way);
    - unplayable: the file cut at 60 % with its index at the end, which is then gone."""
    reason = rtsp_server_missing()  # the same elements: x264enc and GStreamer through PyGObject
    if reason:
        pytest.skip(reason)
    from support.video_files import write_h264_mp4

    directory = tmp_path_factory.mktemp("videos")
    good = write_h264_mp4(str(directory / "good.mp4"), frames=FRAMES, width=320, height=240, fps=30)
    with open(good, "rb") as f:
        data = f.read()
    assert data.index(b"moov") > data.index(b"mdat")  # index at the end
    rng = random.Random(1)
    corrupt = bytearray(data)
    middle = len(data) // 2
    corrupt[middle:middle + 4096] = bytes(rng.randrange(256) for _ in range(4096))
    broken_index = bytearray(data)
    entries = data.index(b"stsz") + 16  # 'stsz', version/flags, sample_size, count: then one size per sample
    for k in range(60, 70):
        broken_index[entries + 4 * k:entries + 4 * k + 4] = (0x7FFFFF00).to_bytes(4, "big")
    files = {"good": good, "corrupt": bytes(corrupt), "broken-index": bytes(broken_index),
             "unplayable": data[:len(data) * 6 // 10],
             "truncated": _faststart_copy(directory, good)[:len(data) * 6 // 10]}
    paths = {}
    for name, content in files.items():
        if isinstance(content, bytes):
            path = str(directory / (name + ".mp4"))
            with open(path, "wb") as f:
                f.write(content)
            content = path
        paths[name] = content
    return paths


def _faststart_copy(directory, path):
    """The same video remuxed with its index first (mp4mux faststart), as bytes."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    target = str(directory / "faststart.mp4")
    pipeline = Gst.parse_launch('filesrc location="%s" ! qtdemux ! h264parse ! mp4mux faststart=true '
                                '! filesink location="%s"' % (path, target))
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert message is not None and message.type == Gst.MessageType.EOS
    with open(target, "rb") as f:
        data = f.read()
    assert data.index(b"moov") < data.index(b"mdat")
    return data


def file_camera(name, path):
    return {"name": name, "source": {"uri": "file://" + path, "backend": "gst"}}


def test_damaged_files_skip_and_count_bad_frames_and_the_other_cameras_run_on(tmp_path, damaged_videos):
    http_port = free_port()
    damaged = ("corrupt", "truncated", "broken-index", "unplayable")
    cameras = [file_camera(name, damaged_videos[name]) for name in damaged + ("good",)]
    cameras.append({"name": "pattern", "source": "test://?pattern=ball&fps=10"})
    config = write_config(tmp_path, cameras, http_port=http_port)
    with running_daemon(config) as daemon:
        # every file has ended (or failed) once each file camera's thread is gone; the live camera runs on
        values = wait_until(lambda: _scrape_where(http_port, lambda v: all(
            metric(v, "firedetd_thread_alive", thread="capture-" + name) == 0 for name in damaged + ("good",))),
            60, message="every file to end")
        pattern_before = processed(values, "pattern")
        time.sleep(1.5)
        values = scrape(http_port)
        assert processed(values, "pattern") > pattern_before
        assert daemon.alive()
        assert stop_daemon(daemon) == 0
        log = daemon.log()
    bad = {name: metric(values, "firedetd_frames_bad_total", camera=name) for name in damaged + ("good",)}
    decided = {name: processed(values, name) for name in damaged + ("good",)}
    record_figures("damaged_files", frames_in_file=FRAMES, decided=decided, bad=bad,
                   unplayable_attempts=metric(values, "firedetd_source_errors_total", camera="unplayable"))
    assert decided["good"] == FRAMES and bad["good"] == 0
    for name in ("corrupt", "truncated", "broken-index"):  # every frame is either decided or counted bad
        assert bad[name] > 0 and decided[name] + bad[name] == FRAMES, name
    # a file that cannot play at all fails once, with the demuxer's reason, and is not retried for ever
    assert decided["unplayable"] == 0
    assert metric(values, "firedetd_source_errors_total", camera="unplayable") == 1
    assert "the file is damaged, truncated or not a video" in log and "not retrying" in log
    assert "Traceback" not in log


def test_a_corrupt_file_alone_is_read_to_its_end_and_the_run_exits_0(tmp_path, damaged_videos):
    config = write_config(tmp_path, [file_camera("corrupt", damaged_videos["corrupt"])])
    with running_daemon(config) as daemon:
        code = daemon.wait(60)
        log = daemon.log()
    assert code == 0, log
    assert "all sources ended and every frame was decided" in log
    lost = FRAMES - int(log.split("firedetd stopped: ")[1].split()[0])
    assert lost > 0 and "end of stream after %d frames (%d more could not be decoded)" % (FRAMES - lost, lost) in log


def test_an_unplayable_file_alone_ends_the_run_with_one_clear_error(tmp_path, damaged_videos):
    config = write_config(tmp_path, [file_camera("unplayable", damaged_videos["unplayable"])])
    with running_daemon(config) as daemon:
        code = daemon.wait(60)
        log = daemon.log()
    fatal = [line for line in log.splitlines() if "fatal: every camera failed for good" in line]
    assert code == 1, log
    assert len(fatal) == 1 and damaged_videos["unplayable"] in fatal[0] and "damaged, truncated" in fatal[0]
    # said once, as what it is: no "reconnecting" for a file that can never play
    assert log.count("not retrying") == 1 and "reconnecting" not in log and "Traceback" not in log
    assert os.path.exists(damaged_videos["unplayable"])
