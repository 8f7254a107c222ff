"""Nanosecond clocks that also exist on Python 3.6 (time.monotonic_ns and time.time_ns arrived in 3.7)."""

import time

if hasattr(time, "monotonic_ns"):
    monotonic_ns = time.monotonic_ns
    wall_ns = time.time_ns
else:  # Python 3.6, the Jetson Nano's
    def monotonic_ns():
        return int(time.monotonic() * 1e9)

    def wall_ns():
        return int(time.time() * 1e9)
