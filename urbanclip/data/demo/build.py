"""`build_demo`: the embedded synthetic workspace, from seed to files.

For each city: draw the hidden land-use field, render the city as one raster,
cut it into tiles, measure what each tile shows, write descriptions and
indicators from those measurements, and lay the cells on a ~1 km grid at
clearly fictional coordinates (open Atlantic). Everything derives from one
seed through `numpy.random.SeedSequence`, and PNG encoding is deterministic, so
the same seed gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from urbanclip.data.demo.captions import describe
from urbanclip.data.demo.indicators import indicators_for
from urbanclip.data.demo.landuse import CLASSES, PROFILES, CityProfile, make_field
from urbanclip.data.demo.render import cell_stats, cut_tiles, render_city
from urbanclip.data.grid import square_grid
from urbanclip.data.indicators import STANDARD
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder, join_sentences
from urbanclip.errors import UserError

CELL_SIZE_M = 1000.0
GENERATOR = "urbanclip.demo"


@dataclass(frozen=True)
class DemoSize:
    """A named demo size for the CLI."""

    rows: int
    cols: int
    tile_px: int


SIZES = {"default": DemoSize(20, 20, 128), "small": DemoSize(10, 10, 64), "tiny": DemoSize(4, 4, 32)}


def _rng(seed: int, city: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, city, purpose]))


MAX_SIDE = 400  # cells per side of one city: 160,000 cells, enough for the browser benchmark's 100k city


def _check(seed: int, n_cities: int, rows: int, cols: int, tile_px: int) -> None:
    if not 1 <= n_cities <= len(PROFILES):
        raise UserError(f"n_cities must be between 1 and {len(PROFILES)}, got {n_cities}")
    if rows < 2 or cols < 2 or rows > MAX_SIDE or cols > MAX_SIDE:
        raise UserError(f"rows and cols must be between 2 and {MAX_SIDE}, got {rows}x{cols}")
    if tile_px < 16 or tile_px > 512 or tile_px % 8:
        raise UserError(f"tile_px must be a multiple of 8 between 16 and 512, got {tile_px}")
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")


def _city_plan(n_cities: int, rows: int, cols: int,
               city_sizes: dict[str, tuple[int, int]] | None) -> list[tuple[int, CityProfile, int, int]]:
    """(profile index, profile, rows, cols) of each city to build."""
    if not city_sizes:
        return [(ci, p, rows, cols) for ci, p in enumerate(PROFILES[:n_cities])]
    by_name = {p.name: (ci, p) for ci, p in enumerate(PROFILES)}
    unknown = sorted(set(city_sizes) - set(by_name))
    if unknown:
        raise UserError(f"unknown demo cities {unknown}; choose among {sorted(by_name)}")
    return [(*by_name[name], int(r), int(c)) for name, (r, c) in city_sizes.items()]


def build_demo(root: Path | str, *, seed: int = 0, n_cities: int = 3, rows: int = 20, cols: int = 20,
               tile_px: int = 128, overwrite: bool = False,
               city_sizes: dict[str, tuple[int, int]] | None = None) -> Workspace:
    """Build the procedural synthetic demo workspace at `root` and return it loaded.

    `city_sizes` ({profile name: (rows, cols)}) picks the cities and gives each its own
    grid (the browser benchmark's one large city beside two small ones) instead of
    `n_cities` cities of `rows` x `cols`.

    Columns beyond the data model: `demo_landuse` (dominant hidden class per
    cell) and `demo_frac_<class>` (pixel share of each class), for evaluation
    only; models must not train on them.
    """
    _check(seed, n_cities if not city_sizes else len(city_sizes), rows, cols, tile_px)
    plan = _city_plan(n_cities, rows, cols, city_sizes)
    for _, _, r, c in plan:
        _check(seed, len(plan), r, c, tile_px)
    frames = []
    with WorkspaceBuilder(root, overwrite=overwrite) as b:
        for ci, profile, n_rows, n_cols in plan:
            field = make_field(profile, n_rows, n_cols, _rng(seed, ci, 0))
            raster = render_city(field, tile_px, _rng(seed, ci, 1))
            tiles = cut_tiles(raster)
            stats = cell_stats(raster)
            del raster
            grid = square_grid(profile.name, profile.west, profile.north, n_rows, n_cols, CELL_SIZE_M)
            keys = list(zip(grid["row"].tolist(), grid["col"].tolist()))
            cap_rng = _rng(seed, ci, 2)
            grid["image"] = [b.write_image(profile.name, f"r{r:03d}_c{c:03d}.png", tiles[(r, c)]) for r, c in keys]
            grid["text_raw"] = [join_sentences(describe(stats[k], profile, cap_rng)) for k in keys]
            vals = indicators_for([stats[k] for k in keys], keys, profile, _rng(seed, ci, 3))
            for name, v in vals.items():
                grid[name] = v
            grid["demo_landuse"] = [stats[k].dominant for k in keys]
            for cls in CLASSES:
                grid[f"demo_frac_{cls}"] = np.round([stats[k].fractions[cls] for k in keys], 4)
            frames.append(grid)
        cells = pd.concat(frames, ignore_index=True)
        cells["_lat"] = [g.representative_point().y for g in cells.geometry]
        cells["_lon"] = [g.representative_point().x for g in cells.geometry]
        places = demo_places(cells)
        cells = cells.drop(columns=["_lat", "_lon"])
        demo_extra = {"seed": seed, "n_cities": len(plan), "rows": rows, "cols": cols, "tile_px": tile_px}
        if city_sizes:
            demo_extra["city_sizes"] = {p.name: [r, c] for _, p, r, c in plan}
        manifest = Manifest(
            name="Urban Insights demo (synthetic)",
            indicators=dict(STANDARD),
            synthetic=True,
            source=f"procedural synthetic demo (seed {seed}) — not real imagery; generated by {GENERATOR}",
            split_seed=seed,
            provenance=_provenance(seed),
            extra={"places": places,
                   "demo": {**demo_extra,
                            "cell_size_m": CELL_SIZE_M, "metres_per_pixel": round(CELL_SIZE_M / tile_px, 3),
                            "classes": list(CLASSES),
                            "note": "Fictional cities at fictional coordinates in the open Atlantic. "
                                    "Imagery, descriptions and indicators are all generated; "
                                    "do not use them as evidence about any real place."}},
        )
        return b.finish(cells, manifest, cell_size_m={p.name: CELL_SIZE_M for _, p, _, _ in plan})


PLACE_SUFFIX = {"water": "Waterfront", "commercial": "Downtown", "dense_residential": "Old Town",
                "suburban_residential": "Garden Suburb", "industrial": "Industrial Estate", "park": "Central Park",
                "farmland": "Farmlands"}


def demo_places(cells: pd.DataFrame) -> dict[str, list[float]]:
    """Fictional place names for search: per city and class, the cell with the largest share of it."""
    places: dict[str, list[float]] = {}
    for city, group in cells.groupby("city", sort=True):
        for cls in CLASSES:
            frac = group[f"demo_frac_{cls}"].to_numpy()
            if frac.max() < 0.5:
                continue
            best = group.iloc[int(np.argmax(frac))]
            places[f"{city} {PLACE_SUFFIX.get(cls, cls.replace('_', ' ').title())}"] = \
                [round(float(best["_lat"]), 6), round(float(best["_lon"]), 6)]
    return places


def _provenance(seed: int) -> dict[str, str]:
    g = f"{GENERATOR} (seed {seed}, synthetic)"
    prov = {
        "image": f"{g}: procedural aerial-style render of the hidden land-use field (urbanclip.data.demo.render)",
        "text_raw": f"{g}: template descriptions of each tile's measured content with ~20% deliberately noisy "
                    "sentences (urbanclip.data.demo.captions)",
        "population": f"{g}: land-use mix x per-class density x log-normal noise (urbanclip.data.demo.indicators)",
        "gdp": f"{g}: land-use mix x per-class level x log-normal noise (urbanclip.data.demo.indicators)",
        "carbon": f"{g}: land-use mix x per-class level x log-normal noise (urbanclip.data.demo.indicators)",
        "demo_landuse": f"{g}: dominant hidden land-use class of the cell; evaluation only, not a model input",
        "geometry": f"{g}: 1 km square grid at fictional coordinates (urbanclip.data.grid.square_grid)",
        "cell_id": f"{g}: '<city>/r<row>_c<col>'",
    }
    for cls in CLASSES:
        prov[f"demo_frac_{cls}"] = f"{g}: pixel share of hidden class {cls!r}; evaluation only"
    return prov


def file_digest(root: Path | str) -> str:
    """SHA-256 over every file of a workspace (names + bytes), for determinism checks."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and "cache" not in q.relative_to(root).parts):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
