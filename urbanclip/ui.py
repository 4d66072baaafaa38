"""Streamlit widget helpers shared by the pages: the cached context, session keys, navigation,
and the panels the Map page is made of (search form, cell panel, area panel, downloads).

The one module of the package that imports Streamlit (tests/test_architecture.py checks
it). Everything here lays out widgets and calls `urbanclip.services`; numbers, tables and
text are computed there, so they are testable without a browser.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import streamlit as st

from urbanclip.errors import UserError
from urbanclip.services.area import (
    AreaSummary,
    area_from_cells,
    area_from_polygon,
    area_indicator_table,
    cells_by_id,
    cells_in_polygon,
    read_map_event,
)
from urbanclip.services.context import (
    AppContext,
    active_model_file,
    active_model_path,
    clear_active_model,
    load_context,
    workspace_dir,
)
from urbanclip.services.export import FORMATS, export_cells, file_name
from urbanclip.services.lookup import search
from urbanclip.services.mapview import add_area_outline, add_draw_control
from urbanclip.services.profile import format_value, indicator_table, profile_cell

# session_state keys
CITY = "city"
SELECTED = "selected_cell"
SEARCH = "search_result"
LAST_CLICK = "_last_map_click"
DEEP_LINK = "_deep_link_page"
AREA = "area"
LAST_DRAWING = "_area_last_drawing"
SUMMARY = "_area_summary"
ALLOW_NETWORK = "allow_online_search"
RETURNED = ["last_active_drawing", "all_drawings"]  # what st_folium must return for clicks and drawings


# ---------------------------------------------------------------------------------
# user text


_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:&])")


def plain(text: object) -> str:
    """`text` for a Markdown widget (markdown, caption, info, labels...) shown as typed: every Markdown,
    HTML and Streamlit markup character is backslash-escaped, so user text (a search query, place and
    city names, descriptions from imported captions, file names) never renders as links, images or HTML."""
    return _MARKUP.sub(r"\\\1", str(text)).replace("\n", " ")


# ---------------------------------------------------------------------------------
# navigation


def ensure_navigation() -> None:
    """Route a deep link through app.py when Streamlit is still in `pages/` auto-discovery mode.

    Streamlit 1.67 treats the very first session of a fresh server that opens
    /compare or /train directly as an MPA-v1 app (app.py never ran, so its
    st.navigation is unknown). Switching to app.py registers the real navigation.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # internal module moved: nothing to fix
        return
    if PagesManager.uses_pages_directory:
        import inspect

        caller = Path(inspect.stack()[1].filename).resolve()
        st.session_state[DEEP_LINK] = str(caller)  # app.py switches on to it once navigation exists
        st.switch_page(str(caller.parents[1] / "app.py"))


def follow_deep_link() -> None:
    """Called by app.py after st.navigation: finish a deep link that ensure_navigation rerouted."""
    target = st.session_state.pop(DEEP_LINK, None)
    if target:
        st.switch_page(target)


# ---------------------------------------------------------------------------------
# the shared, cached context


@st.cache_resource(show_spinner=False, max_entries=2)
def _context_slot(root: str, model_key: str) -> dict:
    """One slot per (workspace, model) shared by all sessions; filled outside the cache.

    Loading reports progress into the page; Streamlit cannot replay elements drawn
    from inside a cached function, so the cache holds only the slot and a lock.
    """
    return {"lock": threading.Lock()}


def model_key() -> str:
    """Changes when the active model changes (file content), so the cache reloads."""
    f = active_model_file()
    chosen = f.read_text("utf-8") if f.is_file() else ""
    try:
        path = active_model_path()
    except UserError:
        path = None
    return json.dumps([chosen, str(path)])


def get_context() -> AppContext | None:
    """The cached AppContext, or None after showing a friendly error."""
    root = workspace_dir()
    box = st.empty()
    try:
        with st.spinner("Loading workspace and model..."):
            slot = _context_slot(str(root), model_key())
            with slot["lock"]:
                if "ctx" not in slot:
                    slot["ctx"] = load_context(root, progress=lambda m: box.info(m))
            ctx = slot["ctx"]
    except UserError as e:
        box.empty()
        st.error(f"Cannot open the workspace: {plain(e)}")
        st.info("Build the demo with `python -m urbanclip demo`, or point the app at a workspace with "
                "`URBANCLIP_WORKSPACE=/path/to/workspace streamlit run app.py`.")
        return None
    box.empty()
    return ctx


def shared_sidebar() -> None:
    """What every page shows in the sidebar: which workspace the app serves."""
    st.sidebar.caption(f"Workspace {plain(workspace_dir())}")


def show_notes(ctx: AppContext) -> None:
    """What is unavailable and why (no model, no probes, ...), collapsed when all is well."""
    if ctx.notes:
        with st.expander(f"Status: {len(ctx.notes)} note(s)", expanded=not ctx.has_model):
            for note in ctx.notes:
                st.info(plain(note))
            if ctx.model_error and active_model_file().is_file():
                st.button("Use the shipped model", key="use-shipped-model", on_click=clear_active_model,
                          help="the model chosen on the Train page does not load; go back to assets/model")
    if ctx.workspace.manifest.synthetic:
        st.caption("This is the SYNTHETIC demo workspace: images, descriptions and indicators are generated, not real.")


def select_cell(cell_id: str, city: str) -> None:
    """Callback: select a cell (and its city) e.g. from a similar-cell or search button."""
    st.session_state[CITY] = city
    st.session_state[SELECTED] = cell_id


# ---------------------------------------------------------------------------------
# search


def search_form(ctx: AppContext) -> None:
    """The search box; a hit selects its city / cell, a text query switches to the text-match layer."""
    with st.form("search", border=False):
        c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
        query = c1.text_input("Search", placeholder="city, place, cell id, 'lat, lon' or a description "
                              "('dense residential blocks beside a river')", key="query")
        submitted = c2.form_submit_button("Search", use_container_width=True)
    if not submitted:
        return
    try:
        with st.spinner("Searching (the first search over a workspace's descriptions embeds them once)..."):
            res = search(ctx, query, city=None, allow_network=bool(st.session_state.get(ALLOW_NETWORK, False)))
    except UserError as e:
        st.warning(plain(e))
        return
    res.message = plain(res.message)  # it quotes the query: shown as typed wherever the page puts it
    st.session_state[SEARCH] = res
    if res.kind == "error":
        return
    if res.city:
        st.session_state[CITY] = res.city
    if res.kind in ("cell", "place", "latlon"):
        st.session_state[SELECTED] = res.cell_id
    if res.kind == "text":
        st.session_state["layer"] = "text match"
        if res.cell_id:
            st.session_state[SELECTED] = res.cell_id


def search_results(res) -> None:
    """The ranked hits of a text search, each a button that selects the cell."""
    if res is None or res.kind != "text" or not res.ranked:
        return
    label = {"semantic": "semantic", "descriptions": "descriptions"}.get(res.method, "keyword")
    with st.expander(f"Search results ({label})", expanded=True):
        st.caption(res.message)
        for h in res.ranked[:5]:
            st.button(f"{h.score:.3f} · {plain(h.cell_id)}", key=f"hit-{h.cell_id}", on_click=select_cell,
                      args=(h.cell_id, h.city))


# ---------------------------------------------------------------------------------
# the clicked cell


def grounding_badge(g) -> None:
    """Warn when a description fits its tile no better than random tiles of the city (faithfulness)."""
    if g is None:
        return
    if g.low:
        st.badge("Weakly grounded", icon=":material/warning:", color="orange")
        if g.weak_sentences:
            st.caption("Weak: " + " ".join(f"“{plain(s)}”" for s in g.weak_sentences[:3]))
    st.caption(plain(g.message()))


def cell_panel(ctx: AppContext, cell_id: str, generate: bool) -> None:
    """What the model sees in one cell: tile, descriptions, indicators, look-alikes in other cities."""
    with st.spinner("Describing the tile..." if generate and ctx.has_model else "Loading cell..."):
        try:
            prof = profile_cell(ctx, cell_id, generate=generate)
        except UserError as e:
            st.warning(plain(e))
            return
    st.subheader(f"{plain(prof.city)} · cell {prof.row},{prof.col}")
    st.caption(f"{plain(prof.cell_id)} · lat {prof.lat:.5f}, lon {prof.lon:.5f}")
    left, right = st.columns([1, 1.3])
    with left:
        if prof.image_path is not None:
            st.image(str(prof.image_path), caption="Satellite tile", use_container_width=True)
        elif prof.image_problem:
            st.badge("Unreadable tile", icon=":material/broken_image:", color="red")
            st.warning(plain(prof.image_problem))
        else:
            st.info("Imagery is unavailable for this cell.")
    with right:
        st.markdown("**Generated description (model)**")
        st.markdown(plain(prof.generated) if prof.generated else f"_{plain(prof.generated_note)}_")
        grounding_badge(prof.grounding)
        if prof.source_description:
            st.markdown(f"**Source description** (workspace {plain(prof.source_column)})")
            st.markdown(plain(prof.source_description))
            grounding_badge(prof.source_grounding)
        if prof.grounding_note:
            st.caption(prof.grounding_note)
    st.markdown("**Indicators**")
    if prof.indicator_note:
        st.caption(prof.indicator_note)
    else:
        st.table(indicator_table(prof))
    if prof.interval_caption:
        st.caption(prof.interval_caption)
    if not ctx.has_predictions and not ctx.prediction_notes and prof.indicators:
        st.caption("Predicted values need a trained model with probe heads; showing observed values only.")
    st.markdown("**Most similar cells in other cities**")
    if not prof.similar:
        st.caption(plain(prof.similar_note))
    for m in prof.similar:
        c1, c2 = st.columns([1, 2.5])
        if m.image_path is not None:
            c1.image(str(m.image_path), use_container_width=True)
        ind = " · ".join(f"{plain(iv.label)}: {plain(format_value(m.observed[iv.name], iv.unit))}"
                         for iv in prof.indicators)
        c2.markdown(f"**{plain(m.city)}** · similarity **{m.score:.3f}**  \n{ind}")
        c2.button(f"Go to {plain(m.cell_id)}", key=f"go-{m.cell_id}", on_click=select_cell, args=(m.cell_id, m.city))


def download_panel(ctx: AppContext, city: str, selected: str | None) -> None:
    """Sidebar downloads: the city, or the selection (the active area, else the selected cell)."""
    area_ids, _, _ = current_area(ctx, city)
    picked = area_ids or ([selected] if selected and ctx.workspace.cell(selected)["city"] == city else [])
    with st.sidebar.expander("Download", icon=":material/download:"):
        fmt = st.radio("Format", list(FORMATS), horizontal=True, key="export_format")
        mime = FORMATS[fmt][1]
        st.download_button(f"{city} ({len(ctx.workspace.city_cells(city))} cells)",
                           data=lambda: export_cells(ctx, fmt, city=city), file_name=file_name(ctx, fmt, city),
                           mime=mime, key="download_city", on_click="ignore", use_container_width=True)
        st.download_button(f"Selection ({len(picked)} cell{'s' if len(picked) != 1 else ''})",
                           data=lambda: export_cells(ctx, fmt, cell_ids=picked),
                           file_name=file_name(ctx, fmt, city, "selection"), mime=mime, key="download_selection",
                           on_click="ignore", disabled=not picked, use_container_width=True,
                           help="the area on the map, else the selected cell" if picked else
                           "select a cell or draw an area on the map first")
        st.caption("Predictions, intervals, observed values and descriptions per cell; opens in geopandas / QGIS.")


# ---------------------------------------------------------------------------------
# areas: a draw tool on the map, a cell picker, and the aggregate panel
#
# The active area lives in st.session_state[AREA] ({"kind": "polygon" | "cells", "city",
# "geometry" | "cell_ids"}), so it survives reruns that rebuild the map (which clear
# Leaflet's own drawn layers: the map then shows the area as an outline instead).


def cells_key(city: str) -> str:
    """Session key of the city's cell picker (one per city: its options differ)."""
    return f"area_cells-{city}"


def current_area(ctx: AppContext, city: str) -> tuple[list[str], dict | None, str | None]:
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


def decorate_map(ctx: AppContext, city: str, m) -> None:
    """Add the draw tool and the active area's outline to the page's folium map."""
    add_draw_control(m)
    ids, polygon, _ = current_area(ctx, city)
    add_area_outline(m, ctx, ids, polygon)


def handle_map_event(city: str, out: dict | None) -> None:
    """The one reader of the map's events: a clicked cell becomes the selection, a newly drawn
    polygon the active area (each reruns the page once)."""
    ev = read_map_event(out)
    if ev.clicked_cell and ev.clicked_cell != st.session_state.get(LAST_CLICK):
        st.session_state[LAST_CLICK] = ev.clicked_cell
        st.session_state[SELECTED] = ev.clicked_cell
        st.rerun()
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


def _clear_area(city: str) -> None:
    st.session_state[AREA] = None
    st.session_state[cells_key(city)] = []


def _summary(ctx: AppContext, city: str) -> AreaSummary | None:
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


def area_panel(ctx: AppContext, city: str) -> None:
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
        c2.button("Clear area", key="area-clear", on_click=_clear_area, args=(city,), disabled=not active,
                  use_container_width=True)
        if not active:
            return
        try:
            s = _summary(ctx, city)
        except UserError as e:
            st.warning(plain(e))
            return
        how = "cells whose centre is inside the polygon" if s.selection == "polygon" else "picked cells"
        st.markdown(f"**{s.n_cells} cell{'s' if s.n_cells != 1 else ''}** · {s.area_km2:.2f} km² · {how}")
        st.table(area_indicator_table(s))
        for note in s.notes:
            st.caption(plain(note))
        st.markdown("**What the area looks like**")
        for p in s.description:
            g = f", grounding {p.grounding:.2f}" if p.grounding is not None else ""
            st.markdown(f"- {plain(p.sentence)} _(in {p.cells} of {s.n_cells} cells{g})_")
        st.caption(plain(s.description_note))
        st.markdown(f"**Most similar areas in other cities** ({s.window[0]}×{s.window[1]}-cell windows)")
        if not s.similar:
            st.caption(plain(s.similar_note))
        for m in s.similar:
            ind = " · ".join(f"{plain(iv.label)}: {plain(format_value(m.observed[iv.name], iv.unit))}"
                             for iv in s.indicators)
            st.markdown(f"**{plain(m.city)}** · similarity **{m.score:.3f}** · {len(m.cell_ids)} cells  \n{ind}")
            st.button(f"Go to {plain(m.centre)}", key=f"area-go-{m.city}-{m.anchor}", on_click=select_cell,
                      args=(m.centre, m.city))
