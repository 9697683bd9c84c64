"""Streaming inference runtime: tile planner, backends, pipeline, ``Enhancer``, ``resin-run``.

Never imports torch at module import; each backend is imported only when chosen.
"""

from resin.runtime.enhancer import Enhancer, EnhanceStream, default_model_path
from resin.runtime.normalize import Levels
from resin.runtime.psf_frame import psf_frame, psf_mip
from resin.runtime.runner import RunProgress, RunReport, TileSettings, default_output
from resin.runtime.series import run_series

__all__ = ["EnhanceStream", "Enhancer", "Levels", "RunProgress", "RunReport", "TileSettings",
           "psf_frame", "psf_mip",
           "default_model_path", "default_output", "run_series"]
