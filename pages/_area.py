"""The Map page's area selection: a draw tool on the map, a cell picker, and the aggregate panel.

Widgets only; the numbers come from `urbanclip.services.area`. The active area lives in
`st.session_state[AREA]` ({"kind": "polygon" | "cells", "city", "geometry" | "cell_ids"}),
so it survives reruns that rebuild the map (which clear Leaflet's own drawn layers: the
map then shows the area as an outline instead).
"""

from __future__ import annotations

import json

import streamlit as st

from pages._shared import CITY, SELECTED
from urbanclip.errors import UserError
from urbanclip.services.area import (AreaSummary, area_from_cells, area_from_polygon, cells_by_id, cells_in_polygon,
                                     read_map_event)
from urbanclip.services.mapview import add_area_outline, add_draw_control
from urbanclip.services.profile import format_value

AREA = "area"
LAST_DRAWING = "_area_last_drawing"
SUMMARY = "_area_summary"
RETURNED = ["last_active_drawing", "all_drawings"]  # what st_folium must return for clicks and drawings


def cells_key(city: str) -> str:
    """Session key of the city's cell picker (one per city: its options differ)."""
    return f"area_cells-{city}"


def current_area(ctx, city: str) -> tuple[list[str], dict | None, str | None]:
    """(cell ids, drawn polygon, error) of the active area when it is in `city`."""
    area = st.session_state.get(AREA)
    if not area or area.get("city") != city:
        return [], None, None
    try:
        if area["kind"] == "polygon":
            return cells_in_polygon(ctx.workspace, area["geometry"], city), area["geometry"], None
        return cells_by_id(ctx.workspace, area["cell_ids"], city), None, None
    except UserError as e:
        return [], area.get("geometry"), str(e)


def decorate_map(ctx, city: str, m) -> None:
    """Add the draw tool and the active area's outline to the page's folium map."""
    add_draw_control(m)
    ids, polygon, _ = current_area(ctx, city)
    add_area_outline(m, ctx, ids, polygon)


def handle_map_event(city: str, out: dict | None) -> None:
    """A newly drawn polygon becomes the active area (clicked cells are handled by the page)."""
    ev = read_map_event(out)
    if ev.polygon is None:
        return
    sig = json.dumps(ev.polygon, sort_keys=True)
    if sig == st.session_state.get(LAST_DRAWING):
        return
    st.session_state[LAST_DRAWING] = sig
    st.session_state[AREA] = {"kind": "polygon", "city": city, "geometry": ev.polygon}
    st.session_state[cells_key(city)] = []
    st.rerun()  # redraw the map with the area's outline


def _cells_changed(city: str) -> None:
    ids = list(st.session_state.get(cells_key(city)) or [])
    st.session_state[AREA] = {"kind": "cells", "city": city, "cell_ids": ids} if ids else None


def _add_selected(city: str, options: list[str]) -> None:
    sel = st.session_state.get(SELECTED)
    ids = list(st.session_state.get(cells_key(city)) or [])
    if sel in options and sel not in ids:
        ids.append(sel)
    st.session_state[cells_key(city)] = ids
    _cells_changed(city)


def _clear(city: str) -> None:
    st.session_state[AREA] = None
    st.session_state[cells_key(city)] = []


def _go(cell_id: str, city: str) -> None:
    st.session_state[CITY] = city
    st.session_state[SELECTED] = cell_id


def _summary(ctx, city: str) -> AreaSummary | None:
    area = st.session_state[AREA]
    sig = json.dumps([area, ctx.encoder_key, sorted(ctx.predictions)], sort_keys=True, default=str)
    cached = st.session_state.get(SUMMARY)
    if cached and cached[0] == sig:
        return cached[1]
    with st.spinner("Adding up the area..."):
        if area["kind"] == "polygon":
            summary = area_from_polygon(ctx, area["geometry"], city)
        else:
            summary = area_from_cells(ctx, area["cell_ids"], city)
    st.session_state[SUMMARY] = (sig, summary)
    return summary


def area_panel(ctx, city: str) -> None:
    """The area expander: picker, buttons, and the aggregate of the active area."""
    ws = ctx.workspace
    area = st.session_state.get(AREA)
    active = bool(area) and area.get("city") == city
    with st.expander("Area: draw a polygon or pick cells", expanded=active):
        st.caption("Draw with the polygon or rectangle tool on the map (a cell counts when its centre is inside), "
                   "or pick cells here.")
        options = [str(c) for c in ws.city_cells(city)["cell_id"]]
        st.multiselect("Cells of the area", options, key=cells_key(city), on_change=_cells_changed, args=(city,),
                       placeholder="Pick cells")
        c1, c2 = st.columns(2)
        c1.button("Add the selected cell", key="area-add", on_click=_add_selected, args=(city, options),
                  disabled=st.session_state.get(SELECTED) not in options, use_container_width=True)
        c2.button("Clear area", key="area-clear", on_click=_clear, args=(city,), disabled=not active,
                  use_container_width=True)
        if not active:
            return
        try:
            s = _summary(ctx, city)
        except UserError as e:
            st.warning(str(e))
            return
        how = "cells whose centre is inside the polygon" if s.selection == "polygon" else "picked cells"
        st.markdown(f"**{s.n_cells} cell{'s' if s.n_cells != 1 else ''}** · {s.area_km2:.2f} km² · {how}")
        rows = ["| Indicator | Predicted | Observed | cells known |", "|---|---|---|---|"]
        for iv in s.indicators:
            rows.append(f"| {iv.label} ({iv.aggregation}) | {format_value(iv.predicted, iv.unit)} | "
                        f"{format_value(iv.observed, iv.unit)} | {iv.observed_cells} of {s.n_cells} |")
        st.markdown("\n".join(rows))
        for note in s.notes:
            st.caption(note)
        st.markdown("**What the area looks like**")
        for p in s.description:
            g = f", grounding {p.grounding:.2f}" if p.grounding is not None else ""
            st.markdown(f"- {p.sentence} _(in {p.cells} of {s.n_cells} cells{g})_")
        st.caption(s.description_note)
        st.markdown(f"**Most similar areas in other cities** ({s.window[0]}×{s.window[1]}-cell windows)")
        if not s.similar:
            st.caption(s.similar_note)
        for m in s.similar:
            ind = " · ".join(f"{iv.label}: {format_value(m.observed[iv.name], iv.unit)}" for iv in s.indicators)
            st.markdown(f"**{m.city}** · similarity **{m.score:.3f}** · {len(m.cell_ids)} cells  \n{ind}")
            st.button(f"Go to {m.centre}", key=f"area-go-{m.city}-{m.anchor}", on_click=_go, args=(m.centre, m.city))
