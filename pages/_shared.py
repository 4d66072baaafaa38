"""Streamlit glue shared by the pages: cached loaders and session-state keys.

Heavy objects (workspace, model, embeddings, index, probe heads) are loaded once
per process by `st.cache_resource`; the key includes the active-model choice, so
making another checkpoint active on the Train page reloads them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import streamlit as st

from urbanclip.errors import UserError
from urbanclip.services.context import AppContext, active_model_file, active_model_path, load_context, workspace_dir

# session_state keys
CITY = "city"
SELECTED = "selected_cell"
SEARCH = "search_result"
LAST_CLICK = "_last_map_click"
DEEP_LINK = "_deep_link_page"


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
        st.switch_page(str(Path(__file__).resolve().parents[1] / "app.py"))


def follow_deep_link() -> None:
    """Called by app.py after st.navigation: finish a deep link that ensure_navigation rerouted."""
    target = st.session_state.pop(DEEP_LINK, None)
    if target:
        st.switch_page(target)


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
        st.error(f"Cannot open the workspace: {e}")
        st.info("Build the demo with `python -m urbanclip demo`, or point the app at a workspace with "
                "`URBANCLIP_WORKSPACE=/path/to/workspace streamlit run app.py`.")
        return None
    box.empty()
    return ctx


def show_notes(ctx: AppContext) -> None:
    """What is unavailable and why (no model, no probes, ...), collapsed when all is well."""
    if ctx.notes:
        with st.expander(f"Status: {len(ctx.notes)} note(s)", expanded=not ctx.has_model):
            for note in ctx.notes:
                st.info(note)
    if ctx.workspace.manifest.synthetic:
        st.caption("This is the SYNTHETIC demo workspace: images, descriptions and indicators are generated, not real.")
