"""Render a synthetic city as one aerial-looking raster, then cut it into tiles.

The whole city is drawn at once (numpy, per pixel, no Python loop over
buildings) so roads, rivers and fields continue across tile borders exactly
like a real orthophoto cut into a grid. Every layer follows the hidden land-use
field (`landuse.CityField`), which is what makes land use learnable from pixels:

- a gently warped street grid: local streets around urban blocks, arterials
  every 4 blocks, major roads every 8 (the only ones crossing rivers, on bridges);
- buildings as roof rectangles on a per-block sub-grid whose size, coverage,
  colour and height depend on the class (high-rise, slabs, houses, sheds),
  with shadows cast south-east (sun in the north-west);
- trees as shaded crown blobs (dense in parks, scattered in gardens);
- fields with crop stripes and hedgerows; water with shoreline banks;
- mild sensor noise and blur.

Scale: a 128 px tile covers a ~1 km cell, i.e. ~8 m per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter, zoom

from urbanclip.data.demo.landuse import (BLOCKS_PER_CELL, CLASSES, CODE, COMMERCIAL, DENSE_RESIDENTIAL, FARMLAND,
                                    INDUSTRIAL, PAD_BLOCKS, PARK, SUBURBAN, WATER, CityField)

f32 = np.float32
KMAX = 4  # largest building sub-grid per block (houses: 4x4 lots)

# per class: building sub-grid k, probability a lot is built, shadow length range (px at 128 px tiles)
_K = {COMMERCIAL: 2, DENSE_RESIDENTIAL: 2, SUBURBAN: 4, INDUSTRIAL: 1, PARK: 1, FARMLAND: 4, WATER: 1}
_P_BUILD = {COMMERCIAL: 0.92, DENSE_RESIDENTIAL: 0.85, SUBURBAN: 0.72, INDUSTRIAL: 0.9, PARK: 0.04,
            FARMLAND: 0.015, WATER: 0.0}
_HEIGHT = {COMMERCIAL: (4.0, 9.0), DENSE_RESIDENTIAL: (2.0, 3.5), SUBURBAN: (1.0, 1.4), INDUSTRIAL: (1.3, 2.2),
           PARK: (1.0, 1.3), FARMLAND: (1.0, 1.3), WATER: (1.0, 1.0)}
_P_TREE = {COMMERCIAL: 0.04, DENSE_RESIDENTIAL: 0.3, SUBURBAN: 0.45, INDUSTRIAL: 0.05, PARK: 0.95,
           FARMLAND: 0.02, WATER: 0.0}
_STREETS = (COMMERCIAL, DENSE_RESIDENTIAL, SUBURBAN, INDUSTRIAL)  # classes whose blocks are ringed by streets

_GROUND = {  # (temperate, arid) base colours of the open ground of each class
    COMMERCIAL: ((150, 147, 140), (165, 155, 140)),
    DENSE_RESIDENTIAL: ((128, 130, 116), (160, 150, 128)),
    SUBURBAN: ((98, 122, 72), (160, 148, 108)),
    INDUSTRIAL: ((138, 136, 130), (160, 152, 138)),
    PARK: ((84, 122, 58), (118, 128, 78)),
    FARMLAND: ((120, 135, 80), (178, 158, 118)),
    WATER: ((36, 62, 78), (44, 88, 100)),
}
_ROOFS = {  # roof palettes per class
    COMMERCIAL: [(188, 188, 186), (160, 164, 170), (120, 124, 130), (205, 200, 190), (98, 104, 112)],
    DENSE_RESIDENTIAL: [(178, 170, 160), (196, 188, 176), (150, 110, 96), (168, 172, 176), (140, 136, 130)],
    SUBURBAN: [(150, 72, 56), (120, 64, 52), (90, 88, 92), (170, 100, 70), (110, 108, 104), (140, 120, 100)],
    INDUSTRIAL: [(205, 208, 210), (176, 182, 190), (96, 130, 168), (150, 158, 166), (220, 220, 214)],
    PARK: [(150, 120, 90)], FARMLAND: [(160, 150, 130), (130, 80, 60)], WATER: [(0, 0, 0)],
}
_CROPS = ([(112, 140, 70), (150, 150, 80), (176, 160, 100), (128, 110, 80), (90, 128, 64), (184, 178, 116)],
          [(182, 160, 118), (160, 140, 100), (120, 132, 76), (196, 176, 134), (150, 126, 96), (104, 124, 70)])
_ASPHALT_MAJOR = (np.asarray((62, 62, 64), f32), np.asarray((92, 88, 84), f32))
_ASPHALT_LOCAL = (np.asarray((96, 96, 96), f32), np.asarray((122, 116, 108), f32))


@dataclass
class CityRaster:
    """One rendered city and the per-pixel layers the captions and stats are computed from."""

    image: np.ndarray  # uint8 [H, W, 3]
    classes: np.ndarray  # uint8 [H, W] land-use code per pixel (water included)
    building: np.ndarray  # int64 [H, W] building id, -1 where there is none
    tree: np.ndarray  # bool [H, W]
    road: np.ndarray  # bool [H, W] any paved road
    major_road: np.ndarray  # bool [H, W]
    bridge: np.ndarray  # bool [H, W]
    tile_px: int


def _lut(table: dict, arid: bool | None = None, dtype=np.float32) -> np.ndarray:
    vals = [table[c] if arid is None else table[c][int(arid)] for c in CLASSES]
    return np.asarray(vals, dtype=dtype)


def render_city(field: CityField, tile_px: int, rng: np.random.Generator) -> CityRaster:
    """Draw the whole city (rows*tile_px x cols*tile_px pixels) from its land-use field.

    Layers are computed only on the pixels they can touch (flat index subsets),
    which keeps a 3 x 20 x 20 x 128 px demo within seconds on one core.
    """
    ai = int(field.profile.arid)
    s = tile_px / 128.0  # pixel scale relative to the reference 128 px tile
    bp = tile_px / BLOCKS_PER_CELL  # pixels per block
    H, W = field.n_rows * tile_px, field.n_cols * tile_px
    nbi, nbj = field.classes.shape
    two_pi = f32(2 * np.pi)

    # block coordinates; the street grid is warped by 1-D offsets so roads bend gently
    yb1 = (np.arange(H, dtype=f32) + f32(0.5)) / f32(bp)
    xb1 = (np.arange(W, dtype=f32) + f32(0.5)) / f32(bp)
    ph = rng.uniform(0, 2 * np.pi, 4).astype(f32)
    row_shift = f32(0.45) * np.sin(two_pi / 29 * xb1 + ph[0]) + f32(0.2) * np.sin(two_pi / 11 * xb1 + ph[1])
    col_shift = f32(0.45) * np.sin(two_pi / 31 * yb1 + ph[2]) + f32(0.2) * np.sin(two_pi / 13 * yb1 + ph[3])
    yw = yb1[:, None] + row_shift[None, :]
    xw = xb1[None, :] + col_shift[:, None]
    bi_f, bj_f = np.floor(yw), np.floor(xw)
    u, v = yw - bi_f, xw - bj_f  # position inside the block, 0..1
    bi = np.clip(bi_f.astype(np.int32) + PAD_BLOCKS, 0, nbi - 1)
    bj = np.clip(bj_f.astype(np.int32) + PAD_BLOCKS, 0, nbj - 1)
    del bi_f, bj_f
    cls = field.classes[bi, bj].astype(np.uint8)
    wd = np.broadcast_to(field.water_distance(yb1[:, None], xb1[None, :]), (H, W)).astype(f32)  # <0: water
    water = wd < 0

    # ---- ground: class colour with a per-block tint -------------------------
    tint = (1 + 0.05 * rng.standard_normal((nbi, nbj, 1))) * (1 + 0.03 * rng.standard_normal((nbi, nbj, 3)))
    block_col = (_lut(_GROUND, ai)[field.classes] * tint).astype(f32)
    img = block_col[bi, bj]
    flat = img.reshape(-1, 3)

    # farmland: fields of 2x2 blocks, some split in two, each with its crop colour and row direction
    fidx = np.flatnonzero(cls == CODE[FARMLAND])
    if fidx.size:
        fy, fx = yw.ravel()[fidx] + PAD_BLOCKS, xw.ravel()[fidx] + PAD_BLOCKS
        nf = (nbi // 2 + 1, nbj // 2 + 1)
        fi, fj = np.clip((fy // 2).astype(np.int32), 0, nf[0] - 1), np.clip((fx // 2).astype(np.int32), 0, nf[1] - 1)
        gy, gx = (fy / 2) % 1, (fx / 2) % 1
        split_dir = rng.random(nf) < 0.5
        split_pos = rng.uniform(0.3, 0.7, nf).astype(f32)
        split_pos[rng.random(nf) < 0.35] = 2.0  # some fields are not split
        along_split = np.where(split_dir[fi, fj], gy, gx)
        half = (along_split > split_pos[fi, fj]).astype(np.int32)
        crops = np.asarray(_CROPS[ai], f32)
        crop_idx = rng.integers(0, len(crops), nf + (2,))
        crop_dir = rng.random(nf + (2,)) < 0.5
        period = rng.uniform(2.2, 4.0, nf + (2,)).astype(f32) * f32(max(s, 0.5))
        rows = np.where(crop_dir[fi, fj, half], fy, fx) * f32(bp)
        col = crops[crop_idx[fi, fj, half]] * (1 + f32(0.09) * np.sin(two_pi * rows / period[fi, fj, half]))[:, None]
        hw = max(0.8, 0.9 * s) / (2 * bp)
        hedge = (np.minimum(gy, gx) < hw) | (np.abs(along_split - split_pos[fi, fj]) < hw / 2)
        col[hedge] = col[hedge] * f32(0.62) + np.asarray((40, 70, 30), f32) * f32(0.38)
        flat[fidx] = col * (1 + 0.04 * rng.standard_normal((nbi, nbj, 1)).astype(f32))[bi.ravel()[fidx], bj.ravel()[fidx]]
        del fy, fx, fi, fj, gy, gx, along_split, half, rows, col, hedge

    # ---- roads -------------------------------------------------------------
    street_w = max(1.0, 1.5 * s)
    has_streets = np.isin(cls, [CODE[c] for c in _STREETS])
    road = has_streets & ((u * f32(bp) < street_w) | (v * f32(bp) < street_w))

    def near_line(c: np.ndarray, every: int, width: float) -> np.ndarray:  # within `width` px of a multiple of `every`
        return np.abs(((c + every / 2) % every) - every / 2) < f32(width / bp)

    urban = cls != CODE[FARMLAND]
    road |= urban & (near_line(yw, 4, max(1.0, 1.6 * s)) | near_line(xw, 4, max(1.0, 1.6 * s)))
    road &= ~water
    maj_w = max(1.2, 2.4 * s)
    major_road = near_line(yw, 8, maj_w) | near_line(xw, 8, maj_w)
    # major roads cross rivers on bridges; they stop at lakes and the sea
    major_road &= (wd > -2.5) if field.profile.water == "river" else ~water
    bridge = major_road & water
    flat[np.flatnonzero(road)] = _ASPHALT_LOCAL[ai]
    flat[np.flatnonzero(major_road)] = _ASPHALT_MAJOR[ai]
    if s >= 0.9:  # painted centre line
        flat[np.flatnonzero(major_road & (near_line(yw, 8, 0.35 * s) | near_line(xw, 8, 0.35 * s)))] = (175, 170, 150)
    road |= major_road

    # ---- water -------------------------------------------------------------
    bank = (~water) & (wd < 0.14) & ~road
    bidx = np.flatnonzero(bank)
    flat[bidx] = flat[bidx] * f32(0.4) + np.asarray(((176, 168, 136), (196, 180, 146))[ai], f32) * f32(0.6)
    widx = np.flatnonzero(water & ~bridge)
    wcol = np.asarray(_GROUND[WATER][ai], f32)
    depth = np.clip(-wd.ravel()[widx] / 2.0, 0, 1)[:, None]
    flat[widx] = (wcol * f32(1.35) + np.asarray((8, 14, 4), f32)) * (1 - depth) + wcol * depth

    # ---- buildings ---------------------------------------------------------
    k_block = np.asarray([_K[c] for c in CLASSES], np.int32)[field.classes]
    big = (field.classes == CODE[INDUSTRIAL]) | (field.classes == CODE[COMMERCIAL])  # 1 or 2x2 big buildings
    k_block = np.where(big, rng.integers(1, 3, (nbi, nbj)), k_block)
    n_lots = nbi * nbj * KMAX * KMAX
    cls_of_lot = np.repeat(field.classes.ravel(), KMAX * KMAX)
    built = rng.random(n_lots) < np.asarray([_P_BUILD[c] for c in CLASSES])[cls_of_lot]
    margins = rng.uniform(0.06, 0.22, (n_lots, 4)).astype(f32)  # top, bottom, left, right (share of the lot)
    slab = cls_of_lot == CODE[DENSE_RESIDENTIAL]  # apartment slabs: long, thin, parallel within a block
    block_orient = np.repeat(rng.random(nbi * nbj) < 0.5, KMAX * KMAX)
    thin = np.where(block_orient[slab, None], [0.32, 0.32, 0.06, 0.06], [0.06, 0.06, 0.32, 0.32])
    margins[slab] = thin + rng.uniform(-0.03, 0.03, (int(slab.sum()), 4))
    tower = cls_of_lot == CODE[COMMERCIAL]  # towers and malls: most of the lot
    margins[tower] = rng.uniform(0.04, 0.16, (int(tower.sum()), 4))
    house = cls_of_lot == CODE[SUBURBAN]  # houses: small, square-ish
    margins[house] = rng.uniform(0.2, 0.34, (int(house.sum()), 4))
    roof_pick, roof_shade = rng.random(n_lots), (1 + 0.07 * rng.standard_normal(n_lots))
    roofs = np.zeros((n_lots, 3), f32)
    for c in CLASSES:
        pal, sel = np.asarray(_ROOFS[c], f32), cls_of_lot == CODE[c]
        roofs[sel] = pal[(roof_pick[sel] * len(pal)).astype(int)] * roof_shade[sel, None]
    hmin = np.asarray([_HEIGHT[c][0] for c in CLASSES], f32)[cls_of_lot]
    hmax = np.asarray([_HEIGHT[c][1] for c in CLASSES], f32)[cls_of_lot]
    lot_height = (hmin + (hmax - hmin) * rng.random(n_lots).astype(f32)) * f32(s)

    gap = f32(street_w + max(0.6, 0.8 * s))
    cand = np.flatnonzero(built.reshape(nbi, nbj, KMAX * KMAX).any(-1)[bi, bj] & ~road & (wd > 0.3)
                          & (u * f32(bp) > gap) & (v * f32(bp) > gap))
    cbi, cbj, cu, cv = bi.ravel()[cand], bj.ravel()[cand], u.ravel()[cand], v.ravel()[cand]
    k = k_block[cbi, cbj]
    si, sj = np.minimum((cu * k).astype(np.int32), k - 1), np.minimum((cv * k).astype(np.int32), k - 1)
    su, sv = cu * k - si, cv * k - sj
    lot = ((cbi * nbj + cbj) * KMAX + si) * KMAX + sj
    m = margins[lot]
    ins = built[lot] & (su > m[:, 0]) & (su < 1 - m[:, 1]) & (sv > m[:, 2]) & (sv < 1 - m[:, 3])
    cand, lot, m, su, sv, k = cand[ins], lot[ins], m[ins], su[ins], sv[ins], k[ins]
    building = np.full(H * W, -1, np.int64)
    building[cand] = lot
    # roof detail: pitched house roofs, rooftop plant on towers, ribbed shed roofs, darker parapets
    lu, lv = 1 - m[:, 0] - m[:, 1], 1 - m[:, 2] - m[:, 3]  # roof size as a share of the lot
    ru, rv = (su - m[:, 0]) / np.maximum(lu, 1e-3), (sv - m[:, 2]) / np.maximum(lv, 1e-3)
    across = np.where(lu > lv, rv, ru)
    rcol = roofs[lot]
    lcls = cls_of_lot[lot]
    rcol[(lcls == CODE[SUBURBAN]) & (across > 0.5)] *= f32(0.78)
    plant = (lcls == CODE[COMMERCIAL]) & (np.abs(ru - 0.5) < 0.18) & (np.abs(rv - 0.5) < 0.22)
    rcol[plant] = rcol[plant] * f32(1.12) + 6
    ribbed = lcls == CODE[INDUSTRIAL]
    rcol[ribbed] *= (1 + f32(0.06) * np.sign(np.sin(across[ribbed] * f32(np.pi * 10))))[:, None]
    edge_px = np.minimum(np.minimum(ru, 1 - ru) * lu, np.minimum(rv, 1 - rv) * lv) * f32(bp) / k
    rcol[edge_px < max(0.6, 0.7 * s)] *= f32(0.85)
    flat[cand] = rcol
    height = np.zeros(H * W, f32)
    height[cand] = lot_height[lot]
    is_building = building >= 0
    del cbi, cbj, cu, cv, si, sj, su, sv, m, lu, lv, ru, rv, across, rcol, lcls

    # ---- trees: shaded crowns on a jittered lattice, clumped by low-frequency noise --------
    ts = max(2.0, 4.2 * s)  # lattice spacing in px
    p_tree = np.asarray([_P_TREE[c] for c in CLASSES], f32) * f32(0.55 if ai else 1.0)
    cand = np.flatnonzero(((p_tree[cls] > 0) & ~road & ~water & ~bank).ravel() & ~is_building)
    py, px = (cand // W).astype(f32) + f32(0.5), (cand % W).astype(f32) + f32(0.5)
    ti, tj = (py / f32(ts)).astype(np.int32), (px / f32(ts)).astype(np.int32)
    nti, ntj = int(H / ts) + 2, int(W / ts) + 2
    clump = zoom(rng.random((nti // 6 + 2, ntj // 6 + 2)), 6, order=1)[:nti, :ntj].astype(f32)
    tree_r = rng.uniform(0.28, 0.52, (nti, ntj)).astype(f32) * f32(ts)
    jy, jx = rng.uniform(0.3, 0.7, (2, nti, ntj)).astype(f32)
    present = rng.random((nti, ntj)).astype(f32)
    dy = py - (ti + jy[ti, tj]) * f32(ts)
    dx = px - (tj + jx[ti, tj]) * f32(ts)
    r = tree_r[ti, tj]
    ok = (present[ti, tj] < p_tree[cls.ravel()[cand]] * (0.35 + 1.3 * clump[ti, tj])) & (dy * dy + dx * dx < r * r)
    cand, dy, dx, r = cand[ok], dy[ok], dx[ok], r[ok]
    tree = np.zeros(H * W, bool)
    tree[cand] = True
    light = np.clip(1.0 - 0.35 * (dy + dx) / (r + 1e-3), 0.6, 1.35)  # lit from the north-west
    flat[cand] = np.asarray(((46, 78, 36), (82, 96, 56))[ai], f32) * light[:, None]
    height[cand] = np.maximum(height[cand], f32(1.3 * s))
    del py, px, ti, tj, dy, dx, r, ok, light

    # ---- shadows, cast south-east by buildings and trees onto the ground --------------
    height = height.reshape(H, W)
    shadow = np.zeros((H, W), bool)
    for d in range(1, int(np.ceil(height.max())) + 1 if height.size else 1):
        shadow[d:, d:] |= height[:-d, :-d] >= d
    shadow &= height < f32(1.0)
    img[shadow] *= f32(0.58)

    # ---- sensor: slight blur (optics) and grain, mostly in brightness ----------------
    blurred = uniform_filter(img, size=(3, 3, 1), mode="nearest")
    img *= f32(0.65)
    img += f32(0.35) * blurred
    del blurred
    img += (rng.standard_normal((H, W), dtype=f32) * f32(2.6))[..., None]
    img += rng.standard_normal((H, W, 3), dtype=f32) * f32(1.2)
    np.clip(img + f32(0.5), 0, 255, out=img)
    image = img.astype(np.uint8)

    class_map = cls
    class_map[water] = CODE[WATER]
    return CityRaster(image, class_map, building.reshape(H, W), tree.reshape(H, W), road, major_road, bridge,
                      tile_px)

def cut_tiles(raster: CityRaster) -> dict[tuple[int, int], np.ndarray]:
    """The city raster cut into (row, col) -> tile_px x tile_px x 3 tiles."""
    t = raster.tile_px
    H, W = raster.image.shape[:2]
    return {(r, c): raster.image[r * t:(r + 1) * t, c * t:(c + 1) * t]
            for r in range(H // t) for c in range(W // t)}


@dataclass
class CellStats:
    """What is actually in one tile, measured from the render (drives captions and indicators)."""

    fractions: dict[str, float]  # land-use class -> share of the tile's pixels
    building_cover: float
    n_buildings: int
    tree_cover: float
    road_cover: float
    major_road: bool
    bridge: bool

    @property
    def dominant(self) -> str:
        """Water when it covers half the tile or more, else the largest land class (what the cell is used for)."""
        if self.fractions[WATER] >= 0.5:
            return WATER
        land = [c for c in CLASSES if c != WATER]
        return max(land, key=lambda c: (self.fractions[c], -CLASSES.index(c)))


def cell_stats(raster: CityRaster) -> dict[tuple[int, int], CellStats]:
    """Per-tile measurements of the rendered layers."""
    t = raster.tile_px
    H, W = raster.classes.shape
    R, C = H // t, W // t

    def per_cell(mask: np.ndarray) -> np.ndarray:
        return mask.reshape(R, t, C, t).mean(axis=(1, 3))

    fr = {c: per_cell(raster.classes == CODE[c]) for c in CLASSES}
    bcov, tcov, rcov = per_cell(raster.building >= 0), per_cell(raster.tree), per_cell(raster.road)
    maj, brg = per_cell(raster.major_road), per_cell(raster.bridge)
    # building count: distinct building ids per tile (a building cut by a border counts in both tiles)
    cell_idx = (np.arange(H)[:, None] // t) * C + (np.arange(W)[None, :] // t)
    has = raster.building >= 0
    keys = np.unique(cell_idx[has].astype(np.int64) * (1 << 40) + raster.building[has])
    counts = np.bincount((keys >> 40).astype(np.int64), minlength=R * C).reshape(R, C)
    out = {}
    for r in range(R):
        for c in range(C):
            out[(r, c)] = CellStats({k: float(v[r, c]) for k, v in fr.items()}, float(bcov[r, c]),
                                    int(counts[r, c]), float(tcov[r, c]), float(rcov[r, c]),
                                    bool(maj[r, c] > 0.002), bool(brg[r, c] > 0.0005))
    return out
