"""firedetd: real-time fire and smoke detection for NVIDIA Jetson boards and other Linux machines."""

__version__ = "0.1.0"
