"""Map page: a city's grid over its imagery; click a cell (or search, or draw an area) to read
what the model sees there. Widgets only: the panels live in `urbanclip.ui`."""

from __future__ import annotations

import streamlit as st

from urbanclip import ui
from urbanclip.services.mapview import available_layers, default_indicator, layer_data

st.title("Urban Insights")
ctx = ui.get_context()
if ctx is None:
    st.stop()
ws = ctx.workspace
ui.search_form(ctx)
res = st.session_state.get(ui.SEARCH)

if st.session_state.get(ui.CITY) not in ws.cities:
    st.session_state[ui.CITY] = ws.cities[0]
layers = available_layers(ctx)
if st.session_state.get(ui.LAYER) not in layers:
    st.session_state[ui.LAYER] = "observed" if "observed" in layers else "none"
if st.session_state.get("indicator") not in ws.indicator_names:
    st.session_state["indicator"] = default_indicator(ws)  # None: a workspace without indicators
with st.sidebar:
    city = st.selectbox("City", ws.cities, key=ui.CITY)
    layer_name = st.radio("Colour cells by", layers, key=ui.LAYER)
    indicator = st.selectbox("Indicator", ws.indicator_names,
                             format_func=lambda k: f"{ws.manifest.indicators[k].label} ({ws.manifest.indicators[k].unit})",
                             key="indicator", disabled=layer_name in ("text match", "none") or not ws.indicator_names)
    online = st.checkbox("Online imagery (Esri World Imagery)", value=False,
                         help="Off by default: the map works offline with the workspace's own tiles. When the "
                              "provider cannot be reached, the map says so and keeps the workspace's imagery.")
    st.checkbox("Online place search (OpenStreetMap)", value=False, key=ui.ALLOW_NETWORK,
                help="Off by default: city names come from the offline gazetteer; on, other place names are "
                     "looked up with OpenStreetMap Nominatim (the query leaves this machine).")
    generate = st.toggle("Generate descriptions", value=True, disabled=not ctx.has_model)
    ui.show_notes(ctx)

text = res if (res is not None and res.kind == "text") else None
layer = layer_data(ctx, city, layer_name, indicator, text.scores if text else None)
if layer_name == "text match" and text is None:
    st.caption("Search with a description to colour cells by text match.")
ui.download_panel(ctx, city)
ui.map_and_panel(ctx, city, layer_name, layer, res, online, generate)
