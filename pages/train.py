"""Train page: launch background runs, follow them live, read their reports."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pages._shared import ensure_navigation  # noqa: E402
from urbanclip import paths  # noqa: E402
from urbanclip.errors import UserError  # noqa: E402
from urbanclip.services import runs  # noqa: E402
from urbanclip.services.cities import load_transfer  # noqa: E402
from urbanclip.services.context import active_model_path, workspace_dir  # noqa: E402

ensure_navigation()
st.title("Train and evaluate")
st.caption("Runs are background processes writing `metrics.jsonl` in their output folder: they keep going "
           "when you rerun the page, close the tab or open a second one.")


def _fmt_eta(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


# ---- launch ---------------------------------------------------------------------------
commands = runs.available_commands()
stamp = time.strftime("%Y%m%d-%H%M%S")
with st.expander("Launch a run", expanded=True):
    kind = st.radio("Run", ["pretrain", "other command"], horizontal=True, key="run_kind")
    with st.form("launch"):
        ws_dir = st.text_input("Workspace", value=str(workspace_dir()))
        if kind == "pretrain":
            out = st.text_input("Output folder", value=str(paths.runs_dir() / f"pretrain-{stamp}"))
            d = runs.pretrain_defaults()
            c1, c2, c3, c4 = st.columns(4)
            epochs = c1.number_input("Epochs", 1, 1000, int(d["epochs"]))
            batch = c2.number_input("Batch size", 2, 512, int(d["batch_size"]))
            lr = c3.number_input("Learning rate", 1e-6, 1.0, float(d["lr"]), format="%.0e")
            seed = c4.number_input("Seed", 0, 2**31 - 1, int(d["seed"]))
            resume = st.checkbox("Resume from the folder's last checkpoint")
            command, extra = "pretrain", ""
        else:
            choices = [c for c in commands if c not in ("pretrain", "demo", "info")] or commands
            command = st.selectbox("Command", choices)
            out = st.text_input("Output folder", value=str(paths.runs_dir() / f"run-{stamp}"))
            extra = st.text_input("Extra arguments", value="", help="e.g. --encoder urbanclip:RUN (see `python -m urbanclip "
                                  "<command> --help`)")
        go = st.form_submit_button("Start run", type="primary")
    if go:
        try:
            runs.assert_free(out)
            if command not in commands:
                raise UserError(f"command {command!r} is not installed; available: {', '.join(commands)}")
            args = ["--workspace", ws_dir]
            if kind == "pretrain":
                cfg = runs.write_pretrain_config(out, epochs=int(epochs), batch_size=int(batch), lr=float(lr), seed=int(seed))
                args += ["--config", str(cfg)]
                if resume:
                    args.append("--resume")
            else:
                args += shlex.split(extra)
            path = runs.launch_run(command, args, out)
            st.success(f"Started `{command}` in {path}")
        except UserError as e:
            st.error(str(e))


# ---- live progress ------------------------------------------------------------------
@st.fragment(run_every=2.0)
def live() -> None:
    active = [r for r in runs.list_runs() if r.state == "running"]
    if not active:
        st.caption("No run in progress.")
        return
    for r in active:
        st.markdown(f"**{r.command or 'run'}** · `{r.path}`")
        frac = r.fraction
        st.progress(frac or 0.0, text=f"step {r.step}/{r.total_steps or '?'} · ETA {_fmt_eta(r.eta_s)}"
                    + (f" · {r.last.get('items_per_s', 0):.1f} items/s" if r.last.get("items_per_s") else ""))
        losses = pd.DataFrame([{k: v for k, v in e.items() if isinstance(v, (int, float)) and k not in
                                ("time", "total_steps", "eta_s", "items_per_s", "epoch")} for e in r.steps])
        if len(losses) and "step" in losses:
            cols = [c for c in losses.columns if c != "step"]
            if cols:
                st.plotly_chart(px.line(losses, x="step", y=cols, title="losses"), use_container_width=True,
                                key=f"live-{r.path.name}")
        if st.button("Cancel", key=f"cancel-{r.path}"):
            st.toast("Cancel sent" if runs.cancel_run(r.path) else "Run was not running")


st.subheader("In progress")
live()

# ---- finished runs ----------------------------------------------------------------
st.subheader("Finished runs")
try:
    current = active_model_path()
except UserError as e:
    st.warning(str(e))
    current = None
st.caption(f"Map page model: `{current}`" if current else "Map page model: none yet (train one, then make it active).")
done = [r for r in runs.list_runs() if r.state != "running"]
if not done:
    st.caption(f"No finished runs in {paths.runs_dir()}.")
for r in done:
    icon = {"completed": "✅", "interrupted": "⏹️", "failed": "❌"}.get(r.state, "❔")
    with st.expander(f"{icon} {r.command or 'run'} · {r.path.name} · {r.state}"):
        if r.summary:
            flat = {k: v for k, v in r.summary.items() if not isinstance(v, (dict, list))}
            if flat:
                st.dataframe(pd.DataFrame([flat]), hide_index=True, use_container_width=True)
        for csv in sorted(r.path.glob("*.csv")):
            if csv.name.startswith("transfer"):
                continue
            st.markdown(f"`{csv.name}`")
            try:
                st.dataframe(pd.read_csv(csv), hide_index=True, use_container_width=True)
            except (ValueError, OSError) as e:
                st.caption(f"cannot read {csv.name}: {e}")
        for rep in sorted(list(r.path.glob("transfer*.json")) + list(r.path.glob("transfer*.csv"))):
            try:
                for name, mat in load_transfer(rep).items():
                    st.plotly_chart(px.imshow(mat.astype(float), text_auto=".2f", title=f"transfer R² · {name}",
                                              labels={"x": "test city", "y": "train city"}),
                                    use_container_width=True, key=f"tr-{rep}-{name}")
            except UserError as e:
                st.caption(str(e))
        if r.steps:
            losses = pd.DataFrame(r.steps)
            ycols = [c for c in losses.columns if c not in ("event", "time", "step", "total_steps", "epoch", "eta_s",
                                                           "items_per_s") and pd.api.types.is_numeric_dtype(losses[c])]
            if ycols:
                st.plotly_chart(px.line(losses, x="step", y=ycols, title="losses"), use_container_width=True,
                                key=f"loss-{r.path}")
        if r.state != "completed":
            st.code(runs.log_tail(r.path) or "(no log)")
        if r.has_checkpoint:
            if st.button("Use this checkpoint on the Map page", key=f"use-{r.path}"):
                try:
                    runs.set_active_model(r.path)
                    st.success("Done: the Map page now loads this model.")
                except UserError as e:
                    st.error(str(e))
