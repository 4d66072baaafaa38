"""Urban Insights: the Streamlit app. `streamlit run app.py`.

This file is the entry point and the Map page (the landing page); the other
pages live in `pages/` and are registered with `st.navigation`. Pages only lay
out widgets and call `urbanclip.services`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `pages._shared` is imported from the repo root
    sys.path.insert(0, str(HERE))

from pages._area import RETURNED, area_panel, current_area, decorate_map, handle_map_event  # noqa: E402
from pages._shared import CITY, LAST_CLICK, SEARCH, SELECTED, follow_deep_link, get_context, show_notes  # noqa: E402
from urbanclip.errors import UserError  # noqa: E402
from urbanclip.services.lookup import search  # noqa: E402
from urbanclip.services.export import FORMATS, export_cells, file_name  # noqa: E402
from urbanclip.services.mapview import available_layers, build_map, layer_data, legend_html  # noqa: E402
from urbanclip.services.profile import format_prediction, format_value, profile_cell  # noqa: E402


def select_cell(cell_id: str, city: str) -> None:
    """Callback: select a cell (and its city) e.g. from a similar-cell or search button."""
    st.session_state[CITY] = city
    st.session_state[SELECTED] = cell_id


def run_search(ctx) -> None:
    with st.form("search", border=False):
        c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
        query = c1.text_input("Search", placeholder="city, place, cell id, 'lat, lon' or a description "
                              "('dense residential blocks beside a river')", key="query")
        submitted = c2.form_submit_button("Search", use_container_width=True)
    if not submitted:
        return
    try:
        res = search(ctx, query, city=None)
    except UserError as e:
        st.warning(str(e))
        return
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


def grounding_badge(g) -> None:
    """Warn when a description fits its tile no better than random tiles of the city (faithfulness)."""
    if g is None:
        return
    if g.low:
        st.badge("Weakly grounded", icon=":material/warning:", color="orange")
        if g.weak_sentences:
            st.caption("Weak: " + " ".join(f"“{s}”" for s in g.weak_sentences[:3]))
    st.caption(g.message())


def side_panel(ctx, cell_id: str, generate: bool) -> None:
    with st.spinner("Describing the tile..." if generate and ctx.has_model else "Loading cell..."):
        try:
            prof = profile_cell(ctx, cell_id, generate=generate)
        except UserError as e:
            st.warning(str(e))
            return
    st.subheader(f"{prof.city} · cell {prof.row},{prof.col}")
    st.caption(f"`{prof.cell_id}` · lat {prof.lat:.5f}, lon {prof.lon:.5f}")
    left, right = st.columns([1, 1.3])
    with left:
        if prof.image_path is not None:
            st.image(str(prof.image_path), caption="Satellite tile", use_container_width=True)
        else:
            st.info("Imagery is unavailable for this cell.")
    with right:
        st.markdown("**Generated description (model)**")
        st.write(prof.generated if prof.generated else f"_{prof.generated_note}_")
        grounding_badge(prof.grounding)
        if prof.source_description:
            st.markdown(f"**Source description** (workspace `{prof.source_column}`)")
            st.write(prof.source_description.replace("\n", " "))
            grounding_badge(prof.source_grounding)
    rows = ["| Indicator | Predicted | Observed |", "|---|---|---|"]
    for iv in prof.indicators:
        rows.append(f"| {iv.label} | {format_prediction(iv)} | {format_value(iv.observed, iv.unit)} |")
    st.markdown("**Indicators**")
    st.markdown("\n".join(rows))
    if ctx.has_intervals:
        st.caption(f"Predictions carry their {ctx.interval_level:.0%} prediction interval (an ensemble of probe "
                   "heads, calibrated on held-out cells).")
    if not ctx.has_predictions:
        st.caption("Predicted values need a trained model with probe heads; showing observed values only.")
    st.markdown("**Most similar cells in other cities**")
    if not prof.similar:
        st.caption(prof.similar_note)
    for m in prof.similar:
        c1, c2 = st.columns([1, 2.5])
        if m.image_path is not None:
            c1.image(str(m.image_path), use_container_width=True)
        ind = " · ".join(f"{iv.label}: {format_value(m.observed[iv.name], iv.unit)}" for iv in prof.indicators)
        c2.markdown(f"**{m.city}** · similarity **{m.score:.3f}**  \n{ind}")
        c2.button(f"Go to {m.cell_id}", key=f"go-{m.cell_id}", on_click=select_cell, args=(m.cell_id, m.city))


def download_panel(ctx, city: str, selected: str | None) -> None:
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


def map_page() -> None:
    from streamlit_folium import st_folium

    st.title("Urban Insights")
    ctx = get_context()
    if ctx is None:
        return
    ws = ctx.workspace
    run_search(ctx)
    res = st.session_state.get(SEARCH)
    if res is not None and res.kind == "error":
        st.warning(res.message)

    if st.session_state.get(CITY) not in ws.cities:
        st.session_state[CITY] = ws.cities[0]
    layers = available_layers(ctx)
    if st.session_state.get("layer") not in layers:
        st.session_state["layer"] = "observed"
    if st.session_state.get("indicator") not in ws.indicator_names:
        st.session_state["indicator"] = "population" if "population" in ws.indicator_names else ws.indicator_names[0]
    with st.sidebar:
        st.caption(f"Workspace **{ws.name}** · `{ws.root}`")
        city = st.selectbox("City", ws.cities, key=CITY)
        layer_name = st.radio("Colour cells by", layers, key="layer")
        indicator = st.selectbox("Indicator", ws.indicator_names,
                                 format_func=lambda k: f"{ws.manifest.indicators[k].label} ({ws.manifest.indicators[k].unit})",
                                 key="indicator", disabled=layer_name in ("text match", "none"))
        online = st.checkbox("Online imagery (Esri World Imagery)", value=False,
                             help="Off by default: the map works offline with the workspace's own tiles.")
        generate = st.toggle("Generate descriptions", value=True, disabled=not ctx.has_model)
        show_notes(ctx)

    text_scores = res.scores if (res is not None and res.kind == "text") else None
    if layer_name == "text match" and text_scores is None:
        st.caption("Search with a description to colour cells by text match.")
    layer = layer_data(ctx, city, layer_name, indicator, text_scores)
    selected = st.session_state.get(SELECTED)
    if selected is not None and selected not in set(ws.cells["cell_id"]):
        selected = st.session_state[SELECTED] = None
    download_panel(ctx, city, selected)

    map_col, panel_col = st.columns([3, 2], gap="medium")
    with map_col:
        highlight = [h.cell_id for h in res.ranked[:5]] if (res is not None and res.kind == "text") else []
        m = build_map(ctx, city, layer, selected=selected, highlight=highlight, online_imagery=online)
        decorate_map(ctx, city, m)  # area: draw tool + outline of the active area
        if ws.city_cells(city)["image"].isna().all():
            st.info(f"Imagery is unavailable for {city}: the grid is shown without a basemap.")
        out = st_folium(m, key=f"map-{city}", height=620, use_container_width=True,
                        returned_objects=RETURNED)
        handle_map_event(city, out)  # a drawn polygon (no cell_id) becomes the area
        if layer is not None:
            st.markdown(legend_html(layer), unsafe_allow_html=True)
        click = ((out or {}).get("last_active_drawing") or {}).get("properties") or {}
        clicked = click.get("cell_id")
        if clicked and clicked != st.session_state.get(LAST_CLICK):
            st.session_state[LAST_CLICK] = clicked
            st.session_state[SELECTED] = clicked
            st.rerun()
    with panel_col:
        if res is not None and res.kind == "text" and res.ranked:
            with st.expander(f"Search results ({'semantic' if res.method == 'semantic' else 'keyword'})", expanded=True):
                st.caption(res.message)
                for h in res.ranked[:5]:
                    st.button(f"{h.score:.3f} · {h.cell_id}", key=f"hit-{h.cell_id}", on_click=select_cell,
                              args=(h.cell_id, h.city))
        area_panel(ctx, city)
        if selected is None:
            st.info("Click a cell on the map (or search) to see what the model sees there, its indicators "
                    "and the most similar cells in other cities.")
        else:
            side_panel(ctx, selected, generate)


st.set_page_config(page_title="Urban Insights", page_icon=str(HERE / "assets" / "favicon.png"), layout="wide")
nav = st.navigation([
    st.Page(map_page, title="Map", icon=":material/map:", default=True),
    st.Page(str(HERE / "pages" / "compare.py"), title="Compare", icon=":material/compare:"),
    st.Page(str(HERE / "pages" / "train.py"), title="Train", icon=":material/model_training:"),
])
follow_deep_link()
nav.run()
