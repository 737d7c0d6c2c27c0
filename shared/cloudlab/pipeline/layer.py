"""Import the pipeline's layer modules (``moderation.*``) from cloudlab code (notebook 06).

On AWS a layer's ``python/`` folder is on ``sys.path`` as ``/opt/python``; the local Lambda
service puts the same folder there. cloudlab code (the trainer, the offline evaluation, the
Rekognition stand-in's tests) reaches the very same files by putting :data:`LAYER_PYTHON` on
``sys.path``, so there is one copy of each module, imported under one name.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

LAYER_PYTHON = Path(__file__).resolve().parent / "layers" / "common" / "python"


def layer_module(name: str) -> ModuleType:
    """``moderation.<name>`` from the layer, e.g. ``layer_module("decisions")``."""
    folder = str(LAYER_PYTHON)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(f"moderation.{name}")
