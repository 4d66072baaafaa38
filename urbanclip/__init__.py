"""UrbanCLIP: profile urban regions from satellite imagery enhanced with text.

Layers (arrows point one way): workspace (files, CRS, grid) -> model ->
train / probe / baselines -> services (what the app calls) -> app pages.
"""

__version__ = "0.1.0"
