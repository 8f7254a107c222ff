"""firedetd/config.py and schema.py: typed validation with key paths, defaults, secrets, shorthands."""

import pytest

from firedetd.config import host_port, load_config, read_yaml
from firedetd.errors import ConfigError


def error_of(make_config, raw, environ=None):
    with pytest.raises(ConfigError) as info:
        make_config(raw, environ)
    return str(info.value)


def test_defaults_watch_the_bundled_sample_with_the_shipped_model(make_config):
    config = make_config({})
    assert [c.name for c in config.cameras] == ["sample"]
    assert config.cameras[0].source.uri.endswith("samples/furg_house6.mp4")
    assert config.model.spec.endswith("engines/firedetd.json")
    assert config.http.addr == "127.0.0.1:9108"


def test_source_shorthand_string_becomes_a_source_mapping(make_config):
    config = make_config({"cameras": [{"name": "yard", "source": "rtsp://127.0.0.1:8554/cam"}]})
    assert config.cameras[0].source.uri == "rtsp://127.0.0.1:8554/cam"
    assert config.cameras[0].source.transport == "tcp"


def test_unsupported_scheme_names_key_path_and_suggests(make_config):
    message = error_of(make_config, {"cameras": [{"name": "a", "source": "test://"},
                                                 {"name": "b", "source": {"uri": "htp://x"}}]})
    assert message.startswith("cameras[1].source.uri: unsupported scheme 'htp'")
    assert "did you mean 'http'" in message


def test_unknown_key_gets_did_you_mean(make_config):
    message = error_of(make_config, {"detection": {"smoothing_alfa": 0.3}})
    assert message.startswith("detection.smoothing_alfa: unknown key")
    assert "did you mean 'smoothing_alpha'" in message


def test_wrong_type_names_expected_type(make_config):
    message = error_of(make_config, {"model": {"threads": "two"}})
    assert message == "model.threads: expected integer, got 'two' (string)"


def test_out_of_range_threshold(make_config):
    assert "out of range [0.0, 1.0]" in error_of(make_config, {"detection": {"fire": {"on": 1.5}}})


def test_hysteresis_off_above_on_is_rejected(make_config):
    message = error_of(make_config, {"detection": {"smoke": {"on": 0.5, "off": 0.7}}})
    assert message.startswith("detection.smoke.off:")


def test_duplicate_camera_names_point_at_both(make_config):
    message = error_of(make_config, {"cameras": [{"name": "a", "source": "test://"}, {"name": "a", "source": "test://"}]})
    assert message == "cameras[1].name: 'a' is already used by cameras[0]"


def test_choice_error_lists_allowed_values(make_config):
    message = error_of(make_config, {"model": {"engine": "tensorflow"}})
    assert message.startswith("model.engine: 'tensorflow' is not one of auto, tensorrt, onnxruntime")


def test_loop_on_a_live_source_is_rejected(make_config):
    message = error_of(make_config, {"cameras": [{"name": "a", "source": {"uri": "rtsp://h/s", "loop": True}}]})
    assert message.startswith("cameras[0].source.loop:")


def test_missing_model_spec_is_named(make_config, tmp_path):
    message = error_of(make_config, {"model": {"spec": str(tmp_path / "nope.json")}})
    assert message.startswith("model.spec: model spec") and "nope.json" in message


def test_webhook_secret_comes_from_environment_not_yaml(make_config):
    raw = {"alerts": {"webhooks": [{"url": "http://127.0.0.1:9/", "secret_env": "HOOK_SECRET"}]}}
    assert "HOOK_SECRET is not set" in error_of(make_config, raw, environ={"X": "1"})
    config = make_config(raw, environ={"HOOK_SECRET": "s3cret"})
    assert config.alerts.webhooks[0].resolve_secret("x", {"HOOK_SECRET": "s3cret"}) == "s3cret"
    assert "s3cret" not in repr(config)


def test_state_dir_defaults_to_systemd_state_directory(tmp_path):
    from firedetd.config import build_config

    config = build_config({}, environ={"STATE_DIRECTORY": str(tmp_path / "st")})
    assert config.state_dir == str(tmp_path / "st")


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cameras:\n  - name: a\n   bad: indent\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(str(path))
    assert str(info.value).startswith("%s:3:4: YAML syntax error" % path)


def test_load_config_reads_a_file(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("cameras:\n  - name: bench\n    source: test://?pattern=ball\nstate_dir: %s\n" % (tmp_path / "s"))
    assert load_config(str(path), environ={}).cameras[0].name == "bench"


@pytest.mark.parametrize("addr,expected", [("127.0.0.1:9108", ("127.0.0.1", 9108)), ("[::1]:80", ("::1", 80))])
def test_host_port_parses(addr, expected):
    assert host_port(addr, "http.addr") == expected


def test_host_port_rejects_missing_port():
    with pytest.raises(ConfigError, match="http.addr: '127.0.0.1' must be HOST:PORT"):
        host_port("127.0.0.1", "http.addr")


def test_on_and_off_keys_stay_keys_not_yaml_1_1_booleans(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("detection:\n  fire:\n    on: 0.7\n    off: 0.2\ncameras:\n  - name: a\n    source: test://\n"
                    "    enabled: yes\n")
    raw = read_yaml(str(path))
    assert raw["detection"]["fire"] == {"on": 0.7, "off": 0.2}
    assert raw["cameras"][0]["enabled"] == "yes"  # only true/false are booleans, so this is a type error...
    with pytest.raises(ConfigError, match=r"cameras\[0\].enabled: expected boolean, got 'yes'"):
        load_config(str(path), environ={})


def test_an_unnamed_webhook_keeps_its_sink_name_when_another_is_added_before_it():
    from firedetd.config import build_config, webhook_name

    one = build_config({"alerts": {"webhooks": [{"url": "http://127.0.0.1:9001/a"}]}})
    two = build_config({"alerts": {"webhooks": [{"url": "http://127.0.0.1:9002/b"},
                                                {"url": "http://127.0.0.1:9001/a"}]}})
    first = webhook_name(one.alerts.webhooks[0])
    assert first.startswith("webhook-") and webhook_name(two.alerts.webhooks[1]) == first
    assert webhook_name(two.alerts.webhooks[0]) != first


def test_the_same_unnamed_url_twice_is_refused_without_showing_its_password():
    from firedetd.config import build_config

    hook = {"url": "https://user:s3cret@hooks.example/x"}
    with pytest.raises(ConfigError, match=r"alerts.webhooks\[1\]: URL https://\*\*\*@hooks.example/x is used twice") \
            as caught:
        build_config({"alerts": {"webhooks": [hook, dict(hook)]}})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("text,key", [("max_mb: 5e2", 500.0), ("max_mb: 1.5E+1", 15.0)])
def test_numbers_in_exponent_notation_are_numbers(text, key):
    from firedetd.config import build_config, parse_yaml

    config = build_config({"alerts": {"outbox": parse_yaml(text)}})
    assert config.alerts.outbox.max_mb == key


def test_an_empty_or_unreadable_signing_secret_is_refused(tmp_path):
    from firedetd.config import build_config

    empty = tmp_path / "empty"
    empty.write_text("\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00secret")
    cases = [({"secret_env": "HOOK_SECRET"}, {"HOOK_SECRET": ""}, "environment variable HOOK_SECRET is empty"),
             ({"secret_file": str(empty)}, {}, "is empty"),
             ({"secret_file": str(binary)}, {}, "is not UTF-8 text")]
    for keys, environ, message in cases:
        with pytest.raises(ConfigError, match="alerts.webhooks\\[0\\].secret_.*" + message):
            build_config({"alerts": {"webhooks": [dict(keys, url="http://127.0.0.1:9/")]}}, environ=environ)


@pytest.mark.parametrize("yaml_text,flags", [
    ("http:\nlog_level: info\n", ["--metrics-addr", "127.0.0.1:9999"]),          # an empty section
    ("alerts:\n", ["--webhook", "http://127.0.0.1:9/x"]),
    ("cameras:\n  name: a\n  source: test://\n", ["--source", "test://?pattern=ball"]),   # a mapping, not a list
])
def test_command_line_overrides_on_unusual_files_are_no_internal_error(tmp_path, capsys, yaml_text, flags):
    from firedetd import cli

    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    code = cli.main(["check-config", "-c", str(path), "--state-dir", str(tmp_path / "s")] + flags)
    err = capsys.readouterr().err
    assert code == 0 and "internal error" not in err, err


def test_a_nul_byte_is_one_line_naming_the_file(tmp_path, capsys):
    from firedetd import cli

    path = tmp_path / "nul.yaml"
    path.write_bytes(b"log_level: info\x00\n")
    assert cli.main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nul.yaml: YAML error: unacceptable character #x0000" in err[0]


def test_a_config_error_names_the_line_of_its_key_or_its_nearest_parent(tmp_path, capsys):
    from firedetd import cli

    path = tmp_path / "lines.yaml"
    path.write_text("# a comment\nlog_level: info\ncameras:\n  - name: east\n    source: test://?pattern=ball\n"
                    "  - name: west\n    source:\n      uri: test://?pattern=ball\n      transport: tpc\n")
    assert cli.main(["check-config", "-c", str(path)]) == 2
    assert "lines.yaml:9: cameras[1].source.transport: 'tpc' is not one of" in capsys.readouterr().err
    path.write_text("detection:\n  smoke:\n    on: 0.2\n")    # off (a default) exceeds on: the line of `smoke`
    assert cli.main(["check-config", "-c", str(path)]) == 2
    assert "lines.yaml:2: detection.smoke.off" in capsys.readouterr().err
