"""User text (a search query, place names, descriptions from imported captions) is never rendered as
Markdown or HTML: fed Markdown and HTML, the pages show it escaped, as typed."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import streamlit as st
from app_helpers import pixel_context, tiny_workspace
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

import urbanclip.ui as ui
from urbanclip.data.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
HOSTILE = ["**bold** ![i](http://host/x.png)", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
           "# Title", "1. item", "`code` $x^2$ :red[alarm] :material/warning: ~~gone~~ a_b_c", "line\nbreak | cell |",
           "http://host/autolink &amp; &lt;b&gt;"]


def _rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough").enable("linkify").render(markdown)


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_text_renders_as_typed(text):
    out = _rendered(ui.plain(text))
    assert not re.search(r"<(img|a|strong|em|h1|ol|li|code|table|s|del)\b", out), out
    shown = html.unescape(re.sub(r"</?p>", "", out)).strip()
    assert shown == text.replace("\n", " ")


@pytest.fixture
def hostile_ws(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    ws = tiny_workspace(root)
    texts = list(ws.cells["text_raw"])
    texts[4] = "**bold claim** ![i](http://host/x.png)\n<img src=x onerror=alert(1)> [click](http://evil)"
    ws.set_column("text_raw", texts, provenance="test: hostile captions")
    ws.manifest.extra["places"] = {"*Old* ![t](http://host/t.png) Town": [float(ws.cells["lat"].iloc[4]),
                                                                           float(ws.cells["lon"].iloc[4])]}
    ws.save()
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(root))
    ctx = pixel_context(Workspace.load(root))
    monkeypatch.setattr(ui, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    yield ctx
    st.cache_resource.clear()


def _markdown_sources(at) -> list[str]:
    els = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.subheader, *at.success]
    return [str(e.value) for e in els] + [str(b.label) for b in at.button]


def test_search_echo_is_escaped(hostile_ws):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.text_input(key="query").input("**bold** ![i](http://host/x.png)")
    at.button[0].click().run()
    assert not at.exception
    sources = _markdown_sources(at)
    echo = [s for s in sources if "bold" in s]
    assert echo and all("![i](" not in s and "**bold**" not in s for s in echo)
    assert any(r"\*\*bold\*\* \!\[i\]\(http\://host/x\.png\)" in s for s in echo)
    for s in sources:  # nothing the page shows would make the browser fetch the query's image
        assert "<img" not in _rendered(s) or "host/x.png" not in _rendered(s)


def test_place_names_and_imported_descriptions_are_escaped(hostile_ws):
    ws = hostile_ws.workspace
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.text_input(key="query").input("*old* ![t](http://host/t.png) town")
    at.button[0].click().run()
    assert not at.exception and at.session_state["selected_cell"] == ws.cells["cell_id"].iloc[4]
    sources = _markdown_sources(at)
    assert any("Source description" in s for s in sources)
    rendered = "".join(_rendered(s) for s in sources)
    # (the look-alike thumbnails are the app's own <img src="data:..."> tiles: only user-given images count)
    assert not re.search(r"<img[^>]*(host/|src=\"?x)", rendered)
    assert "<strong>bold claim" not in rendered and 'href="http://evil"' not in rendered
    assert any(r"\*\*bold claim\*\*" in s and r"\<img src" in s for s in sources)
