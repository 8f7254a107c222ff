"""Source URI parsing shared by the gst and opencv backends."""

import pytest

from firedetd.config import SourceConfig
from firedetd.errors import SourceError
from firedetd.sources.uri import csi_sensor_id, file_path, parse_test_uri, v4l2_device, v4l2_index


def test_csi_sensor_id_and_bad_csi_uri():
    assert csi_sensor_id("csi://1") == 1
    with pytest.raises(SourceError) as err:
        csi_sensor_id("csi://front")
    assert err.value.permanent and "csi://front" in str(err.value)


def test_v4l2_device_from_path_or_index():
    assert v4l2_device("v4l2:///dev/video2") == "/dev/video2"
    assert v4l2_device("v4l2://3") == "/dev/video3"
    assert v4l2_index("v4l2:///dev/video4") == 4
    with pytest.raises(SourceError):
        v4l2_index("v4l2:///dev/v4l/by-id/usb-cam")


def test_file_path_absolute_relative_and_escaped():
    assert file_path("file:///data/a%20b.mp4") == "/data/a b.mp4"
    assert file_path("file://clips/a.mp4") == "clips/a.mp4"
    with pytest.raises(SourceError):
        file_path("file://")


def test_test_uri_defaults_come_from_the_source_config():
    spec = parse_test_uri("test://?pattern=red", SourceConfig(uri="test://", width=320, height=200, fps=12))
    assert (spec.pattern, spec.width, spec.height, spec.fps, spec.live, spec.frames) == ("red", 320, 200, 12, True, 0)


def test_test_uri_options_override_and_parse():
    spec = parse_test_uri("test://?pattern=snow&fps=7.5&width=64&height=48&live=false&frames=9",
                          SourceConfig(uri="test://"))
    assert (spec.pattern, spec.width, spec.height, spec.fps, spec.live, spec.frames) == ("snow", 64, 48, 7.5, False, 9)


@pytest.mark.parametrize("uri,word", [("test://?pattern=plaid", "plaid"), ("test://?colour=red", "colour"),
                                      ("test://?width=wide", "wide"), ("test://?live=maybe", "maybe"),
                                      ("test://?width=4", "width")])
def test_bad_test_uri_is_a_permanent_error_naming_the_problem(uri, word):
    with pytest.raises(SourceError) as err:
        parse_test_uri(uri, SourceConfig(uri="test://"))
    assert err.value.permanent and word in str(err.value) and uri in str(err.value)
