"""Command line: `firedetd run | check-config | config-doc | demo-receiver | build-engine | bench | eval | train ...`.

Every FiredetdError becomes one line on stderr and its exit code (2 when the process cannot go on);
`--debug` shows the traceback too.
"""

import argparse
import copy
import logging
import os
import sys

from . import __version__
from .errors import EXIT_FAILURE, EXIT_USAGE, ConfigError, FiredetdError
from .login import DEFAULT_ITERATIONS, MIN_ITERATIONS

log = logging.getLogger("firedetd")


# ---------------------------------------------------------------------------- config + overrides

def add_config_arguments(parser):
    parser.add_argument("-c", "--config", help="YAML config file (default: built-in defaults: the shipped model on "
                                               "the bundled sample video)")
    parser.add_argument("--source", metavar="URI", help="watch this one source instead of the config's cameras "
                                                        "(csi://0, v4l2:///dev/video0, rtsp://..., file://..., test://)")
    parser.add_argument("--loop", action="store_true", help="start file:// sources again at their end: the --source, "
                                                            "else the config's file:// cameras or the bundled sample")
    parser.add_argument("--realtime", action="store_true", help="play file:// sources at their own frame rate, like a "
                                                                "camera (the same ones as --loop)")
    parser.add_argument("--webhook", metavar="URL", action="append", default=[], help="add a webhook sink (repeatable)")
    parser.add_argument("--metrics-addr", metavar="HOST:PORT", help="where /metrics and /healthz listen "
                                                                    "(default 127.0.0.1:9108)")
    from .inference import ENGINE_CHOICES

    parser.add_argument("--engine", choices=ENGINE_CHOICES, help="inference backend")
    parser.add_argument("--state-dir", help="outbox and engine cache directory")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def section(raw, key):
    """raw[key] as a mapping to write an override into: an empty key (`http:` with nothing under it) becomes {};
    a value of the wrong type is left for validation to name."""
    value = raw.get(key)
    if value is None:
        value = raw[key] = {}
    return value if isinstance(value, dict) else {}


def apply_overrides(raw, args):
    """The command-line overrides, applied to the parsed YAML before validation."""
    raw = copy.deepcopy(raw) if raw else {}
    if not isinstance(raw, dict):
        return raw  # validation reports the wrong top-level type
    if args.source:
        cameras = raw.get("cameras") or []
        first = cameras[0] if isinstance(cameras, list) and cameras else None
        name = first.get("name", "cam0") if isinstance(first, dict) else "cam0"
        raw["cameras"] = [{"name": name, "source": dict({"uri": args.source}, **file_playback(args))}]
    elif file_playback(args):
        raw["cameras"] = cameras_played_as_asked(raw.get("cameras"), file_playback(args))
    if args.webhook:
        alerts = section(raw, "alerts")
        hooks = list(alerts.get("webhooks") or []) if isinstance(alerts.get("webhooks") or [], list) else []
        hooks.extend({"url": url, "name": "cli%d" % i} for i, url in enumerate(args.webhook))
        alerts["webhooks"] = hooks
    if args.metrics_addr:
        section(raw, "http")["addr"] = args.metrics_addr
    if args.engine:
        section(raw, "model")["engine"] = args.engine
    if args.state_dir:
        raw["state_dir"] = args.state_dir
    if args.log_level:
        raw["log_level"] = args.log_level
    return raw


def file_playback(args):
    """The file:// options --loop and --realtime ask for: {"loop": True, "realtime": True}, either or none."""
    return {key: True for key in ("loop", "realtime") if getattr(args, key, False)}


def cameras_played_as_asked(cameras, playback):
    """The raw `cameras` with `playback` set on each file:// camera; no cameras means the bundled sample, which is
    one. ConfigError when none is a file: a camera cannot loop, and ignoring the flag would hide the mistake."""
    from .config import default_camera

    if not cameras:
        sample = default_camera()
        return [{"name": sample.name, "source": dict({"uri": sample.source.uri}, **playback)}]
    if not isinstance(cameras, list):
        return cameras   # validation names the wrong type
    played, found = [], False
    for camera in cameras:
        source = camera.get("source") if isinstance(camera, dict) else None
        source = {"uri": source} if isinstance(source, str) else source
        if isinstance(source, dict) and str(source.get("uri", "")).lower().startswith("file://"):
            camera = dict(camera, source=dict(source, **playback))
            found = True
        played.append(camera)
    if not found:
        raise ConfigError("--%s: no file:// camera in the config to play that way (--source file://... names one)"
                          % " --".join(sorted(playback)))
    return played


def config_from_args(args, environ=None):
    from .config import build_config, read_yaml

    raw = read_yaml(args.config) if args.config else {}
    try:
        return build_config(apply_overrides(raw, args), environ)
    except ConfigError as e:
        if args.config:
            raise ConfigError("%s: %s" % (config_where(args.config, str(e)), e))
        raise


def config_where(path, message):
    """`path:LINE` for an error about a key given in the file, else `path`."""
    from .config import key_lines, line_of_error

    try:
        with open(path, "r", encoding="utf-8") as f:
            line = line_of_error(message, key_lines(f.read()))
    except (OSError, UnicodeDecodeError):
        line = None
    return "%s:%d" % (path, line) if line else path


def setup_logging(level, debug=False):
    """Log to stderr: timestamped lines, or `<N>`-prefixed ones when stderr is systemd's journal (firedetd.logs)."""
    from .logs import setup_logging as setup_stderr_logging

    setup_stderr_logging(level, debug, os.environ, sys.stderr)


# ---------------------------------------------------------------------------- subcommands

def cmd_run(args):
    from .daemon import Daemon, Limits, limit_malloc_arenas
    from .systemd import Notifier

    limit_malloc_arenas()  # first, before any thread: a process-wide allocator setting

    config = config_from_args(args)
    preflight(config, sinks=False)   # the pipeline builds the sinks itself, and says the same
    setup_logging(config.log_level, args.debug)
    daemon = Daemon(config, args.config, Limits(args.max_frames, args.duration),
                    notifier=Notifier.from_environ(os.environ), reload_config=lambda: config_from_args(args))
    daemon.install_signal_handlers()
    return daemon.run()


def cmd_check_config(args):
    from .alerts import configured_sinks
    from .modelspec import load_spec, verify_model_file

    config = config_from_args(args)
    spec = load_spec(config.model.spec)
    if config.model.variant not in spec.files:
        raise ConfigError("model.variant: %r is not in %s (has %s)" % (config.model.variant, spec.spec_path,
                                                                      ", ".join(sorted(spec.files))))
    verify_model_file(spec.files[config.model.variant])
    preflight(config)
    loaded = _load_model_on_cpu(spec, config.model)
    sinks = ", ".join("%d %s" % (count, name) for name, count in configured_sinks(config)) or "none"
    print("%s: ok: %d camera(s) (%s), model %s %s%s, sinks: %s" % (
        args.config or "(defaults)", len(config.active_cameras), ", ".join(c.name for c in config.active_cameras),
        spec.name, spec.version, " (inputs, outputs and labels match the spec)" if loaded else "", sinks))
    return 0


def preflight(config, sinks=True):
    """What `run` checks at start that needs no camera: the video files, the state directory, the sinks' secrets."""
    from .alerts import create_sinks
    from .statedir import check_state_dir

    for i, camera in enumerate(config.cameras):
        if camera.enabled:
            camera.source.check_file_exists("cameras[%d].source" % i)
    check_state_dir(config.state_dir)
    if sinks:
        for sink in create_sinks(config):   # reads every secret and password variable, as run does
            sink.close()


def _load_model_on_cpu(spec, model_config):
    """Load the ONNX model with ONNX Runtime on the CPU, which checks it against the spec as `run` does (a matching
    hash says nothing about a spec edited by hand); False when ONNX Runtime is not installed (a TensorRT-only box)."""
    from dataclasses import replace

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    from .inference.onnxruntime import OnnxRuntimeEngine

    variant = model_config.variant if model_config.variant in spec.files else "fp32"
    OnnxRuntimeEngine(spec, replace(model_config, cuda=False, variant=variant)).close()
    return True


def cmd_config_doc(args):
    from .configdoc import render_config_doc

    text = render_config_doc()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_hash_password(args):
    """Print the http.password_hash string for a password typed twice (or read from stdin with --stdin)."""
    import getpass

    from .login import hash_password

    if args.iterations < MIN_ITERATIONS:
        raise FiredetdError("hash-password: --iterations must be at least %d" % MIN_ITERATIONS)
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password for the status page: ")
        if getpass.getpass("Again: ") != password:
            raise FiredetdError("hash-password: the two passwords differ")
    if len(password) < 8:
        raise FiredetdError("hash-password: use at least 8 characters (the page may face a network)")
    sys.stdout.write(hash_password(password, iterations=args.iterations) + "\n")
    return 0


def cmd_demo_receiver(args):
    from . import receiver

    return receiver.run(args)


def cmd_build_engine(args):
    from .inference import build

    return build.run(args)


def _training(name):
    """Import a training entry point; they need torch (the `train` extra)."""
    try:
        from .training import cli as training_cli
    except ImportError as e:
        raise FiredetdError("%s needs the training extra (pip install -e '.[train]'): %s" % (name, e))
    return training_cli


def build_parser():
    parser = argparse.ArgumentParser(prog="firedetd", description="Fire and smoke detection daemon for Jetson boards")
    parser.add_argument("--version", action="version", version="firedetd " + __version__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the daemon")
    add_config_arguments(run)
    run.add_argument("--max-frames", type=int, default=0, metavar="N",
                     help="stop after N frames (decided, or found unusable by the signal gate)")
    run.add_argument("--duration", type=float, default=0.0, metavar="SECONDS", help="stop after this long")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a config and the model it names, then exit")
    add_config_arguments(check)
    check.set_defaults(func=cmd_check_config)

    doc = sub.add_parser("config-doc", help="print the config reference (docs/config.md)")
    doc.add_argument("-o", "--output")
    doc.set_defaults(func=cmd_config_doc)

    hashpw = sub.add_parser("hash-password", help="print an http.password_hash for the status page's login")
    hashpw.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    hashpw.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help="PBKDF2-SHA256 iterations (default %(default)s)")
    hashpw.set_defaults(func=cmd_hash_password)

    recv = sub.add_parser("demo-receiver", help="a local webhook receiver that prints alerts")
    _add_optional(recv, "firedetd.receiver")
    recv.set_defaults(func=cmd_demo_receiver)

    build = sub.add_parser("build-engine", help="build a TensorRT plan from the ONNX model")
    _add_optional(build, "firedetd.inference.build")
    build.set_defaults(func=cmd_build_engine)

    for name, module in (("bench", "firedetd.bench"), ("eval", "firedetd.evaluation"),
                         ("scene-relay", "firedetd.scenes")):
        p = sub.add_parser(name, help=_module_help(module))
        _add_optional(p, module)
        p.set_defaults(func=_module_runner(module))

    try:  # the training package is Python 3.8+ (torch); on the Nano's 3.6 it does not even parse
        from .training.cli import add_subcommands
    except (ImportError, SyntaxError):
        add_subcommands = None
    if add_subcommands is not None:
        add_subcommands(sub)
    _accept_debug_after_the_command(sub)
    return parser


def _accept_debug_after_the_command(sub):
    """`firedetd run --debug` as well as `firedetd --debug run`: users add it at the end of the line they ran."""
    seen = set()
    for command in sub.choices.values():
        if id(command) in seen or any("--debug" in a.option_strings for a in command._actions):
            continue
        seen.add(id(command))
        # SUPPRESS: absent after the command, the top-level --debug (default False) stands
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks and debug logs")


def _module_help(module):
    return {"firedetd.bench": "measure engine-only and end-to-end speed, latency and memory",
            "firedetd.evaluation": "time-to-alert and false alerts on a labelled video",
            "firedetd.scenes": "site side: one alert per scene from many cameras' MQTT events (docs/fleet.md)"}[module]


def _module_runner(module):
    def run(args):
        import importlib

        return importlib.import_module(module).run(args)

    return run


def _add_optional(parser, module):
    import importlib

    try:
        importlib.import_module(module).add_arguments(parser)
    except ImportError as e:
        parser.set_defaults(import_error=str(e))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args) or 0
    except FiredetdError as e:
        if args.debug:
            log.exception("failed")
        message = str(e)
        config_path = getattr(args, "config", None)
        if config_path and e.exit_code == EXIT_USAGE and config_path not in message:
            # a key path means little without the file it is in, and the line of the key
            message = "%s: %s" % (config_where(config_path, message), message)
        sys.stderr.write("firedetd: error: %s\n" % message)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # an unexpected bug: one line unless --debug
        if args.debug:
            raise
        sys.stderr.write("firedetd: internal error: %s: %s (run with --debug for the traceback)\n"
                         % (type(e).__name__, e))
        return EXIT_FAILURE
