"""RESIN: self-supervised axial resolution enhancement for volumetric microscopy.

The base install is the runtime (``resin.runtime``, ``resin.kernels``, ``resin.io``);
training and export need the ``train`` / ``export`` extras.
"""

from resin._version import __version__

__all__ = ["__version__"]
