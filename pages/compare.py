"""Compare page: best cross-city matches, indicator scatter, transfer heatmap."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import plotly.express as px
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pages._shared import SELECTED, ensure_navigation, get_context, show_notes  # noqa: E402
from urbanclip.errors import UserError  # noqa: E402
from urbanclip.services.cities import best_matches, find_transfer_reports, load_transfer  # noqa: E402
from urbanclip.services.profile import format_value, similar_cells  # noqa: E402
from urbanclip.data.workspace import split_sentences  # noqa: E402

ensure_navigation()
st.title("Compare cities")
ctx = get_context()
if ctx is not None:
    ws = ctx.workspace
    show_notes(ctx)
    if len(ws.cities) < 2:
        st.info("This workspace has a single city; comparison needs at least two.")
        st.stop()
    selected = st.session_state.get(SELECTED)
    default_a = ws.cell(selected)["city"] if selected in set(ws.cells["cell_id"]) else ws.cities[0]
    c1, c2, c3 = st.columns(3)
    city_a = c1.selectbox("City A", ws.cities, index=ws.cities.index(default_a), key="cmp_a")
    others = [c for c in ws.cities if c != city_a]
    city_b = c2.selectbox("City B", others, key="cmp_b")
    scope = c3.radio("Compare", ["selected cell", "all cells"], horizontal=True, key="cmp_scope")
    text_col = ws.text_column()

    def card(col, cell_id: str, title: str) -> None:
        cell = ws.cell(cell_id)
        col.markdown(f"**{title}** · `{cell_id}`")
        path = ws.image_path(cell_id)
        if path is not None:
            col.image(str(path), use_container_width=True)
        else:
            col.info("Imagery unavailable")
        col.caption(" ".join(split_sentences(cell[text_col])[:3]) or "no description")
        col.markdown("  \n".join(f"{s.label}: {format_value(float(cell[k]), s.unit)}"
                                 for k, s in ws.manifest.indicators.items()))

    if ctx.vectors is None:
        st.info("Matching cells across cities needs image embeddings from a trained model. "
                "Train one on the Train page and make it active.")
    elif scope == "selected cell":
        in_a = list(ws.city_cells(city_a)["cell_id"])
        start = in_a.index(selected) if selected in in_a else 0
        cell_id = st.selectbox(f"Cell in {city_a}", in_a, index=start, key="cmp_cell")
        matches = similar_cells(ctx, cell_id, k=3, only_city=city_b)
        cols = st.columns(1 + max(1, len(matches)))
        card(cols[0], cell_id, city_a)
        for col, m in zip(cols[1:], matches):
            card(col, m.cell_id, f"{city_b} · similarity {m.score:.3f}")
        if not matches:
            cols[1].info(f"No embedded cells in {city_b}.")
    else:
        try:
            df = best_matches(ctx, city_a, city_b)
        except UserError as e:
            st.warning(str(e))
            df = None
        if df is not None:
            ind = st.selectbox("Indicator", ws.indicator_names, key="cmp_ind",
                               format_func=lambda k: ws.manifest.indicators[k].label)
            unit = ws.manifest.indicators[ind].unit
            a, b = np.log1p(df[f"{ind}_a"]), np.log1p(df[f"{ind}_b"])
            ok = np.isfinite(a) & np.isfinite(b)
            r = float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 and a[ok].std() > 0 and b[ok].std() > 0 else float("nan")
            fig = px.scatter(df, x=np.log1p(df[f"{ind}_a"]), y=np.log1p(df[f"{ind}_b"]), color="score",
                             hover_data=["cell_a", "cell_b"],
                             labels={"x": f"{city_a}: log1p({unit})", "y": f"best match in {city_b}: log1p({unit})"},
                             title=f"{ws.manifest.indicators[ind].label} of matched pairs (Pearson r = {r:.2f})")
            st.plotly_chart(fig, use_container_width=True)
            st.dataframe(df.head(50), use_container_width=True, hide_index=True)
            top = df.iloc[0]
            cols = st.columns(2)
            card(cols[0], top["cell_a"], city_a)
            card(cols[1], top["cell_b"], f"{city_b} · similarity {top['score']:.3f}")

    st.subheader("Transfer (train on one city, test on another)")
    reports = find_transfer_reports()
    if not reports:
        st.caption("No transfer report yet: run a comparison on the Train page; its transfer*.json/csv appears here.")
    else:
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
            col.plotly_chart(fig, use_container_width=True)
