"""Streamlit widget helpers shared by the pages: the cached context, session keys, navigation,
the map component, and the panels the pages are made of (search, cell, area, downloads, matches).

The one module of the package that imports Streamlit (tests/test_architecture.py checks
it). Everything here lays out widgets and calls `urbanclip.services`; numbers, tables and
text are computed there, so they are testable without a browser.
"""

from __future__ import annotations

import base64
import functools
import gc
import html
import json
import re
import threading
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from urbanclip.data.workspace import split_sentences
from urbanclip.errors import UserError
from urbanclip.services.area import (
    AreaSummary,
    area_from_cells,
    area_from_polygon,
    area_indicator_table,
    cells_by_id,
    cells_in_polygon,
)
from urbanclip.services.cities import best_matches, find_transfer_reports, load_transfer, matched_pairs
from urbanclip.services.context import (
    AppContext,
    active_model_file,
    active_model_path,
    clear_active_model,
    freeze_long_lived,
    load_context,
    use_interactive_threads,
    workspace_dir,
)
from urbanclip.services.export import FORMATS, export_cells, file_name
from urbanclip.services.lookup import SearchResult, search
from urbanclip.services.mapview import (
    COMPONENT_DIR,
    MAP_HEIGHT,
    LayerData,
    city_grid,
    city_mosaic,
    city_position,
    city_view,
    jump_view,
    legend_html,
    map_args,
    map_dir,
    map_event,
    mosaic_note,
)
from urbanclip.services.profile import (
    describe_cell,
    format_value,
    indicator_table,
    profile_cell,
    similar_cells,
    similarity_basis,
    tile_jpeg,
)

# session_state keys
CITY = "city"
SELECTED = "selected_cell"
SEARCH = "search_result"
DEEP_LINK = "_deep_link_page"
AREA = "area"
SUMMARY = "_area_summary"
LAYER = "layer"
MAP = "map"                       # the Map page's map component: its value is the last event (click, drawing)
VIEW = "_map_view"                # the view command the map was last sent ({"city", "seq", "bounds" | "center"+"zoom"})
JUMP = "_map_jump"                # a cell to move the map to on the next run (set by callbacks)
MOVES = "_map_moves"              # how many view commands were sent (their sequence number)
LAYER_BEFORE_TEXT = "_layer_before_text"
ALLOW_NETWORK = "allow_online_search"


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
                    gc.unfreeze()  # a context replaced (another model) may be collected
                    slot["ctx"] = load_context(root, progress=lambda m: box.info(m))
                    use_interactive_threads()  # after the batch work of the first start
                    freeze_long_lived()        # keep Streamlit's per-run full GC off the context
            ctx = slot["ctx"]
    except UserError as e:
        box.empty()
        st.error(f"Cannot open the workspace: {plain(e)}")
        st.info("Build the demo with `python -m urbanclip demo`, or point the app at a workspace with "
                "`URBANCLIP_WORKSPACE=/path/to/workspace streamlit run app.py`.")
        return None
    box.empty()
    return ctx


def shared_sidebar(pages: list | None = None) -> None:
    """What every page shows in the sidebar: the page menu and which workspace the app serves.

    The menu is drawn here, not by Streamlit (`showSidebarNavigation = false` in
    .streamlit/config.toml), so a fresh server never lists the files of pages/."""
    with st.sidebar:
        for page in pages or []:
            st.page_link(page)
        st.caption(f"Workspace {plain(workspace_dir())}")


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


def is_cell(ctx: AppContext, cell_id: str) -> bool:
    try:
        ctx.workspace.index_of(cell_id)
    except UserError:
        return False
    return True


def select_cell(cell_id: str, city: str) -> None:
    """Callback: select a cell (and its city) e.g. from a similar-cell or search button, and move the map there."""
    st.session_state[CITY] = city
    st.session_state[SELECTED] = cell_id
    st.session_state[JUMP] = cell_id


# ---------------------------------------------------------------------------------
# search


def search_form(ctx: AppContext) -> None:
    """The search box; a hit selects its city / cell and moves the map, a text query colours the map by match."""
    with st.form("search", border=False):
        c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
        query = c1.text_input("Search", placeholder="city, place, cell id, 'lat, lon' or a description "
                              "('dense residential blocks beside a river')", key="query")
        submitted = c2.form_submit_button("Search", width="stretch")
    if not submitted:
        return
    try:
        with st.spinner("Searching (the first search over a workspace's descriptions embeds them once)..."):
            res = search(ctx, query, city=None, allow_network=bool(st.session_state.get(ALLOW_NETWORK, False)))
    except UserError as e:
        res = SearchResult("error", str(e))
    res.message = plain(res.message)  # it quotes the query: shown as typed wherever the page puts it
    apply_search(res)


def apply_search(res: SearchResult) -> None:
    """Make a search result the page's state (before the widgets it changes are drawn)."""
    st.session_state[SEARCH] = res
    if res.kind != "text":
        _drop_text_layer()
    if res.kind == "error":
        return
    if res.city:
        st.session_state[CITY] = res.city
    if res.kind == "city":
        st.session_state[VIEW] = None  # fit the whole city again
    if res.kind in ("cell", "place", "latlon"):
        st.session_state[SELECTED] = st.session_state[JUMP] = res.cell_id
    if res.kind == "text":
        if st.session_state.get(LAYER) != "text match":
            st.session_state[LAYER_BEFORE_TEXT] = st.session_state.get(LAYER, "observed")
        st.session_state[LAYER] = "text match"
        if res.cell_id:
            st.session_state[SELECTED] = st.session_state[JUMP] = res.cell_id


def _drop_text_layer() -> None:
    if st.session_state.get(LAYER) == "text match":
        st.session_state[LAYER] = st.session_state.pop(LAYER_BEFORE_TEXT, "observed")


def clear_search() -> None:
    """Callback: forget the search result and its text-match layer."""
    st.session_state[SEARCH] = None
    _drop_text_layer()


def search_status(res: SearchResult | None) -> None:
    """What the last search found (or why it found nothing), with a button to clear it."""
    if res is None:
        return
    c1, c2 = st.columns([8, 1], vertical_alignment="center")
    if res.kind == "error":
        c1.warning(res.message)
    else:
        c1.success(f"**{res.found}** · {res.message}", icon=":material/search:")
    c2.button("Clear", key="search-clear", on_click=clear_search, width="stretch")


def search_results(res) -> None:
    """The ranked hits of a text search, each a button that selects the cell and moves the map to it."""
    if res is None or res.kind != "text" or not res.ranked:
        return
    label = {"semantic": "semantic", "descriptions": "descriptions"}.get(res.method, "keyword")
    with st.expander(f"Search results ({label})", expanded=True):
        for h in res.ranked[:5]:
            st.button(f"{h.score:.3f} · {plain(h.cell_id)}", key=f"hit-{h.cell_id}", on_click=select_cell,
                      args=(h.cell_id, h.city))


# ---------------------------------------------------------------------------------
# the map: our Leaflet component (assets/map/) drawing files served from the workspace cache


def _component(name: str, path: Path):
    """Declare a component folder (Streamlit serves its files at /component/<name>/<file>);
    None without a Streamlit runtime (bare AppTest runs), where nothing is served."""
    try:
        return components.declare_component(name, path=str(path))
    except Exception:
        return None


def _data_url_prefix(ctx: AppContext) -> str:
    """URL prefix of the map's data files (mapview.map_dir), served as a component folder
    (it is never rendered: the route alone lets the browser fetch the files)."""
    comp = _component("mapdata", map_dir(ctx))
    name = comp.name if comp is not None else f"{__name__}.mapdata"
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return (f"/{base}" if base else "") + f"/component/{name}/"


def map_view(ctx: AppContext, city: str) -> dict:
    """The view command to send: a new one (numbered) only when the app means to move the map
    (another city, a jump to a cell, a city search), so zoom and pan survive clicks and layer switches."""
    view = st.session_state.get(VIEW)
    jump = st.session_state.pop(JUMP, None)
    moves = st.session_state.get(MOVES, 0)
    if jump is not None and city_position(ctx, city, jump) is not None:
        moves += 1
        view = jump_view(ctx, jump, moves)
    elif not view or view.get("city") != city:
        moves += 1
        view = city_view(ctx, city, moves)
    st.session_state[MOVES] = moves
    st.session_state[VIEW] = view
    return view


def _map_event(ctx: AppContext, key: str, city: str, on_draw: bool) -> None:
    """on_change of a map: a clicked cell becomes the selection, a drawn polygon the active area."""
    ev = map_event(ctx, city, st.session_state.get(key))
    if ev is None:
        return
    if ev.cell_id is not None:
        st.session_state[SELECTED] = ev.cell_id
    elif ev.polygon is not None and on_draw:
        st.session_state[AREA] = {"kind": "polygon", "city": city, "geometry": ev.polygon}
        st.session_state[cells_key(city)] = []


def city_map(ctx: AppContext, city: str, layer: LayerData | None, selected: str | None,
             matches: list[str], online: bool, key: str = MAP, interactive: bool = True, draw: bool = True,
             view: dict | None = None, height: int = MAP_HEIGHT, legend: bool = True) -> None:
    """The city's grid over its imagery (the map component), then its notes and legend."""
    ids, polygon, _ = current_area(ctx, city) if draw else ([], None, None)
    args = map_args(ctx, city, layer, _data_url_prefix(ctx), view or map_view(ctx, city), selected=selected,
                    matches=matches, area_ids=ids, area_polygon=polygon, online=online, interactive=interactive,
                    draw=draw, height=height)
    comp = _component("urbanmap", COMPONENT_DIR)
    if comp is not None:
        comp(**args, key=key, default=None, on_change=functools.partial(_map_event, ctx, key, city, draw))
    else:
        st.caption(f"(map of {city}: {len(city_grid(ctx, city).cell_ids):,} cells)")
    map_notes(ctx, city, layer if legend else None)


def map_notes(ctx: AppContext, city: str, layer: LayerData | None) -> None:
    mosaic = city_mosaic(ctx, city)
    if mosaic is None:
        st.info(f"Imagery is unavailable for {city}: the grid is shown without a basemap.")
    note = mosaic_note(mosaic, city)
    if note:
        st.warning(note, icon=":material/broken_image:")
    if layer is not None:
        st.markdown(legend_html(layer), unsafe_allow_html=True)


# ---------------------------------------------------------------------------------
# the clicked cell


def grounding_text(g) -> str:
    """Markdown to append to a description: a warning when it fits its tile no better than random
    tiles of the city (faithfulness), and how well it fits ('' when not measurable)."""
    if g is None:
        return ""
    parts = []
    if g.low:
        parts.append(":orange-badge[:material/warning: Weakly grounded]")
        if g.weak_sentences:
            parts.append("Weak: " + " ".join(f"“{plain(s)}”" for s in g.weak_sentences[:3]))
    parts.append(plain(g.message()))
    return "\n\n" + "  \n".join(f":gray[{p}]" if not p.startswith(":orange") else p for p in parts)


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def look_alikes(ctx: AppContext, prof) -> None:
    """The most similar cells in other cities: one block (thumbnails inline) and a row of Go-to buttons."""
    if not prof.similar:
        st.markdown(f"**Most similar cells in other cities**  \n:gray[{plain(prof.similar_note)}]")
        return
    rows = ["<p><b>Most similar cells in other cities</b><br>"
            f"<small style='color:gray'>{html.escape(similarity_basis(ctx))}</small></p>"]
    for m in prof.similar:
        thumb = tile_jpeg(ctx, m.cell_id, size=72, quality=75) if m.image_path is not None else None
        img = (f"<img src='{_data_uri(thumb)}' width='72' height='72' style='border-radius:4px'>" if thumb else "")
        ind = " · ".join(f"{iv.label}: {format_value(m.observed[iv.name], iv.unit)}" for iv in prof.indicators)
        rows.append(f"<div style='display:flex;gap:0.6rem;align-items:center;margin-bottom:0.4rem'>{img}"
                    f"<div><b>{html.escape(m.city)}</b> · similarity <b>{m.score:.3f}</b> · "
                    f"<code>{html.escape(m.cell_id)}</code><br><small>{html.escape(ind)}</small></div></div>")
    st.markdown("".join(rows), unsafe_allow_html=True)
    with st.container(horizontal=True):
        for m in prof.similar:
            st.button(f"Go to {m.cell_id}", key=f"go-{m.cell_id}", on_click=select_cell, args=(m.cell_id, m.city))


def cell_panel(ctx: AppContext, cell_id: str, generate: bool) -> None:
    """What the model sees in one cell: tile, descriptions, indicators, look-alikes in other cities.

    Everything read from caches is drawn first; the generated description (one model pass)
    fills its place last, so the panel answers at once. Few elements: each one is a message
    the browser waits for."""
    try:
        prof = profile_cell(ctx, cell_id, generate=False)
    except UserError as e:
        st.warning(plain(e))
        return
    st.markdown(f"### {plain(prof.city)} · cell {prof.row},{prof.col}\n"
                f":gray[{plain(prof.cell_id)} · lat {prof.lat:.5f}, lon {prof.lon:.5f}]")
    left, right = st.columns([1, 1.3])
    with left:
        tile = tile_jpeg(ctx, cell_id) if prof.image_path is not None else None
        if tile is not None:
            st.image(tile, caption="Satellite tile", width="stretch")
        elif prof.image_problem or prof.image_path is not None:
            st.badge("Unreadable tile", icon=":material/broken_image:", color="red")
            st.warning(plain(prof.image_problem or f"The tile image {prof.image_path.name} cannot be read; "
                                                   "replace or re-import it."))
        else:
            st.info("Imagery is unavailable for this cell.")
    with right:
        generated = st.empty()
        generated.markdown("**Generated description (model)**  \n"
                           + (":gray[Describing the tile...]" if generate and ctx.has_model and tile is not None else ""))
        if prof.source_description:
            st.markdown(f"**Source description** (workspace {plain(prof.source_column)})  \n"
                        + plain(prof.source_description) + grounding_text(prof.source_grounding))
        if prof.grounding_note:
            st.caption(plain(prof.grounding_note))
    st.markdown("**Indicators**")
    notes = []
    if prof.indicator_note:
        notes.append(prof.indicator_note)
    else:
        st.table(indicator_table(prof))
    if prof.interval_caption:
        notes.append(prof.interval_caption)
    if not ctx.has_predictions and not ctx.prediction_notes and prof.indicators:
        notes.append("Predicted values need a trained model with probe heads; showing observed values only.")
    if notes:
        st.caption(" ".join(notes))
    look_alikes(ctx, prof)
    selection_download(ctx, prof.city, [cell_id], "Download this cell", key="download_cell")
    if not generate and ctx.has_model:
        body = "_Generation is switched off._"
    else:
        d = describe_cell(ctx, cell_id)
        body = (plain(d.text) if d.text else f"_{plain(d.note)}_") + grounding_text(d.grounding)
    generated.markdown("**Generated description (model)**  \n" + body)


def download_panel(ctx: AppContext, city: str) -> None:
    """Sidebar downloads: the whole city, in the format chosen here (the cell and area panels
    offer their own selection in the same format)."""
    with st.sidebar.expander("Download", icon=":material/download:"):
        fmt = st.radio("Format", list(FORMATS), horizontal=True, key="export_format")
        st.download_button(f"{city} ({len(city_grid(ctx, city).cell_ids):,} cells)",
                           data=lambda: export_cells(ctx, fmt, city=city), file_name=file_name(ctx, fmt, city),
                           mime=FORMATS[fmt][1], key="download_city", on_click="ignore", width="stretch")
        st.caption("Predictions, intervals, observed values and descriptions per cell; opens in geopandas / QGIS. "
                   "The cell and area panels download their own selection.")


def selection_download(ctx: AppContext, city: str, cell_ids: list[str], label: str, key: str) -> None:
    """A download of some cells, in the format chosen in the sidebar."""
    fmt = st.session_state.get("export_format") or next(iter(FORMATS))
    st.download_button(label, data=lambda: export_cells(ctx, fmt, cell_ids=cell_ids),
                       file_name=file_name(ctx, fmt, city, "selection"), mime=FORMATS[fmt][1], key=key,
                       on_click="ignore", icon=":material/download:")


@st.fragment
def map_and_panel(ctx: AppContext, city: str, layer_name: str, layer: LayerData | None, res: SearchResult | None,
                  online: bool, generate: bool) -> None:
    """The map and the side panel: a fragment, so a click on the map (or a Go-to in the panel)
    reruns only this part of the page. Its arguments come from the last full run; when a
    callback changed what they were made from (a Go-to into another city, a cleared search),
    the whole page reruns."""
    if (st.session_state.get(CITY) != city or st.session_state.get(LAYER) != layer_name
            or st.session_state.get(SEARCH) is not res):
        st.rerun(scope="app")
    selected = st.session_state.get(SELECTED)
    if selected is not None and not is_cell(ctx, selected):
        selected = st.session_state[SELECTED] = None
    text = res if (res is not None and res.kind == "text") else None
    map_col, panel_col = st.columns([3, 2], gap="medium")
    with map_col:
        city_map(ctx, city, layer, selected, [h.cell_id for h in text.ranked[:5]] if text else [], online)
    with panel_col:
        search_status(res)
        search_results(res)
        area_panel(ctx, city)
        if selected is None:
            st.info("Click a cell on the map (or search) to see what the model sees there, its indicators "
                    "and the most similar cells in other cities.")
        else:
            cell_panel(ctx, selected, generate)


# ---------------------------------------------------------------------------------
# areas: a draw tool (the map's drawing mode), picked cells, and the aggregate panel
#
# The active area lives in st.session_state[AREA] ({"kind": "polygon" | "cells", "city",
# "geometry" | "cell_ids"}), so it survives reruns and the switch back to the grid map,
# which outlines it.


def cells_key(city: str) -> str:
    """Session key of the city's picked cells (one per city)."""
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


def _cells_changed(city: str) -> None:
    ids = list(st.session_state.get(cells_key(city)) or [])
    st.session_state[AREA] = {"kind": "cells", "city": city, "cell_ids": ids} if ids else None


def _add_selected(city: str) -> None:
    sel = st.session_state.get(SELECTED)
    ids = list(st.session_state.get(cells_key(city)) or [])
    if sel and sel not in ids:
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
    """The area expander: picked cells, buttons, and the aggregate of the active area."""
    area = st.session_state.get(AREA)
    active = bool(area) and area.get("city") == city
    sel = st.session_state.get(SELECTED)
    in_city = sel is not None and city_position(ctx, city, sel) is not None
    with st.expander("Area: draw a polygon or pick cells", expanded=active):
        st.caption("Draw a polygon or a rectangle with the tools on the map's left (a cell counts when its "
                   "centre is inside), or click cells on the map and add them here one by one.")
        picked = list(st.session_state.get(cells_key(city)) or [])
        if picked:  # options: the picked cells and the selected one (a city can have 10^5 cells; never list them all)
            st.multiselect("Cells of the area", picked + ([sel] if in_city and sel not in picked else []),
                           key=cells_key(city), on_change=_cells_changed, args=(city,))
        with st.container(horizontal=True):
            st.button("Add the selected cell", key="area-add", on_click=_add_selected, args=(city,),
                      disabled=not in_city or sel in picked)
            st.button("Clear area", key="area-clear", on_click=_clear_area, args=(city,), disabled=not active)
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
        selection_download(ctx, city, list(s.cell_ids), f"Download the area ({s.n_cells} cells)", key="download_area")
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


# ---------------------------------------------------------------------------------
# the Compare page's matches


def matches_in(ctx: AppContext, cell_id: str | None, city: str, k: int = 3) -> list:
    """The k cells of `city` most like `cell_id` (none without a cell or embeddings)."""
    if cell_id is None or ctx.vectors is None:
        return []
    return similar_cells(ctx, cell_id, k=k, only_city=city)


def cell_card(ctx: AppContext, col, cell_id: str, title: str) -> None:
    """A cell as a card: its tile, the start of its description, its indicators."""
    ws = ctx.workspace
    cell = ws.cell(cell_id)
    col.markdown(f"**{plain(title)}**  \n{plain(cell_id)}")
    tile = tile_jpeg(ctx, cell_id)
    if tile is not None:
        col.image(tile, width="stretch")
    else:
        col.info("Imagery unavailable" if ws.image_path(cell_id) is None else "The tile image cannot be read")
    col.caption(plain(" ".join(split_sentences(cell[ws.text_column()])[:3])) or "no description")
    col.markdown("  \n".join(f"{plain(s.label)}: {plain(format_value(float(cell[k]), s.unit))}"
                             for k, s in ws.manifest.indicators.items()))


def cross_city_matches(ctx: AppContext, city_a: str, city_b: str, cell_a: str | None, matches: list) -> None:
    """The look-alikes in city B of the active area in city A (drawn on the Map page), else of the selected cell."""
    area = st.session_state.get(AREA)
    if ctx.vectors is None:
        st.info("Matching cells across cities needs image embeddings from a trained model. "
                "Train one on the Train page and make it active.")
        return
    if area and area.get("city") == city_a:
        try:
            s = _summary(ctx, city_a)
        except UserError as e:
            st.warning(str(e))
            return
        windows = [m for m in s.similar if m.city == city_b]
        st.caption(f"The area drawn on the Map page: {s.n_cells} cells of {city_a} "
                   f"({s.window[0]}×{s.window[1]}-cell windows compared).")
        if not windows:
            st.info(f"No window of {city_b} is among the most similar areas; see the Map page's area panel.")
        for m in windows:
            ind = " · ".join(f"{plain(iv.label)}: {plain(format_value(m.observed[iv.name], iv.unit))}"
                             for iv in s.indicators)
            st.markdown(f"**{plain(m.city)}** · similarity **{m.score:.3f}** · {len(m.cell_ids)} cells around "
                        f"{plain(m.centre)}"
                        f"  \n{ind}")
        return
    if cell_a is None:
        st.info(f"Click a cell on the map of {city_a} (or select one on the Map page, or draw an area there) "
                f"to see the cells of {city_b} that look most like it.")
        return
    cols = st.columns(1 + max(1, len(matches)))
    cell_card(ctx, cols[0], cell_a, city_a)
    for col, m in zip(cols[1:], matches):
        cell_card(ctx, col, m.cell_id, f"{city_b} · similarity {m.score:.3f}")
    if not matches:
        cols[1].info(f"No embedded cells in {city_b}.")


def best_match_scatter(ctx: AppContext, city_a: str, city_b: str, indicator: str) -> None:
    """Every cell of A against its best match in B for one indicator, with the correlation when it is defined."""
    import plotly.express as px

    spec = ctx.workspace.manifest.indicators[indicator]
    with st.expander(f"Every cell of {city_a} and its best match in {city_b}"):
        try:
            df = best_matches(ctx, city_a, city_b)
        except UserError as e:
            st.info(str(e))
            return
        pairs = matched_pairs(df, indicator)
        fig = px.scatter(pairs.frame, x="a_raw", y="b_raw", color="score", hover_data=["cell_a", "cell_b"],
                         log_x=True, log_y=True,
                         labels={"a_raw": f"{city_a} ({spec.unit}, log axis)", "b_raw": f"best match in {city_b} ({spec.unit})"},
                         title=f"{spec.label} of matched pairs ({pairs.correlation_text}, on log1p values; "
                               "cells at 0 are off the log axes)")
        st.plotly_chart(fig, width="stretch")
        if pairs.correlation is None:
            st.caption("The correlation is undefined here: fewer than 3 pairs have both values known, or one "
                       "side is constant.")
        st.dataframe(df.head(50), width="stretch", hide_index=True)


def transfer_reports() -> None:
    """The transfer heatmaps (train on one city, test on another) of the newest reports."""
    import plotly.express as px

    st.subheader("Transfer (train on one city, test on another)")
    reports = find_transfer_reports()
    if not reports:
        st.caption("No transfer report yet: run a comparison on the Train page; its transfer*.json/csv appears here.")
        return
    rep = st.selectbox("Report", reports, format_func=lambda p: str(p.relative_to(p.parents[1])), key="cmp_rep")
    try:
        mats = load_transfer(rep)
    except UserError as e:
        st.warning(str(e))
        mats = {}
    cols = st.columns(max(1, len(mats)))
    for col, (name, mat) in zip(cols, mats.items()):
        fig = px.imshow(mat.astype(float), text_auto=".2f", color_continuous_scale="Viridis",
                        labels={"x": "test city", "y": "train city", "color": "R²"}, title=f"{name} R²")
        col.plotly_chart(fig, width="stretch")
