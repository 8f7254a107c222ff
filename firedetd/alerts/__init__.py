"""Alert sinks: the interface, and the registry that builds sinks from the config.

A sink is "deliver one alert event, raise SinkError on failure". Sinks never see the pipeline: the
outbox (`outbox.py`) holds every event durably, and one delivery thread per sink (`delivery.py`)
feeds it events in order, retrying with backoff until the sink accepts each one.
"""

import os


class Sink(object):
    """Interface of an alert sink."""

    name = "abstract"

    def deliver(self, event):
        """Deliver one event (a dict as stored in the outbox, with `snapshot_jpeg` bytes or None)."""
        raise NotImplementedError

    def problem(self):
        """Why alerts cannot leave through this sink right now (e.g. no connection to its broker), or None.
        Sinks that only learn it by delivering (webhooks) keep the default: their failures show in delivery."""
        return None

    def close(self):
        pass


def create_sinks(config, environ=None):
    """Build every sink the config names, in a stable order: webhooks, then MQTT."""
    from ..config import webhook_name, webhook_secrets
    from .webhook import WebhookSink

    sinks = []
    secrets = webhook_secrets(config, environ)
    for i, hook in enumerate(config.alerts.webhooks):
        sinks.append(WebhookSink(webhook_name(hook, i), hook, secrets[i], config.device_id))
    if config.alerts.mqtt is not None:
        from .mqtt import MqttSink

        password = config.alerts.mqtt.resolve_password("alerts.mqtt", os.environ if environ is None else environ)
        sinks.append(MqttSink("mqtt", config.alerts.mqtt, config.device_id, password))
    return sinks
