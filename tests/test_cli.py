"""firedetd/cli.py: what --loop and --realtime do to the cameras, with and without --source, and a real run that
plays a short file past its end."""

import subprocess
import sys

import pytest
from support.daemon import REPO, free_port

from firedetd import paths
from firedetd.cli import apply_overrides, build_parser
from firedetd.errors import ConfigError


def run_args(*argv):
    return build_parser().parse_args(["run"] + list(argv))


def test_loop_without_source_plays_the_bundled_sample_looped_at_its_own_rate():
    raw = apply_overrides({}, run_args("--loop", "--realtime"))
    assert raw["cameras"] == [{"name": "sample", "source": {"uri": "file://" + paths.sample_video_path(),
                                                            "loop": True, "realtime": True}}]


def test_loop_without_source_loops_only_the_configs_file_cameras():
    raw = {"cameras": [{"name": "door", "source": "rtsp://192.0.2.1/live"},
                       {"name": "clip", "source": "file:///videos/kitchen.mp4"},
                       {"name": "old", "source": {"uri": "FILE:///videos/old.mp4", "backend": "opencv"}}]}
    cameras = apply_overrides(raw, run_args("--loop"))["cameras"]
    assert cameras[0] == raw["cameras"][0]
    assert cameras[1]["source"] == {"uri": "file:///videos/kitchen.mp4", "loop": True}
    assert cameras[2]["source"] == {"uri": "FILE:///videos/old.mp4", "backend": "opencv", "loop": True}
    assert "loop" not in str(raw["cameras"][2])   # the parsed YAML itself is left as it was


def test_loop_over_a_config_without_a_file_camera_is_an_error_naming_the_flag():
    with pytest.raises(ConfigError, match=r"--loop: no file:// camera"):
        apply_overrides({"cameras": [{"name": "door", "source": "rtsp://192.0.2.1/live"}]}, run_args("--loop"))


def test_loop_with_source_applies_to_that_source_only():
    raw = apply_overrides({"cameras": [{"name": "clip", "source": "file:///a.mp4"}]},
                          run_args("--source", "file:///b.mp4", "--loop"))
    assert raw["cameras"] == [{"name": "clip", "source": {"uri": "file:///b.mp4", "loop": True}}]


def test_run_with_loop_and_no_source_decides_more_frames_than_the_file_holds(tmp_path):
    import cv2
    import numpy as np

    video = str(tmp_path / "short.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(40):
        writer.write(np.full((120, 160, 3), 40 + i * 4, np.uint8))
    writer.release()
    config = tmp_path / "firedetd.yaml"
    config.write_text("cameras:\n  - name: clip\n    source: \"file://%s\"\nstate_dir: %s\n" % (video, tmp_path))
    result = subprocess.run([sys.executable, "-m", "firedetd", "run", "-c", str(config), "--loop",
                             "--max-frames", "100", "--metrics-addr", "127.0.0.1:%d" % free_port()], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, out
    # 100 frames (flat grey ones, unusable to the signal gate, count as well) out of a 40-frame file
    assert "--max-frames 100 reached" in out and "end of stream" not in out, out
