"""firedetd/inference/__init__.py: the one engine list, its `auto` order, and everything that takes choices from it."""

import logging
import sys
import types

import pytest

from firedetd import inference
from firedetd.cli import build_parser
from firedetd.config import ModelConfig
from firedetd.inference import ENGINE_CHOICES, ENGINES, EngineBackend, choose_backend, engine_backend
from firedetd.schema import build_dataclass


def engine_choices_of(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    action = next(a for a in sub.choices[command]._actions if "--engine" in a.option_strings)
    return action.choices


def test_config_and_every_engine_flag_take_their_choices_from_the_one_engine_list():
    # the same object, not an equal copy: a name added to ENGINES is accepted by all of them at once
    model_engine = next(f for f in ModelConfig.__dataclass_fields__.values() if f.name == "engine")
    assert model_engine.metadata["choices"] is ENGINE_CHOICES
    for command in ("run", "check-config", "bench"):
        assert engine_choices_of(command) is ENGINE_CHOICES, command
    assert ("auto",) + tuple(e.name for e in ENGINES) == ENGINE_CHOICES


def test_an_engine_name_not_in_the_list_is_refused_naming_the_key_and_the_choices():
    from firedetd.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        build_dataclass(ModelConfig, {"engine": "openvino"})
    assert "engine" in str(err.value) and "onnxruntime" in str(err.value) and "tensorrt" in str(err.value)


def test_every_registered_engine_names_a_class_of_that_name():
    # the backend modules import without their libraries (those load lazily); the classes are looked up, not built
    for backend in ENGINES:
        assert inference.load_backend(backend.name).name == backend.name


@pytest.fixture
def probes(monkeypatch):
    """FAKE backends whose probes answer as told: a module of probe functions, and ENGINES replaced by them."""
    module = types.ModuleType("fake_engine_probes")
    monkeypatch.setitem(sys.modules, "fake_engine_probes", module)

    def install(*answers):
        backends = []
        for i, answer in enumerate(answers):
            def probe(answer=answer):
                if isinstance(answer, Exception):
                    raise answer
                return answer
            setattr(module, "probe%d" % i, probe)
            backends.append(EngineBackend("engine%d" % i, "Engine %d" % i, "unused:Unused",
                                          "fake_engine_probes:probe%d" % i))
        backends.append(EngineBackend("fallback", "Fallback", "unused:Unused", None))
        monkeypatch.setattr(inference, "ENGINES", tuple(backends))

    return install


def test_auto_takes_the_first_engine_in_list_order_that_can_run_here(probes):
    probes(None, None)
    assert choose_backend(ModelConfig(engine="auto")) == "engine0"


def test_auto_passes_over_uninstalled_engines_silently_and_warns_about_installed_ones_that_cannot_run(probes,
                                                                                                      caplog):
    probes(ImportError("not installed"), "no GPU answers", None)
    caplog.set_level(logging.WARNING)
    assert choose_backend(ModelConfig(engine="auto")) == "engine2"
    assert "Engine 1 is installed but cannot run (no GPU answers); using Engine 2" in caplog.text
    assert "Engine 0" not in caplog.text


def test_auto_falls_back_to_the_last_engine_which_has_no_probe(probes, caplog):
    probes(ImportError("not installed"), "broken")
    assert choose_backend(ModelConfig(engine="auto")) == "fallback"
    assert "Engine 1 is installed but cannot run (broken); using Fallback" in caplog.text


def test_an_engine_the_config_names_is_used_without_probing_any(probes):
    probes(RuntimeError("a probe must not run"))
    assert choose_backend(ModelConfig(engine="fallback")) == "fallback"


def test_engine_backend_finds_a_registered_name_and_refuses_others():
    assert engine_backend("onnxruntime").label == "ONNX Runtime"
    with pytest.raises(KeyError):
        engine_backend("openvino")
