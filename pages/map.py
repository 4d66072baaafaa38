"""Map page: a city's grid over its imagery; click a cell (or search, or draw an area) to read
what the model sees there. Widgets only: the panels live in `urbanclip.ui`."""

from __future__ import annotations

import streamlit as st
from streamlit_folium import st_folium

from urbanclip import ui
from urbanclip.services.mapview import available_layers, build_map, default_indicator, layer_data, legend_html

st.title("Urban Insights")
ctx = ui.get_context()
if ctx is None:
    st.stop()
ws = ctx.workspace
ui.search_form(ctx)
res = st.session_state.get(ui.SEARCH)
if res is not None and res.kind == "error":
    st.warning(res.message)

if st.session_state.get(ui.CITY) not in ws.cities:
    st.session_state[ui.CITY] = ws.cities[0]
layers = available_layers(ctx)
if st.session_state.get("layer") not in layers:
    st.session_state["layer"] = "observed" if "observed" in layers else "none"
if st.session_state.get("indicator") not in ws.indicator_names:
    st.session_state["indicator"] = default_indicator(ws)  # None: a workspace without indicators
with st.sidebar:
    city = st.selectbox("City", ws.cities, key=ui.CITY)
    layer_name = st.radio("Colour cells by", layers, key="layer")
    indicator = st.selectbox("Indicator", ws.indicator_names,
                             format_func=lambda k: f"{ws.manifest.indicators[k].label} ({ws.manifest.indicators[k].unit})",
                             key="indicator", disabled=layer_name in ("text match", "none") or not ws.indicator_names)
    online = st.checkbox("Online imagery (Esri World Imagery)", value=False,
                         help="Off by default: the map works offline with the workspace's own tiles.")
    generate = st.toggle("Generate descriptions", value=True, disabled=not ctx.has_model)
    st.checkbox("Online place search (OpenStreetMap)", value=False, key=ui.ALLOW_NETWORK,
                help="Off by default: city names come from the offline gazetteer; on, other place names are "
                     "looked up with OpenStreetMap Nominatim (the query leaves this machine).")
    ui.show_notes(ctx)

text_scores = res.scores if (res is not None and res.kind == "text") else None
if layer_name == "text match" and text_scores is None:
    st.caption("Search with a description to colour cells by text match.")
layer = layer_data(ctx, city, layer_name, indicator, text_scores)
selected = st.session_state.get(ui.SELECTED)
if selected is not None and selected not in set(ws.cells["cell_id"]):
    selected = st.session_state[ui.SELECTED] = None
ui.download_panel(ctx, city, selected)

map_col, panel_col = st.columns([3, 2], gap="medium")
with map_col:
    highlight = [h.cell_id for h in res.ranked[:5]] if (res is not None and res.kind == "text") else []
    m = build_map(ctx, city, layer, selected=selected, highlight=highlight, online_imagery=online)
    ui.decorate_map(ctx, city, m)  # area: draw tool + outline of the active area
    if ws.city_cells(city)["image"].isna().all():
        st.info(f"Imagery is unavailable for {city}: the grid is shown without a basemap.")
    out = st_folium(m, key=f"map-{city}", height=620, use_container_width=True, returned_objects=ui.RETURNED)
    ui.handle_map_event(city, out)
    if layer is not None:
        st.markdown(legend_html(layer), unsafe_allow_html=True)
with panel_col:
    ui.search_results(res)
    ui.area_panel(ctx, city)
    if selected is None:
        st.info("Click a cell on the map (or search) to see what the model sees there, its indicators "
                "and the most similar cells in other cities.")
    else:
        ui.cell_panel(ctx, selected, generate)
