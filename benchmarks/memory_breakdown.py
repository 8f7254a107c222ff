"""Where the daemon's memory goes: process RSS after each piece is added, in one process.

    .venv36/bin/python benchmarks/memory_breakdown.py      # the Nano's Python (docs/jetson.md, section 4)

Steps: the interpreter with firedetd's runtime imports (NumPy, PyYAML, prometheus-client); GStreamer
initialised; one camera's capture pipeline (the bundled 1280x720 H.264 video, model branch 224x224 plus a
640-wide snapshot branch) reading frames; the shipped model loaded in the engine; 100 inferences. Each figure
is VmRSS from /proc/self/status, so it includes shared libraries' pages as they are touched. Prints one table
row per step and the total. No TensorRT here: on a Jetson the engine step is the CUDA context and the plan
instead (docs/jetson.md says what to measure there).
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    steps = [("interpreter + firedetd runtime imports", None)]
    import numpy as np  # noqa: F401

    from firedetd.config import load_config
    from firedetd.inference import create_engine
    from firedetd.inference.preprocess import Preprocessor
    from firedetd.modelspec import load_spec
    from firedetd.sources import Geometry, create_source
    from firedetd.sources.gst import import_gst

    rows = [(steps[0][0], rss_mib())]
    import_gst()
    rows.append(("GStreamer initialised (PyGObject, Gst.init)", rss_mib()))

    config = load_config(None)
    spec = load_spec(config.model.spec)
    camera = config.active_cameras[0]
    geometry = Geometry(spec.input.width, spec.input.height, spec.input.color, spec.input.resize, 640)
    source = create_source(camera.source, geometry)
    source.open()
    frames = []
    deadline = time.time() + 5
    while len(frames) < 60 and time.time() < deadline:
        frame = source.read(1.0)
        if frame is not None:
            frames.append(frame)
    rows.append(("one camera capturing (%d frames read, 224x224 + 640-wide snapshot)" % len(frames), rss_mib()))

    engine = create_engine(spec, config.model, os.path.join("/tmp", "firedetd-memory-breakdown"))
    rows.append(("model loaded (%s, %s)" % (engine.name, engine.provider), rss_mib()))
    preprocess = Preprocessor(spec.input)
    batch = preprocess([f.image for f in frames[:1]])
    for _ in range(100):
        engine.infer(batch)
    rows.append(("after 100 inferences at batch 1", rss_mib()))
    source.close()
    engine.close()

    print("| step | RSS after (MiB) | added (MiB) |")
    print("|---|---|---|")
    previous = 0.0
    for name, value in rows:
        print("| %s | %.1f | %+.1f |" % (name, value, value - previous))
        previous = value
    print("Python %s, %s" % (sys.version.split()[0], os.uname().machine))


if __name__ == "__main__":
    main()
