"""The embedded synthetic demo: fictional cities generated from a hidden land-use field.

No real imagery of the paper's cities can ship (licences, no internet), so the
default workspace is procedural, seeded and clearly labelled synthetic
(`manifest.synthetic = True`). The same generator makes the tiny test fixtures.

- `landuse`: the hidden land-use field per city (the ground truth);
- `render`: aerial-style rendering of a whole city, cut into tiles;
- `captions`: descriptions from each tile's content, with realistic noise;
- `indicators`: population, GDP, carbon from the land-use mix;
- `build`: `build_demo`, which writes the workspace.
"""

from urbanclip.data.demo.build import SIZES, build_demo
from urbanclip.data.demo.captions import LANDUSE_KEYWORDS
from urbanclip.data.demo.landuse import CLASSES as LANDUSE_CLASSES

__all__ = ["build_demo", "LANDUSE_KEYWORDS", "LANDUSE_CLASSES", "SIZES"]
