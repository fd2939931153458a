"""Code shared by the pipeline's stages: VOC-layout data (reader and synthetic generator), metrics, device
selection, atomic file writing, sharding and training helpers. Stages import this package, never each other."""

__version__ = "0.1.0"
