"""Home Assistant's MQTT discovery schema for the platforms firedetd announces (binary_sensor, sensor, image), as
plain data and one check, so the tests can hold every discovery payload to it without installing Home Assistant
(which needs a newer Python than the runtime's, and hundreds of packages).

Written from Home Assistant's own platform schemas (homeassistant/components/mqtt/: binary_sensor.py, sensor.py,
image.py, the common entity and availability schemas) and its documented options. Home Assistant drops keys its
discovery schema does not know (vol.REMOVE_EXTRA) without a word, so an unknown key here is an error: the entity
would silently lose that setting.
"""

import re

# every MQTT entity: availability, device, naming, attributes (MQTT_ENTITY_COMMON_SCHEMA, MQTT_AVAILABILITY_SCHEMA)
COMMON_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "payload_available",
    "payload_not_available", "device", "enabled_by_default", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "object_id", "default_entity_id", "unique_id",
    "encoding", "qos", "origin",
}
PLATFORM_KEYS = {
    "binary_sensor": {"state_topic", "device_class", "expire_after", "force_update", "off_delay", "payload_on",
                      "payload_off", "value_template"},
    "sensor": {"state_topic", "device_class", "expire_after", "force_update", "last_reset_value_template",
               "options", "suggested_display_precision", "state_class", "unit_of_measurement", "value_template"},
    "image": {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
}
REQUIRED_KEYS = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "image": set()}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
_TOPIC_KEYS = ("state_topic", "availability_topic", "json_attributes_topic", "image_topic", "url_topic")


def discovery_errors(component, config):
    """What Home Assistant's discovery schema for `component` says about `config` (a decoded payload); [] = valid."""
    if component not in PLATFORM_KEYS:
        return ["no schema here for component %r" % component]
    errors = ["unknown key %r (Home Assistant drops it)" % key
              for key in sorted(set(config) - COMMON_KEYS - PLATFORM_KEYS[component])]
    errors += ["missing required key %r" % key for key in sorted(REQUIRED_KEYS[component] - set(config))]
    for key in _TOPIC_KEYS:
        topic = config.get(key)
        if topic is not None and (not isinstance(topic, str) or not topic or re.search(r"[+#\x00]", topic)):
            errors.append("%s: %r is not a valid topic" % (key, topic))
    if "entity_category" in config and config["entity_category"] not in ENTITY_CATEGORIES:
        errors.append("entity_category %r is not one of %s" % (config["entity_category"], sorted(ENTITY_CATEGORIES)))
    if "expire_after" in config and not (isinstance(config["expire_after"], int) and config["expire_after"] >= 0):
        errors.append("expire_after %r is not a positive integer" % config["expire_after"])
    if "availability" in config and "availability_topic" in config:
        errors.append("availability and availability_topic are exclusive")
    errors += _device_errors(config.get("device"))
    errors += _platform_errors(component, config)
    return errors


def _device_errors(device):
    if device is None:
        return []
    errors = ["device: unknown key %r" % key for key in sorted(set(device) - DEVICE_KEYS)]
    if not device.get("identifiers") and not device.get("connections"):
        errors.append("device: needs identifiers or connections")
    return errors


def _platform_errors(component, config):
    if component == "binary_sensor" and config.get("device_class") not in BINARY_SENSOR_DEVICE_CLASSES | {None}:
        return ["device_class %r is not a binary sensor class" % config["device_class"]]
    if component == "sensor" and config.get("state_class") not in STATE_CLASSES | {None}:
        return ["state_class %r is not one of %s" % (config["state_class"], sorted(STATE_CLASSES))]
    if component == "image":
        if ("image_topic" in config) == ("url_topic" in config):
            return ["image: exactly one of image_topic and url_topic"]
        if "content_type" in config and "url_topic" in config:
            return ["image: content_type cannot be used with url_topic"]
        if config.get("image_encoding") not in (None, "b64"):
            return ["image: image_encoding must be 'b64'"]
    return []
