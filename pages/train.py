"""Train page: launch background runs, follow them live, read their reports."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from urbanclip.commands import launch_from_page, page_commands, page_options
from urbanclip.errors import UserError
from urbanclip.services import runs
from urbanclip.services.cities import load_transfer
from urbanclip.services.context import active_model_path
from urbanclip.services.workspaces import known_workspaces
from urbanclip.ui import ensure_navigation, plain

ensure_navigation()
st.title("Train and evaluate")
st.caption("Runs are background processes writing `metrics.jsonl` in their output folder: they keep going "
           "when you rerun the page, close the tab or open a second one. They run at a lower CPU priority, "
           "so the map stays responsive.")
root = runs.runs_root()


def _fmt_eta(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _new_name(key: str, kind: str) -> None:
    st.session_state[key] = runs.new_run_name(kind)


def _charts(r: runs.RunStatus, where: str) -> None:
    """The run's main chart full width, its secondary ones (gradient norm, learning rate...) side by side."""
    charts = runs.charts(r)
    if not charts:
        return
    for c, box in zip(charts, [st.container(), *st.columns(max(1, len(charts) - 1))]):
        fig = px.line(c.frame, x="step", y=c.series, title=c.title, markers=len(c.frame) < 30,
                      labels={"step": c.x_label, "value": c.y_label, "variable": ""})
        if c.x_label != "step":
            fig.update_xaxes(dtick=1)
        box.plotly_chart(fig, width="stretch", key=f"{where}-{r.path}-{c.title}")
        if c.note:
            box.caption(c.note)


# ---- launch ---------------------------------------------------------------------------
with st.expander("Launch a run", expanded=True):
    kind = st.radio("Run", ["pretrain", "other command"], horizontal=True, key="run_kind")
    command = "pretrain" if kind == "pretrain" else st.selectbox(
        "Command", [c for c in page_commands() if c != "pretrain"], key="command")
    out_key = "out_pretrain" if kind == "pretrain" else "out_other"
    st.session_state.setdefault(out_key, runs.new_run_name("pretrain" if kind == "pretrain" else "run"))
    with st.form("launch"):
        workspace = st.selectbox("Workspace", known_workspaces(), format_func=str, key="train_ws",
                                 help="the app's workspace, those under the workspaces root, and those an operator "
                                      "registered with `python -m urbanclip workspaces add PATH`")
        out = st.text_input("Output folder", key=out_key, help=f"a folder name under the runs root {root}")
        pretrain = None
        if kind == "pretrain":
            d = runs.pretrain_defaults()
            c1, c2, c3, c4 = st.columns(4)
            pretrain = {"epochs": c1.number_input("Epochs", 1, 1000, int(d["epochs"])),
                        "batch_size": c2.number_input("Batch size", 2, 512, int(d["batch_size"])),
                        "lr": c3.number_input("Learning rate", 1e-6, 1.0, float(d["lr"]), format="%.0e"),
                        "seed": c4.number_input("Seed", 0, 2**31 - 1, int(d["seed"])),
                        "resume": st.checkbox("Resume from the folder's last checkpoint", key="resume",
                                              help="continues an interrupted run in its Output folder with its own "
                                                   "settings (the fields above are not used then)")}
            extra = st.text_input("Extra arguments", key="extra_pretrain",
                                  help=f"options of `pretrain`: {', '.join(page_options('pretrain'))}")
        else:
            extra = st.text_input("Extra arguments", key="extra_other",
                                  help=f"options of `{command}`: {', '.join(page_options(command))} (see `python -m "
                                       f"urbanclip {command} --help`); a model is a run under the runs root, e.g. "
                                       "--encoder urbanclip:RUN")
        go = st.form_submit_button("Start run", type="primary")
    st.button("New folder name", key="new_name", on_click=_new_name, args=(out_key, kind if kind == "pretrain" else "run"))
    if go:
        try:
            path = launch_from_page(command, workspace, out, extra, pretrain)
            st.success(f"Started `{command}` in {plain(str(path))}")
        except UserError as e:
            st.error(plain(str(e)))


# ---- live progress ------------------------------------------------------------------
all_runs = runs.list_runs()
st.session_state["runs_seen"] = runs.runs_signature(all_runs)


@st.fragment(run_every=2.0)
def live() -> None:
    current = runs.list_runs()
    if runs.runs_signature(current) != st.session_state.get("runs_seen"):
        st.rerun(scope="app")  # a run started, ended or was cancelled: refresh the lists below
    active = [r for r in current if r.state == "running"]
    if not active:
        st.caption("No run in progress.")
        return
    for r in active:
        st.markdown(f"**{plain(r.command or 'run')}** · {plain(str(r.path))} · process {r.holder}")
        st.progress(r.fraction or 0.0, text=f"step {r.step}/{r.total_steps or '?'} · ETA {_fmt_eta(r.eta_s)}"
                    + (f" · {r.last.get('items_per_s', 0):.1f} items/s" if r.last.get("items_per_s") else ""))
        _charts(r, "live")
        if st.button("Cancel", key=f"cancel-{r.path}"):
            st.toast("Cancel sent" if runs.cancel_run(r.path) else "Run was not running")


st.subheader("In progress")
live()

# ---- finished runs ----------------------------------------------------------------
st.subheader("Finished runs")
try:
    current = active_model_path()
except UserError as e:
    st.warning(plain(str(e)))
    current = None
st.caption(f"Map page model: {plain(str(current))}" if current else
           "Map page model: none yet (train one, then make it active).")
done = [r for r in all_runs if r.state != "running"]
if not done:
    st.caption(f"No finished runs in {plain(str(root))}.")
for r in done:
    icon = {"completed": "✅", "interrupted": "⏹️", "failed": "❌"}.get(r.state, "❔")
    with st.expander(f"{icon} {plain(r.command or 'run')} · {plain(r.path.name)} · {r.state}"):
        if r.summary:
            flat = {k: v for k, v in r.summary.items() if not isinstance(v, (dict, list))}
            if flat:
                st.dataframe(pd.DataFrame([flat]), hide_index=True, width="stretch")
        for csv in sorted(r.path.glob("*.csv")):
            if csv.name.startswith("transfer"):
                continue
            st.caption(plain(csv.name))
            try:
                st.dataframe(pd.read_csv(csv), hide_index=True, width="stretch")
            except (ValueError, OSError) as e:
                st.caption(plain(f"cannot read {csv.name}: {e}"))
        for rep in sorted(list(r.path.glob("transfer*.json")) + list(r.path.glob("transfer*.csv"))):
            try:
                for name, mat in load_transfer(rep).items():
                    st.plotly_chart(px.imshow(mat.astype(float), text_auto=".2f", title=f"transfer R² · {name}",
                                              labels={"x": "test city", "y": "train city"}),
                                    width="stretch", key=f"tr-{rep}-{name}")
            except UserError as e:
                st.caption(plain(str(e)))
        _charts(r, "done")
        if r.state != "completed":
            st.code(runs.log_tail(r.path) or "(no log)")
        if r.can_resume and st.button("Resume this run", key=f"resume-{r.path}"):
            try:
                runs.resume_run(r.path)
                st.success("Resumed: it continues from its last checkpoint.")
            except UserError as e:
                st.error(plain(str(e)))
        if r.can_activate and st.button("Use this checkpoint on the Map page", key=f"use-{r.path}"):
            try:
                runs.set_active_model(r.path)
                st.success("Done: the Map page now loads this model.")
            except UserError as e:
                st.error(plain(str(e)))
