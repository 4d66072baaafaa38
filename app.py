"""Urban Insights: the Streamlit app. `streamlit run app.py`.

Navigation and the sidebar every page shares; one page per file in `pages/`
(pages lay out widgets and call `urbanclip.services`, through `urbanclip.ui`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from urbanclip import paths, ui

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="Urban Insights", page_icon=str(paths.assets_dir() / "favicon.png"), layout="wide")
pages = [
    st.Page(HERE / "pages" / "map.py", title="Map", icon=":material/map:", default=True),
    st.Page(HERE / "pages" / "compare.py", title="Compare", icon=":material/compare:"),
    st.Page(HERE / "pages" / "train.py", title="Train", icon=":material/model_training:"),
]
nav = st.navigation(pages, position="hidden")  # the menu is ours (ui.shared_sidebar): see .streamlit/config.toml
ui.shared_sidebar(pages)
ui.follow_deep_link()
nav.run()
