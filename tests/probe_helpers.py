"""A tiny synthetic workspace for the probe / baseline / search tests, built in ~1 s.

Tile colour follows a hidden 'density' that also drives the indicators, so an
image encoder + probe has real signal to find; descriptions mention it too.
Used instead of the demo workspace where a test needs to control the values
(NaN columns, very few cells)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from urbanclip.data.grid import square_grid
from urbanclip.data.indicators import STANDARD
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder, join_sentences


def build_signal_workspace(root: Path, n: int = 8, cities: tuple[str, ...] = ("Alpha", "Beta"), px: int = 32,
                           seed: int = 0, nan_indicator: str | None = None) -> Workspace:
    rng = np.random.default_rng(seed)
    frames = []
    with WorkspaceBuilder(root, overwrite=True) as b:
        for ci, city in enumerate(cities):
            g = square_grid(city, 116.3 + ci, 39.9, n, n, 1000.0)
            dens = rng.random(len(g))
            g["image"] = [b.write_image(city, f"{i}.png", (rng.random((px, px, 3)) * 60 + np.array([190 * d, 120, 190 * (1 - d)]))
                                        .clip(0, 255).astype(np.uint8)) for i, d in enumerate(dens)]
            for name, scale in (("population", 8.0), ("gdp", 5.0), ("carbon", 6.0)):
                g[name] = np.expm1(dens * scale + rng.normal(0, 0.3, len(g))).clip(0)
            g["text_raw"] = [join_sentences(["Dense tall buildings." if d > 0.5 else "A green park with trees.", "Roads."])
                             for d in dens]
            frames.append(g)
        cells = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
        if nan_indicator:
            cells[nan_indicator] = np.nan
        return b.finish(cells, Manifest(name="signal", indicators=dict(STANDARD), source="tests/probe_helpers.py"))
