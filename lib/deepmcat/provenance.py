"""What a measured figure was measured on: written into every result JSON (the demo's, the benchmarks')."""

from __future__ import annotations

import os
import platform

from deepmcat import __version__


def machine() -> dict:
    import torch  # here: benchmark scripts import this module, and their reading workers import them again

    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "torch": torch.__version__, "deepmcat": __version__,
    }
