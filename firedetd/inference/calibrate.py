"""INT8 calibration: an entropy calibrator fed from calibration images, or from the shipped calibration cache.

INT8 needs per-tensor scales. TensorRT measures them by running FP32 inference on a few hundred
representative images and writes them to a calibration cache; later builds read the cache back
and never touch images again. So the cache is written once, on a machine that has TensorRT, a GPU
with INT8 support (Xavier, Orin, a desktop GPU) and images from the deployment cameras:

    firedetd build-engine --calibrate /path/to/images          # writes engines/firedetd-int8.calib

and then shipped beside the model spec. The Jetson Nano (Maxwell) has no fast INT8 at all: it runs
FP16 and never reads this file. A cache belongs to one model: recalibrate when the model changes.
"""

import logging
import os
from collections import namedtuple

import numpy as np

from ..errors import EngineError
from .preprocess import Preprocessor

log = logging.getLogger(__name__)

CALIBRATION_CACHE_NAME = "firedetd-int8.calib"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# cache_path: where the calibration cache is read (and written when batches is given)
# batches: iterable of (batch_size, 3, H, W) float32 arrays, or None to use the cache file only
# cuda: a _CudaMemory for the device buffer the batches go through (needed only with batches)
Calibration = namedtuple("Calibration", "cache_path batches batch_size cuda")


def default_calibration_path(spec):
    """The calibration cache shipped beside the model spec (engines/firedetd-int8.calib)."""
    return os.path.join(os.path.dirname(spec.spec_path), CALIBRATION_CACHE_NAME)


def write_atomically(path, data):
    """Write bytes to path through a temporary file and a rename, so readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise EngineError("%s: cannot write (%s)" % (path, e.strerror or e))


def list_calibration_images(image_dir, limit):
    """Sorted image paths under image_dir (recursively), at most limit of them."""
    if not os.path.isdir(image_dir):
        raise EngineError("--calibrate %s: not a directory" % image_dir)
    found = []
    for root, _, files in os.walk(image_dir):
        found.extend(os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)[:limit]


def calibration_batches(image_paths, input_spec, batch_size):
    """Yield (batch_size, 3, H, W) float32 batches scaled and normalised like live frames; a partial tail is dropped."""
    try:
        import cv2

        from ..sources import Geometry
        from ..sources.opencv import scale_to_model
    except ImportError as e:
        raise EngineError("INT8 calibration reads images with OpenCV, which does not import (%s)" % e)
    geometry = Geometry(input_spec.width, input_spec.height, input_spec.color, input_spec.resize, 0)
    if len(image_paths) < batch_size:
        raise EngineError("INT8 calibration found %d images; it needs at least %d (a few hundred from the "
                          "deployment cameras is better)" % (len(image_paths), batch_size))
    preprocess = Preprocessor(input_spec)
    pending = []
    for path in image_paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            log.warning("calibration image %s cannot be decoded; skipped", path)
            continue
        pending.append(scale_to_model(image, geometry))   # the OpenCV capture backend's own scaling
        if len(pending) == batch_size:
            yield preprocess(pending)
            pending = []


def make_entropy_calibrator(trt, calibration):
    """An IInt8EntropyCalibrator2 reading the cache file, or calibrating from batches and writing the cache."""
    base = trt.IInt8EntropyCalibrator2

    class FiredetdEntropyCalibrator(base):
        def __init__(self):
            base.__init__(self)
            self.batches_used = 0
            self.error = None
            self._batches = iter(calibration.batches) if calibration.batches is not None else None
            self._host = self._device = None

        def get_batch_size(self):
            return calibration.batch_size

        def get_batch(self, names, *unused):
            if self._batches is None:
                return None
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                return [self._upload(batch)]
            except Exception as e:  # an exception must not cross into TensorRT's C++ caller
                self.error = e
                log.exception("INT8 calibration batch %d failed", self.batches_used)
                return None

        def _upload(self, batch):
            cuda = calibration.cuda
            with cuda.activated():   # TensorRT calls this on its build thread; pinned allocation needs a context
                if self._host is None:
                    self._host = cuda.host_empty(batch.shape, np.float32)
                    self._device = cuda.device_alloc(self._host.nbytes)
                self._host[...] = batch
                cuda.htod_async(self._device, self._host)
                cuda.synchronize()
            self.batches_used += 1
            return self._device

        def read_calibration_cache(self):
            if self._batches is not None:
                return None   # calibrating: measure afresh rather than trusting an older cache
            with open(calibration.cache_path, "rb") as f:
                return f.read()

        def write_calibration_cache(self, cache):
            if self._batches is None:
                return   # the shipped cache stays byte-identical to what was shipped
            write_atomically(calibration.cache_path, bytes(memoryview(cache)))
            log.info("wrote INT8 calibration cache %s from %d batches", calibration.cache_path, self.batches_used)

    return FiredetdEntropyCalibrator()
