"""The model spec (`engines/firedetd.json`): everything a runtime needs to know about the model.

Every runtime reads labels, input geometry, colour order, normalisation and output kind from here;
nothing about the model is hard-coded anywhere else.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .errors import ModelError

REQUIRED_LABELS = ("fire", "smoke", "none")


@dataclass(frozen=True)
class InputSpec:
    name: str
    height: int
    width: int
    layout: str                      # NCHW
    color: str                       # RGB | BGR
    scale: float                     # multiplier applied to 0..255 pixels
    mean: Tuple[float, float, float]  # per channel, after scale
    std: Tuple[float, float, float]
    resize: str                      # stretch | center_crop


@dataclass(frozen=True)
class OutputSpec:
    name: str
    kind: str                        # logits | probabilities


@dataclass(frozen=True)
class MapSpec:
    """The optional second output: per-class activation maps (N, classes, height, width) in logit units, whose
    spatial mean is the logits (firedetd.training.export.WithClassMap)."""
    name: str
    height: int
    width: int


@dataclass(frozen=True)
class ModelFile:
    path: str                        # absolute
    sha256: str
    precision: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    labels: Tuple[str, ...]
    input: InputSpec
    output: OutputSpec
    files: Dict[str, ModelFile]      # by role: "fp32", "int8", ...
    spec_path: str
    recommended: Dict[str, object]
    cam: Optional[MapSpec] = None    # absent in specs written before the map existed

    @property
    def onnx_path(self):
        return self.files["fp32"].path

    def label_index(self, label):
        return self.labels.index(label)


def _need(raw, key, where, kind):
    if key not in raw:
        raise ModelError("%s: missing key '%s'" % (where, key))
    value = raw[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelError("%s: '%s' must be %s, not %r" % (where, key, kind.__name__, value))
    return value


def _triple(raw, key, where):
    value = _need(raw, key, where, list)
    if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
        raise ModelError("%s: '%s' must be three numbers, not %r" % (where, key, value))
    return tuple(float(v) for v in value)


def _parse_input(raw, where):
    where = where + ": input"
    spec = InputSpec(
        name=_need(raw, "name", where, str), height=_need(raw, "height", where, int),
        width=_need(raw, "width", where, int), layout=_need(raw, "layout", where, str),
        color=_need(raw, "color", where, str), scale=_need(raw, "scale", where, float),
        mean=_triple(raw, "mean", where), std=_triple(raw, "std", where), resize=_need(raw, "resize", where, str))
    if spec.layout != "NCHW":
        raise ModelError("%s: layout %r is not supported (NCHW)" % (where, spec.layout))
    if spec.color not in ("RGB", "BGR"):
        raise ModelError("%s: color %r must be RGB or BGR" % (where, spec.color))
    if spec.resize not in ("stretch", "center_crop"):
        raise ModelError("%s: resize %r must be stretch or center_crop" % (where, spec.resize))
    if min(spec.std) <= 0 or spec.height < 8 or spec.width < 8:
        raise ModelError("%s: std must be > 0 and height/width >= 8" % where)
    return spec


def _parse_files(raw, base, where):
    files = {}
    for role, entry in _need(raw, "files", where, dict).items():
        here = "%s: files.%s" % (where, role)
        path = _need(entry, "path", here, str)
        files[role] = ModelFile(path=os.path.normpath(os.path.join(base, path)),
                                sha256=_need(entry, "sha256", here, str),
                                precision=entry.get("precision", role))
    if "fp32" not in files:
        raise ModelError("%s: files has no 'fp32' entry (the ONNX model every backend starts from)" % where)
    return files


def _parse_cam(raw, where):
    if "cam" not in raw:
        return None
    where = where + ": cam"
    cam = _need(raw, "cam", where, dict)
    spec = MapSpec(name=_need(cam, "name", where, str), height=_need(cam, "height", where, int),
                   width=_need(cam, "width", where, int))
    if spec.height < 1 or spec.width < 1:
        raise ModelError("%s: height and width must be >= 1" % where)
    return spec


def load_spec(path):
    # type: (str) -> ModelSpec
    """Read and validate a model spec; raise ModelError naming the file and the key."""
    try:
        with open(path, "r") as f:
            raw = json.load(f)
    except OSError as e:
        raise ModelError("%s: cannot read model spec (%s)" % (path, e.strerror or e))
    except ValueError as e:
        raise ModelError("%s: not valid JSON (%s)" % (path, e))
    if not isinstance(raw, dict):
        raise ModelError("%s: a model spec is a JSON object" % path)
    labels = tuple(_need(raw, "labels", path, list))
    missing = [label for label in REQUIRED_LABELS if label not in labels]
    if missing:
        raise ModelError("%s: labels %r lack %s" % (path, list(labels), ", ".join(missing)))
    output = _need(raw, "output", path, dict)
    where = path + ": output"
    out = OutputSpec(name=_need(output, "name", where, str), kind=_need(output, "kind", where, str))
    if out.kind not in ("logits", "probabilities"):
        raise ModelError("%s: output.kind %r must be logits or probabilities" % (path, out.kind))
    return ModelSpec(
        name=str(raw.get("name", "firedetd")), version=str(raw.get("version", "0")), labels=labels,
        input=_parse_input(_need(raw, "input", path, dict), path), output=out,
        files=_parse_files(raw, os.path.dirname(os.path.abspath(path)), path),
        spec_path=os.path.abspath(path), recommended=dict(raw.get("recommended", {})), cam=_parse_cam(raw, path))


def sha256_file(path, chunk=1 << 20):
    # type: (str, int) -> str
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(model_file):
    # type: (ModelFile) -> Optional[str]
    """Check the file exists and matches its sha256; raise ModelError otherwise. Returns the digest."""
    if not os.path.isfile(model_file.path):
        raise ModelError("%s: model file not found" % model_file.path)
    digest = sha256_file(model_file.path)
    if digest != model_file.sha256:
        raise ModelError("%s: sha256 %s... does not match the spec's %s... (truncated, corrupt or replaced file)"
                         % (model_file.path, digest[:12], model_file.sha256[:12]))
    return digest
