/* Urban Insights map: a Streamlit component (protocol v1, no npm library) that draws a city's
   grid of cells over the workspace's own imagery with Leaflet (vendored, offline).

   The grid is two images drawn on one canvas: the imagery mosaic and a colour image with one
   pixel per cell, both warped onto the grid's own corner points, patch by patch and triangle
   by triangle (cells are squares in a metric CRS, so the grid is a slightly curved quadrilateral
   in web mercator). Hit testing inverts the same mapping, so the tooltip, the click and the
   drawn cell always agree. The files come once per (city, colour layer) from the app's data
   route; on a click Streamlit re-renders the component with small arguments (selection,
   matches, area, view commands) and the drawn grid and the view stay as they are.

   Events sent back to Python (the component's value):
     {kind: "click", row, col, id, n}     a cell was clicked
     {kind: "draw", geometry, n}          a polygon or rectangle was drawn (GeoJSON, lon/lat)
   `n` counts events, so clicking the same cell twice is two events.
   window.urbanmap exposes the mapping for tests and the browser benchmark. */
"use strict";

const Streamlit = {
  send(type, data) { window.parent.postMessage(Object.assign({isStreamlitMessage: true, type: type}, data), "*"); },
  ready() { this.send("streamlit:componentReady", {apiVersion: 1}); },
  setHeight(h) { this.send("streamlit:setFrameHeight", {height: h}); },
  setValue(v) { this.send("streamlit:setComponentValue", {value: v, dataType: "json"}); },
};

const state = {
  args: null, grid: null, gridName: null, mosaic: null, mosaicName: null, colour: null, colourName: null,
  labels: null, labelsName: null, viewSeq: null, events: 0, drawing: false, paints: 0, last: null,
  tiles: null, tileErrors: 0, tileLoads: 0,
};

const map = L.map("map", {zoomSnap: 0.25, zoomDelta: 0.5, wheelPxPerZoomLevel: 120, zoomAnimation: false,
                          fadeAnimation: false, markerZoomAnimation: false, maxZoom: 20, minZoom: 1});
map.attributionControl.setPrefix(false);
map.createPane("grid").style.zIndex = 350;     // above online tiles (200), below outlines (400)
L.control.scale({imperial: false}).addTo(map);
map.setView([0, 0], 2);

// ---------------------------------------------------------------------------------------------
// the grid's geometry: grid coordinates (col, row) <-> container pixels, through triangles

function patches() {
  const g = state.grid, p = g.patch;
  return {p: p, nr: Math.ceil(g.rows / p), nc: Math.ceil(g.cols / p)};
}

function screenPoints() {           // container points of the patch corners, [i][j]
  const g = state.grid, {nr, nc} = patches(), out = [];
  for (let i = 0; i <= nr; i++) {
    const row = [];
    for (let j = 0; j <= nc; j++) row.push(map.latLngToContainerPoint(g.points[i * (nc + 1) + j]));
    out.push(row);
  }
  return out;
}

function patchBox(i, j) {
  const g = state.grid, p = g.patch;
  return {r0: i * p, r1: Math.min((i + 1) * p, g.rows), c0: j * p, c1: Math.min((j + 1) * p, g.cols)};
}

function toScreen(P, x, y) {        // grid coordinates -> container point
  const {p, nr, nc} = patches();
  const i = Math.min(Math.max(Math.floor(y / p), 0), nr - 1), j = Math.min(Math.max(Math.floor(x / p), 0), nc - 1);
  const b = patchBox(i, j), u = (x - b.c0) / (b.c1 - b.c0), v = (y - b.r0) / (b.r1 - b.r0);
  const A = P[i][j], B = P[i][j + 1], C = P[i + 1][j], D = P[i + 1][j + 1];
  if (u + v <= 1) return L.point(A.x + u * (B.x - A.x) + v * (C.x - A.x), A.y + u * (B.y - A.y) + v * (C.y - A.y));
  return L.point(D.x + (1 - u) * (C.x - D.x) + (1 - v) * (B.x - D.x), D.y + (1 - u) * (C.y - D.y) + (1 - v) * (B.y - D.y));
}

function barycentric(q, a, b, c) {  // (s, t) with q = a + s (b - a) + t (c - a)
  const det = (b.x - a.x) * (c.y - a.y) - (c.x - a.x) * (b.y - a.y);
  if (Math.abs(det) < 1e-12) return null;
  const s = ((q.x - a.x) * (c.y - a.y) - (c.x - a.x) * (q.y - a.y)) / det;
  const t = ((b.x - a.x) * (q.y - a.y) - (q.x - a.x) * (b.y - a.y)) / det;
  return [s, t];
}

function toGrid(q) {                // container point -> fractional grid coordinates, or null outside
  if (!state.grid) return null;
  const P = screenPoints(), {nr, nc} = patches(), eps = 1e-9;
  for (let i = 0; i < nr; i++) {
    for (let j = 0; j < nc; j++) {
      const b = patchBox(i, j), A = P[i][j], B = P[i][j + 1], C = P[i + 1][j], D = P[i + 1][j + 1];
      let st = barycentric(q, A, B, C);
      if (st && st[0] >= -eps && st[1] >= -eps && st[0] + st[1] <= 1 + eps)
        return {x: b.c0 + st[0] * (b.c1 - b.c0), y: b.r0 + st[1] * (b.r1 - b.r0)};
      st = barycentric(q, D, C, B);  // s along D->C (u decreases), t along D->B (v decreases)
      if (st && st[0] >= -eps && st[1] >= -eps && st[0] + st[1] <= 1 + eps)
        return {x: b.c1 - st[0] * (b.c1 - b.c0), y: b.r1 - st[1] * (b.r1 - b.r0)};
    }
  }
  return null;
}

function cellAt(q) {                // the cell under a container point: {row, col, id, label} or null
  const g = state.grid, pos = toGrid(q);
  if (!pos) return null;
  const col = Math.min(Math.floor(pos.x), g.cols - 1), row = Math.min(Math.floor(pos.y), g.rows - 1);
  const id = g.ids[row * g.cols + col];
  if (!id) return null;
  const label = state.labels ? state.labels[row * g.cols + col] : "";
  return {row: row, col: col, id: id, label: label};
}

function cellRing(row, col) {       // the drawn cell's corners as lat/lngs
  const P = screenPoints();
  return [[col, row], [col + 1, row], [col + 1, row + 1], [col, row + 1]].map(
    (xy) => map.containerPointToLatLng(toScreen(P, xy[0], xy[1])));
}

function cellPx() {
  const g = state.grid;
  if (!g) return 0;
  const P = screenPoints(), b = patchBox(0, 0);
  return P[0][0].distanceTo(P[0][1]) / (b.c1 - b.c0);
}

// ---------------------------------------------------------------------------------------------
// drawing: a canvas in its own pane, redrawn after every move (the pane moves it while dragging)

function affine(s0, s1, s2, d0, d1, d2) {  // the matrix taking source triangle s to destination d
  const u1x = s1[0] - s0[0], u1y = s1[1] - s0[1], u2x = s2[0] - s0[0], u2y = s2[1] - s0[1];
  const v1x = d1.x - d0.x, v1y = d1.y - d0.y, v2x = d2.x - d0.x, v2y = d2.y - d0.y;
  const det = u1x * u2y - u2x * u1y;
  const a = (v1x * u2y - v2x * u1y) / det, c = (v2x * u1x - v1x * u2x) / det;
  const b = (v1y * u2y - v2y * u1y) / det, d = (v2y * u1x - v1y * u2x) / det;
  return [a, b, c, d, d0.x - a * s0[0] - c * s0[1], d0.y - b * s0[0] - d * s0[1]];
}

function grow(pts, by) {            // a triangle pushed out from its centre by `by` px (hides seams)
  const cx = (pts[0].x + pts[1].x + pts[2].x) / 3, cy = (pts[0].y + pts[1].y + pts[2].y) / 3;
  return pts.map((p) => {
    const dx = p.x - cx, dy = p.y - cy, n = Math.hypot(dx, dy) || 1;
    return L.point(p.x + dx / n * by, p.y + dy / n * by);
  });
}

function warp(ctx, img, P, sx, sy, dpr, w, h) {
  const {nr, nc} = patches();
  for (let i = 0; i < nr; i++) {
    for (let j = 0; j < nc; j++) {
      const b = patchBox(i, j), A = P[i][j], B = P[i][j + 1], C = P[i + 1][j], D = P[i + 1][j + 1];
      const xs = [A.x, B.x, C.x, D.x], ys = [A.y, B.y, C.y, D.y];
      if (Math.max(...xs) < 0 || Math.min(...xs) > w || Math.max(...ys) < 0 || Math.min(...ys) > h) continue;
      const x0 = b.c0 * sx, x1 = b.c1 * sx, y0 = b.r0 * sy, y1 = b.r1 * sy;
      const tris = [[[x0, y0], [x1, y0], [x0, y1], A, B, C], [[x1, y1], [x0, y1], [x1, y0], D, C, B]];
      for (const [s0, s1, s2, d0, d1, d2] of tris) {
        const m = affine(s0, s1, s2, d0, d1, d2), clip = grow([d0, d1, d2], 0.75);
        ctx.save();
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.beginPath();
        ctx.moveTo(clip[0].x, clip[0].y); ctx.lineTo(clip[1].x, clip[1].y); ctx.lineTo(clip[2].x, clip[2].y);
        ctx.closePath();
        ctx.clip();
        ctx.setTransform(m[0] * dpr, m[1] * dpr, m[2] * dpr, m[3] * dpr, m[4] * dpr, m[5] * dpr);
        const mx = Math.max(sx, 1), my = Math.max(sy, 1);   // one source cell of margin
        const ax = Math.max(0, x0 - mx), ay = Math.max(0, y0 - my);
        const bx = Math.min(img.width, x1 + mx), by = Math.min(img.height, y1 + my);
        ctx.drawImage(img, ax, ay, bx - ax, by - ay, ax, ay, bx - ax, by - ay);
        ctx.restore();
      }
    }
  }
}

function gridLines(ctx, P, dpr) {
  // each row (column) line is straight inside a triangle: per patch, its ends and the diagonal crossing
  const g = state.grid, {p, nr, nc} = patches();
  ctx.save();
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.strokeStyle = "rgba(255,255,255,0.45)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let r = 0; r <= g.rows; r++) {
    const i = Math.min(Math.floor(r / p), nr - 1), b = patchBox(i, 0), v = (r - b.r0) / (b.r1 - b.r0);
    for (let j = 0; j < nc; j++) {
      const bj = patchBox(i, j), w = bj.c1 - bj.c0;
      const a = toScreen(P, bj.c0, r), m = toScreen(P, bj.c0 + (1 - v) * w, r), e = toScreen(P, bj.c1, r);
      if (j === 0) ctx.moveTo(a.x, a.y);
      ctx.lineTo(m.x, m.y); ctx.lineTo(e.x, e.y);
    }
  }
  for (let c = 0; c <= g.cols; c++) {
    const j = Math.min(Math.floor(c / p), nc - 1), b = patchBox(0, j), u = (c - b.c0) / (b.c1 - b.c0);
    for (let i = 0; i < nr; i++) {
      const bi = patchBox(i, j), hgt = bi.r1 - bi.r0;
      const a = toScreen(P, c, bi.r0), m = toScreen(P, c, bi.r0 + (1 - u) * hgt), e = toScreen(P, c, bi.r1);
      if (i === 0) ctx.moveTo(a.x, a.y);
      ctx.lineTo(m.x, m.y); ctx.lineTo(e.x, e.y);
    }
  }
  ctx.stroke();
  ctx.restore();
}

function showMosaic() {
  return !state.tiles || (state.tileLoads === 0 && state.tileErrors > 0);
}

const GridCanvas = L.Layer.extend({
  onAdd(m) {
    this._canvas = L.DomUtil.create("canvas", "urban-grid");
    this._canvas.style.pointerEvents = "none";
    m.getPane("grid").appendChild(this._canvas);
    m.on("moveend zoomend resize viewreset", this.redraw, this);
    this.redraw();
  },
  onRemove(m) {
    L.DomUtil.remove(this._canvas);
    m.off("moveend zoomend resize viewreset", this.redraw, this);
  },
  redraw() {
    if (!this._canvas) return;
    const size = map.getSize(), pad = 0.5, dpr = window.devicePixelRatio || 1;
    const w = Math.round(size.x * (1 + 2 * pad)), h = Math.round(size.y * (1 + 2 * pad));
    const origin = L.point(-size.x * pad, -size.y * pad);
    this._canvas.width = w * dpr; this._canvas.height = h * dpr;
    this._canvas.style.width = w + "px"; this._canvas.style.height = h + "px";
    L.DomUtil.setPosition(this._canvas, map.containerPointToLayerPoint(origin));
    const ctx = this._canvas.getContext("2d");
    ctx.clearRect(0, 0, this._canvas.width, this._canvas.height);
    if (!state.grid) return;
    const P = screenPoints().map((row) => row.map((q) => q.subtract(origin)));
    if (state.mosaic && showMosaic()) {
      ctx.imageSmoothingEnabled = true;
      warp(ctx, state.mosaic, P, state.mosaic.width / state.grid.cols, state.mosaic.height / state.grid.rows, dpr, w, h);
    }
    if (state.colour) {  // warped opaque on its own canvas, then laid over at the layer's opacity: no seams
      const off = this._colourCanvas || (this._colourCanvas = document.createElement("canvas"));
      off.width = this._canvas.width; off.height = this._canvas.height;
      const octx = off.getContext("2d");
      octx.imageSmoothingEnabled = false;
      warp(octx, state.colour, P, 1, 1, dpr, w, h);
      ctx.save();
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.globalAlpha = state.args.opacity;
      ctx.drawImage(off, 0, 0);
      ctx.restore();
    }
    if (cellPx() >= 8) gridLines(ctx, P, dpr);
    state.paints += 1;
    document.body.dataset.paints = String(state.paints);
    document.body.dataset.colour = state.colour ? state.colourName : "";
  },
});
const gridCanvas = new GridCanvas().addTo(map);

// ---------------------------------------------------------------------------------------------
// outlines: the selected cell, search matches, the active area

const outlines = {
  selected: L.layerGroup().addTo(map), matches: L.layerGroup().addTo(map), area: L.layerGroup().addTo(map),
};

function showSelected(ring) {
  outlines.selected.clearLayers();
  if (ring) L.polygon(ring, {color: "#ff00ff", weight: 3, fill: false, interactive: false}).addTo(outlines.selected);
}

function drawOutlines(a) {
  showSelected(a.selected ? a.selected.ring : null);
  outlines.matches.clearLayers();
  for (const ring of a.matches || [])
    L.polygon(ring, {color: "#00e5ff", weight: 2, fill: false, interactive: false}).addTo(outlines.matches);
  outlines.area.clearLayers();
  if (a.area) L.geoJSON(a.area, {interactive: false, style: {color: "#ffd400", weight: 3, fillColor: "#ffd400",
                                                               fillOpacity: 0.12}}).addTo(outlines.area);
  if (a.drawn) L.geoJSON(a.drawn, {interactive: false, style: {color: "#ffffff", weight: 2, dashArray: "6 4",
                                                                 fill: false}}).addTo(outlines.area);
}

// ---------------------------------------------------------------------------------------------
// tooltip, click, drawing

const tip = document.getElementById("tip");
let pendingMove = null;
map.on("mousemove", (e) => {
  pendingMove = e.containerPoint;
  requestAnimationFrame(() => {
    if (!pendingMove) return;
    const q = pendingMove, cell = state.drawing ? null : cellAt(q);
    pendingMove = null;
    if (!cell) { tip.hidden = true; return; }
    tip.innerHTML = "<b></b><br><span></span>";
    tip.firstChild.textContent = cell.id;
    tip.lastChild.textContent = cell.label || "";
    tip.style.left = (q.x + 14) + "px";
    tip.style.top = (q.y + 14) + "px";
    tip.hidden = false;
  });
});
map.on("mouseout", () => { tip.hidden = true; });

map.on("click", (e) => {
  if (state.drawing || !state.args || state.args.interactive === false) return;
  const cell = cellAt(e.containerPoint);
  if (!cell) return;
  const now = Date.now();
  if (state.last && state.last.id === cell.id && now - state.last.t < 600) return;  // a double click zooms
  state.last = {id: cell.id, t: now};
  showSelected(cellRing(cell.row, cell.col));     // at once; the app's own outline follows
  state.events += 1;
  Streamlit.setValue({kind: "click", row: cell.row, col: cell.col, id: cell.id, n: state.events});
});

const drawn = new L.FeatureGroup().addTo(map);
const drawControl = new L.Control.Draw({
  draw: {polyline: false, circle: false, marker: false, circlemarker: false,
         polygon: {allowIntersection: false, showArea: false}, rectangle: {showArea: false}},
  edit: false,
});
map.on(L.Draw.Event.DRAWSTART, () => { state.drawing = true; tip.hidden = true; });
map.on(L.Draw.Event.DRAWSTOP, () => { setTimeout(() => { state.drawing = false; }, 100); });
map.on(L.Draw.Event.CREATED, (e) => {
  drawn.clearLayers();
  drawn.addLayer(e.layer);
  state.events += 1;
  Streamlit.setValue({kind: "draw", geometry: e.layer.toGeoJSON().geometry, n: state.events});
});

// ---------------------------------------------------------------------------------------------
// the opt-in online imagery, and what the map says when it cannot be reached

const notice = document.getElementById("notice");

function setOnline(a) {
  if (a.online && !state.tiles) {
    state.tileErrors = 0; state.tileLoads = 0;
    state.tiles = L.tileLayer(a.online_url, {maxZoom: 19, attribution: a.online_attribution});
    state.tiles.on("tileload", () => { state.tileLoads += 1; notice.hidden = true; });
    state.tiles.on("tileerror", () => {
      state.tileErrors += 1;
      if (state.tileLoads === 0) {
        notice.textContent = "Esri World Imagery cannot be reached from this browser: the map shows the workspace's own imagery.";
        notice.hidden = false;
        gridCanvas.redraw();
      }
    });
    state.tiles.addTo(map);
  } else if (!a.online && state.tiles) {
    map.removeLayer(state.tiles);
    state.tiles = null;
    notice.hidden = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Streamlit's render messages

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot load " + url));
    img.src = url;
  });
}

async function fetchJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function load(field, nameField, name, loader) {  // load a file once per name; the newest name wins
  if (name === state[nameField]) return;
  state[nameField] = name;
  if (!name) { state[field] = null; gridCanvas.redraw(); return; }
  loader(state.args.base + name).then((value) => {
    if (state[nameField] !== name) return;
    state[field] = value;
    gridCanvas.redraw();
  }).catch((err) => { notice.textContent = String(err); notice.hidden = false; });
}

function applyView(v) {
  if (!v || v.seq === state.viewSeq || !state.grid) return;
  state.viewSeq = v.seq;
  if (v.bounds) map.fitBounds(v.bounds, {animate: false, padding: [12, 12]});
  else map.setView(v.center, v.zoom, {animate: false});
}

async function render(a) {
  const first = state.args === null;
  state.args = a;
  const el = document.getElementById("map");
  if (el.style.height !== a.height + "px") {
    el.style.height = a.height + "px";
    Streamlit.setHeight(a.height);
    map.invalidateSize(false);
  }
  if (first && a.draw !== false) map.addControl(drawControl);
  if (a.grid !== state.gridName) {
    state.gridName = a.grid;
    state.grid = await fetchJSON(a.base + a.grid);
    if (state.gridName !== a.grid) return;  // a newer render took over
  }
  load("mosaic", "mosaicName", a.mosaic, loadImage);
  load("colour", "colourName", a.colour, loadImage);
  load("labels", "labelsName", a.labels, fetchJSON);
  drawn.clearLayers();  // the app echoes a drawn shape back as the area outline
  applyView(a.view);
  drawOutlines(a);
  setOnline(a);
  gridCanvas.redraw();
}

let queue = Promise.resolve();
window.addEventListener("message", (ev) => {
  const d = ev.data;
  if (!d || d.type !== "streamlit:render") return;
  queue = queue.then(() => render(d.args)).catch((err) => { notice.textContent = String(err); notice.hidden = false; });
});

window.urbanmap = {   // for tests and the browser benchmark
  state: state,
  view: () => ({center: map.getCenter(), zoom: map.getZoom()}),
  cellCentre: (row, col) => toScreen(screenPoints(), col + 0.5, row + 0.5),
  cellAt: (x, y) => cellAt(L.point(x, y)),
  cellPx: cellPx,
};
Streamlit.ready();
