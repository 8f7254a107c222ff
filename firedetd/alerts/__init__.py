"""Alert sinks: the interface, and the registry that builds sinks from the config.

A sink is "deliver one alert event, raise SinkError on failure". Sinks never see the pipeline: the
outbox (`outbox.py`) holds every event durably, and one delivery thread per sink (`delivery.py`)
feeds it events in order, retrying with backoff until the sink accepts each one.
"""

import importlib
import os
from typing import Dict, List, NamedTuple, Tuple


class Sink(object):
    """Interface of an alert sink."""

    name = "abstract"

    def deliver(self, event):
        """Deliver one event (a dict as stored in the outbox, with `snapshot_jpeg` bytes or None)."""
        raise NotImplementedError

    def publish_status(self, cameras: Dict[str, dict]) -> None:
        """Show each camera's live state ({camera: {"fire", "smoke", "fps", "problem"}}), for sinks that keep one
        (MQTT state topics). Called from the daemon's loop, which also pings the watchdog: it must not block.
        Sinks that only carry events keep this default."""

    def problem(self):
        """Why alerts cannot leave through this sink right now (e.g. no connection to its broker), or None.
        Sinks that only learn it by delivering (webhooks) keep the default: their failures show in delivery."""
        return None

    def close(self):
        pass


class SinkKind(NamedTuple):
    """One kind of sink: where the config sets it up, and the function that builds its sinks."""

    config_key: str     # its key under `alerts:`: a list (one sink per entry) or a mapping (null: none)
    factory: str        # "module:function" (config, environ) -> [Sink]; imported only when configured
    # "module:Class": the dataclass of one entry, declared beside the sink; config.py merges it into AlertsConfig
    # as a list under `config_key`, so a new sink touches no other file. Empty: config.py declares the key itself.
    # The module is imported with the config, so it must import its library (apprise, paho) lazily.
    options: str = ""


# Every kind of sink, in the order sinks are built and listed (check-config's summary line).
SINKS = {
    "webhook": SinkKind("webhooks", "firedetd.alerts.webhook:sinks_from_config"),
    "mqtt": SinkKind("mqtt", "firedetd.alerts.mqtt:sinks_from_config"),
    "notify": SinkKind("notify", "firedetd.alerts.notify:sinks_from_config", "firedetd.alerts.notify:NotifyConfig"),
}


def configured_count(alerts_config, kind: SinkKind) -> int:
    """How many sinks of `kind` the `alerts` section sets up."""
    value = getattr(alerts_config, kind.config_key)
    if value is None:
        return 0
    return len(value) if isinstance(value, tuple) else 1


def configured_sinks(config) -> List[Tuple[str, int]]:
    """[(kind name, count)] of the sinks the config sets up, in registry order; kinds not set up left out."""
    counts = [(name, configured_count(config.alerts, kind)) for name, kind in SINKS.items()]
    return [(name, count) for name, count in counts if count]


def options_class(kind: SinkKind):
    """The dataclass a kind declares for one entry of its config block (`kind.options`), or None."""
    if not kind.options:
        return None
    module_name, name = kind.options.split(":")
    return getattr(importlib.import_module(module_name), name)


def create_sinks(config, environ=None):
    """Build every sink the config sets up, in registry order (webhooks, MQTT, notifications); secrets and passwords are
    read from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    sinks = []
    for name, _ in configured_sinks(config):
        module_name, function = SINKS[name].factory.split(":")
        sinks.extend(getattr(importlib.import_module(module_name), function)(config, environ))
    return sinks
