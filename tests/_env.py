"""Environments for the processes that tests start."""

import os


def xla_flags(devices: int) -> str:
    """The suite's XLA_FLAGS (tests/conftest.py) with ``devices`` CPU devices: the processes a test
    starts compile with the suite's options, so their programs share the compilation cache's
    entries with the tests' own."""
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")]
    return " ".join([f"--xla_force_host_platform_device_count={devices}", *kept])
