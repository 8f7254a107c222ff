"""firedetd/sources/__init__.py: the registry from URI scheme to the backends that read it.

The config accepts the schemes the registry lists and no others; each backend reads exactly the schemes listed for
it, each with an input of its own kind (the GStreamer elements are passed in, as in test_gst.py: no camera here).
"""

import pytest

from firedetd import sources
from firedetd.config import SourceConfig
from firedetd.errors import ConfigError, SourceError
from firedetd.sources import BACKENDS, SCHEMES, Geometry, backends_for_scheme, choose_backend, source_schemes
from firedetd.sources.gst import INPUT_SCHEMES, describe_pipeline, elements_in
from firedetd.sources.opencv import OPENERS, OpenCVSource

GEOMETRY = Geometry(width=224, height=224, color="RGB", resize="stretch", snapshot_width=0)
EVERY_ELEMENT = frozenset(["nvarguscamerasrc", "nvvidconv", "nvv4l2decoder", "videotestsrc", "v4l2src", "rtspsrc",
                           "souphttpsrc", "filesrc", "decodebin", "tee", "queue", "videoscale", "videoconvert",
                           "appsink", "capsfilter"])
# A URI of each scheme, and what must read it: a scheme registered without a row here fails these tests (KeyError)
# until its input is written down.
URIS = {"csi": "csi://0", "v4l2": "v4l2:///dev/video0", "rtsp": "rtsp://192.0.2.1/cam", "rtsps": "rtsps://192.0.2.1/cam",
        "http": "http://192.0.2.1/video.mjpg", "https": "https://192.0.2.1/video.mjpg", "file": "file:///videos/a.mp4",
        "test": "test://?pattern=ball"}
GST_ELEMENT = {"csi": "nvarguscamerasrc", "v4l2": "v4l2src", "rtsp": "rtspsrc", "rtsps": "rtspsrc",
               "http": "souphttpsrc", "https": "souphttpsrc", "file": "filesrc", "test": "videotestsrc"}
OPENCV_OPENER = {"v4l2": "_open_camera", "rtsp": "_open_stream", "rtsps": "_open_stream", "http": "_open_stream",
                 "https": "_open_stream", "file": "_open_file", "test": "_open_synthetic"}


def schemes_listed_for(backend):
    return {scheme for scheme, readers in SCHEMES.items() if backend in readers}


@pytest.fixture
def rtmp_registered_for(monkeypatch):
    """The issue's mistake: `rtmp` added to the registry for a backend that has no input for it."""
    def register(*backends):
        monkeypatch.setitem(SCHEMES, "rtmp", backends)
    return register


# -- the config takes its schemes from the registry --------------------------------------------------------------

def test_a_scheme_no_backend_reads_is_refused_naming_the_key_and_the_supported_schemes(make_config):
    with pytest.raises(ConfigError) as err:
        make_config({"cameras": [{"name": "a", "source": "test://"}, {"name": "b", "source": "rtmp://cam.example/live"}]})
    message = str(err.value)
    assert message.startswith("cameras[1].source.uri: unsupported scheme 'rtmp'")
    assert message.endswith("; supported: csi, v4l2, rtsp, rtsps, http, https, file, test")


def test_the_supported_schemes_are_every_scheme_some_backend_reads():
    assert set(source_schemes()) == set(SCHEMES)
    assert all(SCHEMES[scheme] and set(SCHEMES[scheme]) <= set(BACKENDS) for scheme in SCHEMES)


def test_a_scheme_added_to_the_registry_is_accepted_by_the_config(rtmp_registered_for):
    with pytest.raises(ConfigError):
        SourceConfig(uri="rtmp://cam.example/live").check("cameras[0].source")
    rtmp_registered_for("gst")
    SourceConfig(uri="rtmp://cam.example/live").check("cameras[0].source")


def test_a_backend_named_for_a_scheme_it_does_not_read_is_refused_naming_the_backend_key():
    with pytest.raises(ConfigError) as err:
        SourceConfig(uri="csi://0", backend="opencv").check("cameras[2].source")
    assert str(err.value).startswith("cameras[2].source.backend: the opencv backend does not read csi:// URIs "
                                     "(gst does)")


def test_the_backend_choices_are_the_registered_backends():
    field = SourceConfig.__dataclass_fields__["backend"]
    assert field.metadata["choices"] == ("auto",) + tuple(BACKENDS)


# -- each backend reads exactly what the registry lists for it, each scheme with its own input --------------------

def test_gst_has_an_input_for_exactly_the_schemes_listed_for_it():
    assert set(INPUT_SCHEMES) == schemes_listed_for("gst")


def test_opencv_has_an_opener_for_exactly_the_schemes_listed_for_it():
    assert set(OPENERS) == schemes_listed_for("opencv")


@pytest.mark.parametrize("scheme", sorted(schemes_listed_for("gst")))
def test_every_scheme_listed_for_gst_starts_its_pipeline_with_its_own_source_element(scheme):
    plan = describe_pipeline(SourceConfig(uri=URIS[scheme]), GEOMETRY, EVERY_ELEMENT)
    assert elements_in(plan.description)[0] == GST_ELEMENT[scheme]


@pytest.mark.parametrize("scheme", sorted(schemes_listed_for("opencv")))
def test_every_scheme_listed_for_opencv_has_its_own_kind_of_opener(scheme):
    assert OPENERS[scheme].__name__ == OPENCV_OPENER[scheme]


def test_gst_refuses_a_registered_scheme_it_has_no_input_for_instead_of_reading_it_as_a_file(rtmp_registered_for):
    rtmp_registered_for("gst")
    with pytest.raises(SourceError) as err:
        describe_pipeline(SourceConfig(uri="rtmp://cam.example/live"), GEOMETRY, EVERY_ELEMENT)
    assert err.value.permanent
    assert "no input for rtmp://" in str(err.value) and "filesrc" not in str(err.value)


def test_opencv_refuses_a_registered_scheme_it_has_no_opener_for_instead_of_opening_it_as_a_stream(
        rtmp_registered_for):
    rtmp_registered_for("opencv")
    source = OpenCVSource(SourceConfig(uri="rtmp://cam.example/live"), GEOMETRY)
    with pytest.raises(SourceError) as err:
        source.open()
    assert err.value.permanent and "no opener for rtmp://" in str(err.value)


# -- `auto` picks by scheme --------------------------------------------------------------------------------------

@pytest.mark.parametrize("gst_here, uri, expected", [
    (True, "file:///videos/a.mp4", "gst"),
    (False, "file:///videos/a.mp4", "opencv"),
    # no backend that reads csi:// runs here: the first listed is used, and its open() says what to install
    (False, "csi://0", "gst"),
])
def test_auto_takes_the_first_backend_listed_for_the_scheme_that_can_run_here(monkeypatch, gst_here, uri, expected):
    monkeypatch.setattr(sources, "gst_available", lambda: gst_here)   # FAKE: whether PyGObject imports here
    assert choose_backend(SourceConfig(uri=uri)) == expected


def test_a_backend_the_config_names_is_used_as_named(monkeypatch):
    monkeypatch.setattr(sources, "gst_available", lambda: True)
    assert choose_backend(SourceConfig(uri="file:///videos/a.mp4", backend="opencv")) == "opencv"


def test_a_scheme_no_backend_reads_has_no_backends():
    assert backends_for_scheme("rtmp") == ()
