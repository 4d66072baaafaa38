"""Compare page: two cities side by side on one colour scale, their totals and distributions,
and the cells (or areas) of one that look like a cell (or area) of the other."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from urbanclip import ui
from urbanclip.services.cities import city_totals, distribution
from urbanclip.services.mapview import available_layers, city_view, layer_data, legend_html, same_scale

ui.ensure_navigation()
st.title("Compare cities")
ctx = ui.get_context()
if ctx is None:
    st.stop()
ws = ctx.workspace
ui.show_notes(ctx)
if len(ws.cities) < 2:
    st.info("This workspace has a single city; comparison needs at least two.")
    st.stop()

selected = st.session_state.get(ui.SELECTED)
default_a = ws.cell(selected)["city"] if selected and ui.is_cell(ctx, selected) else ws.cities[0]
c1, c2, c3, c4 = st.columns(4)
city_a = c1.selectbox("City A", ws.cities, index=ws.cities.index(default_a), key="cmp_a")
city_b = c2.selectbox("City B", [c for c in ws.cities if c != city_a], key="cmp_b")
ind = c3.selectbox("Indicator", ws.indicator_names, key="cmp_ind",
                   format_func=lambda k: f"{ws.manifest.indicators[k].label} ({ws.manifest.indicators[k].unit})")
source = c4.radio("Colour by", [x for x in available_layers(ctx) if x in ("observed", "predicted")],
                  horizontal=True, key="cmp_layer")

# the two cities on one colour scale; a click on A picks the cell to match in B
sel_a = selected if selected and ui.is_cell(ctx, selected) and ws.cell(selected)["city"] == city_a else None
matches = ui.matches_in(ctx, sel_a, city_b)
layer_a, layer_b = same_scale(layer_data(ctx, city_a, source, ind), layer_data(ctx, city_b, source, ind))
left, right = st.columns(2)
for col, city, layer, sel, hits, key, n in ((left, city_a, layer_a, sel_a, [], "cmp-map-a", 1),
                                             (right, city_b, layer_b, None, [m.cell_id for m in matches], "cmp-map-b", 2)):
    with col:
        st.markdown(f"**{city}**" + (" · click a cell to find its look-alikes in " + city_b if key.endswith("a") else ""))
        ui.city_map(ctx, city, layer, sel, hits, False, key=key, interactive=key.endswith("a"), draw=False,
                    view=city_view(ctx, city, seq=ws.cities.index(city) * 2 + n), height=420, legend=False)
if layer_a is not None:
    st.markdown(legend_html(layer_a), unsafe_allow_html=True)

st.subheader("City totals")
st.table(city_totals(ctx, [city_a, city_b]))
dist = distribution(ctx, [city_a, city_b], ind)
if not dist.empty:
    fig = px.bar(dist, x="bin", y="share", color="city", barmode="group",
                 labels={"bin": f"{ws.manifest.indicators[ind].label} per cell ({ws.manifest.indicators[ind].unit})",
                         "share": "share of the city's cells (%)"},
                 title=f"Distribution of {ws.manifest.indicators[ind].label.lower()} over cells")
    st.plotly_chart(fig, width="stretch")

st.subheader(f"Look-alikes in {city_b}")
ui.cross_city_matches(ctx, city_a, city_b, sel_a, matches)

ui.best_match_scatter(ctx, city_a, city_b, ind)
ui.transfer_reports()
