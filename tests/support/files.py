"""Small file helpers for tests."""

import json


def read_json(path):
    with open(str(path)) as f:
        return json.load(f)


def write_json(path, obj):
    with open(str(path), "w") as f:
        json.dump(obj, f)
