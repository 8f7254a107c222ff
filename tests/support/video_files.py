"""Small real video files for source tests, written with GStreamer (H.264 in MP4) or OpenCV (MPEG-4 in MP4)."""

import cv2
import numpy as np


def write_h264_mp4(path, frames=30, width=320, height=240, fps=30, pattern="ball", timeout_s=60, mux="mp4mux"):
    """Encode `frames` videotestsrc frames with x264enc into an MP4 at `path` (needs PyGObject and x264enc);
    mux="mpegtsmux" writes MPEG-TS instead (whose files can be joined byte for byte)."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    # I420 keeps x264 at a profile every decoder reads (videotestsrc would otherwise pick 4:4:4).
    pipeline = Gst.parse_launch(
        "videotestsrc num-buffers=%d pattern=%s ! video/x-raw,format=I420,width=%d,height=%d,framerate=%d/1 "
        "! x264enc speed-preset=ultrafast key-int-max=%d ! h264parse ! %s ! filesink location=\"%s\""
        % (frames, pattern, width, height, fps, fps, mux, path))
    pipeline.set_state(Gst.State.PLAYING)
    try:
        message = pipeline.get_bus().timed_pop_filtered(
            int(timeout_s * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if message is None or message.type == Gst.MessageType.ERROR:
            raise RuntimeError("writing %s failed: %s" % (path, message.parse_error()[0].message if message else
                                                          "timed out"))
    finally:
        pipeline.set_state(Gst.State.NULL)
    return str(path)


def write_mp4v(path, frames=12, width=160, height=120, fps=10.0, bgr=None):
    """Write `frames` frames with cv2.VideoWriter (MPEG-4 part 2); `bgr(i)` draws frame i (default: grey ramp)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("cv2.VideoWriter cannot write %s" % path)
    for i in range(frames):
        writer.write(bgr(i) if bgr else np.full((height, width, 3), (i * 20) % 256, np.uint8))
    writer.release()
    return str(path)


def flapping_fire_video(source, block=15, cycles=30):
    """The bundled house fire cut with black: `block` frames of fire, `block` of black, `cycles` times (MPEG-4 in
    MP4, cached in the temp folder). Under thresholds that raise and clear fast, each cycle is one incident raised
    and cleared, whatever the model's exact scores: its fire frames are fire, and black frames are never decided
    (the signal gate), so they clear it. What alert-heavy fault tests need, without leaning on a model's
    hesitation."""
    import hashlib
    import os
    import tempfile

    key = hashlib.sha256(("%s:%d:%d:%d" % (source, os.path.getsize(source), block, cycles)).encode()).hexdigest()
    path = os.path.join(tempfile.gettempdir(), "firedetd-flapping-%s.mp4" % key[:12])
    if os.path.isfile(path):
        return path
    cap = cv2.VideoCapture(source)
    fire = []
    while len(fire) < block * cycles:
        ok, bgr = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        fire.append(bgr)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.release()
    height, width = fire[0].shape[:2]
    black = np.zeros_like(fire[0])

    def frame(i):
        cycle, offset = divmod(i, 2 * block)
        return fire[cycle * block + offset] if offset < block else black

    part = "%s.%d.part.mp4" % (path, os.getpid())
    write_mp4v(part, frames=2 * block * cycles, width=width, height=height, fps=fps, bgr=frame)
    os.replace(part, path)
    return path
