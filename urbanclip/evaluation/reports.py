"""Writing results: the paper's Table 2 layout, transfer heatmaps, and run logs.

Table 2: rows = methods (one row per method and split when both the random and
the spatial-block split are scored), columns = indicator x {R², RMSE, MAE}, each
cell "mean ± std" over seeds. Written as JSON (everything, machine-readable), CSV
(one row per method and split, `split`, `<indicator>_<metric>` and `..._std`
columns, plus `<indicator>_coverage` / `_width` of the prediction intervals) and
Markdown (the table, an R² random-vs-block section, and interval coverage).

Transfer: one train-city x test-city R² matrix per indicator, as JSON
({"transfer": {indicator: {train_city: {test_city: r2}}}}), a long CSV
(indicator, train_city, test_city, r2, ...) and a plotly heatmap (HTML; PNG
only when kaleido is installed).

`RunLog` appends the shared `metrics.jsonl` events so the app's Train page can
follow probe / compare / transfer runs like any other run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from urbanclip.evaluation.metrics import METRICS
from urbanclip.data.workspace import atomic_write_bytes, atomic_write_json

METRIC_LABELS = {"R2": "R²", "RMSE": "RMSE", "MAE": "MAE"}
SPLIT_LABELS = {"random": "random", "block": "spatial block"}
INTERVAL_KEYS = ("coverage", "width")  # = urbanclip.evaluation.probe.INTERVAL_KEYS (reports does not import the probe)


@dataclass
class MethodRow:
    """One row of Table 2."""

    method: str                     # short id, e.g. "pca", "urbanclip"
    label: str                      # what the table shows, e.g. "ResNet-18 (random init)"
    results: dict[str, dict[str, dict[str, float]]]  # indicator -> metric -> {mean, std, n_seeds}
    notes: str = ""
    encoder_key: str = ""
    seconds: float = 0.0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split: str = "random"           # which stored split scored it: "random" or "block" (urbanclip.data.splits)

    def to_dict(self) -> dict:
        return {"method": self.method, "label": self.label, "split": self.split, "notes": self.notes,
                "encoder_key": self.encoder_key, "seconds": round(self.seconds, 1), "counts": self.counts,
                "results": self.results}


def _fmt(cell: dict | None, digits: int = 3) -> str:
    if not cell or cell.get("mean") is None or not math.isfinite(cell["mean"]):
        return "–"
    s = f"{cell['mean']:.{digits}f}"
    if cell.get("n_seeds", 1) > 1:
        s += f" ± {cell['std']:.{digits}f}"
    return s


def table2_frame(rows: Sequence[MethodRow], indicators: Sequence[str]) -> pd.DataFrame:
    """The CSV layout: one row per method and split, `<ind>_<metric>` (mean) and `<ind>_<metric>_std`
    columns, then `<ind>_coverage` / `<ind>_width` of the prediction intervals (NaN when not computed)."""
    recs = []
    for r in rows:
        rec: dict[str, Any] = {"method": r.method, "label": r.label, "split": r.split}
        for ind in indicators:
            for m in METRICS:
                c = r.results.get(ind, {}).get(m)
                rec[f"{ind}_{m}"] = c["mean"] if c else float("nan")
                rec[f"{ind}_{m}_std"] = c["std"] if c else float("nan")
        for ind in indicators:
            for key in INTERVAL_KEYS:
                c = r.results.get(ind, {}).get(key)
                rec[f"{ind}_{key}"] = c["mean"] if c else float("nan")
        rec["notes"] = r.notes
        recs.append(rec)
    return pd.DataFrame(recs)


def _split_label(split: str) -> str:
    return SPLIT_LABELS.get(split, split)


def table2_markdown(rows: Sequence[MethodRow], indicators: Sequence[str], title: str = "", digits: int = 3,
                    meta: dict | None = None) -> str:
    """The table (a Split column next to Method), then R² random vs block, then interval coverage."""
    meta = meta or {}
    head = ["Method", "Split"] + [f"{ind} {METRIC_LABELS[m]}" for ind in indicators for m in METRICS]
    lines = [f"## {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.label, _split_label(r.split)] + [_fmt(r.results.get(ind, {}).get(m), digits)
                                                    for ind in indicators for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    notes = list(dict.fromkeys(f"- {r.label}: {r.notes}" for r in rows if r.notes))
    if notes:
        lines += ["", *notes]
    lines += ["", "R², RMSE and MAE on the test split, log1p scale; mean ± std over probe seeds."]
    lines += _split_lines(meta)
    lines += _random_vs_block(rows, indicators, digits)
    lines += _coverage_section(rows, indicators)
    return "\n".join(lines) + "\n"


def _split_lines(meta: dict) -> list[str]:
    out = []
    splits = meta.get("splits") or {}
    for name, info in sorted(splits.items(), key=lambda kv: list(SPLIT_LABELS).index(kv[0]) if kv[0] in SPLIT_LABELS else 99):
        if name == "block":
            out.append(f"Block split: whole {info.get('block_size')}x{info.get('block_size')}-cell blocks per city "
                       f"(seed {info.get('seed')}) go to train/val/test, 60/20/20 by cells as close as blocks allow.")
        elif name == "random":
            out.append(f"Random split: cells drawn 60/20/20 at random (seed {info.get('seed')}), as in the paper.")
    if meta.get("drop_zero_targets"):
        out.append("Cells whose indicator is 0 were left out (drop_zero_targets, as in the official UrbanCLIP code).")
    elif "drop_zero_targets" in meta:
        out.append("Cells whose indicator is 0 were kept (drop_zero_targets off).")
    return [""] + out if out else []


def _random_vs_block(rows: Sequence[MethodRow], indicators: Sequence[str], digits: int) -> list[str]:
    """R² of each method on both splits side by side, with the drop (empty when a split is missing)."""
    by = {(r.method, r.split): r for r in rows}
    methods = [m for m in dict.fromkeys(r.method for r in rows) if (m, "random") in by and (m, "block") in by]
    if not methods:
        return []
    head = ["Method"] + [f"{ind} R² {w}" for ind in indicators for w in ("random", "block", "drop")]
    lines = ["", "### R², random vs spatial-block split", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = [by[(m, "random")].label]
        for ind in indicators:
            a = by[(m, "random")].results.get(ind, {}).get("R2", {}).get("mean")
            b = by[(m, "block")].results.get(ind, {}).get("R2", {}).get("mean")
            ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
            cells += [_num(a, digits), _num(b, digits), f"{a - b:+.{digits}f}" if ok else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "A block split keeps test cells away from train cells, so spatial autocorrelation cannot "
                  "leak into the score: the drop is how much the random split flatters a method."]
    return lines


def _coverage_section(rows: Sequence[MethodRow], indicators: Sequence[str]) -> list[str]:
    have = [r for r in rows if any(r.results.get(ind, {}).get("coverage") for ind in indicators)]
    if not have:
        return []
    level = next(r.results[ind]["coverage"].get("level", 0.8) for r in have for ind in indicators
                 if r.results.get(ind, {}).get("coverage"))
    head = ["Method", "Split"] + [f"{ind} {w}" for ind in indicators for w in ("coverage", "width")]
    lines = ["", f"### Prediction intervals (nominal {level:.0%})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in have:
        cells = [r.label, _split_label(r.split)]
        for ind in indicators:
            cov = r.results.get(ind, {}).get("coverage", {}).get("mean")
            wid = r.results.get(ind, {}).get("width", {}).get("mean")
            n = r.counts.get(ind, {}).get("test", 0)
            se = f" ± {math.sqrt(cov * (1 - cov) / n):.2f}" if cov is not None and n else ""
            cells += [f"{cov:.3f}{se}" if cov is not None else "–", _num(wid, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Coverage: share of test cells whose observed value lies inside the interval (± binomial standard "
                  "error); width: mean interval width on the log1p scale. Intervals: an ensemble of probe heads "
                  "(bootstrap), split-conformal calibration on the validation cells, first probe seed."]
    return lines


def _num(v: float | None, digits: int) -> str:
    return f"{v:.{digits}f}" if v is not None and math.isfinite(v) else "–"


def write_table2(rows: Sequence[MethodRow], indicators: Sequence[str], out_dir: Path | str,
                 title: str = "Indicator prediction", meta: dict | None = None, stem: str = "report") -> dict[str, Path]:
    """Write <stem>.json / .csv / .md into out_dir; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
    atomic_write_json(paths["json"], {"title": title, "indicators": list(indicators), "metrics": list(METRICS),
                                      "scale": "log1p", "split": "test", "meta": meta or {},
                                      "rows": [r.to_dict() for r in rows]})
    atomic_write_bytes(paths["csv"], table2_frame(rows, indicators).to_csv(index=False).encode("utf-8"))
    atomic_write_bytes(paths["md"], table2_markdown(rows, indicators, title, meta=meta).encode("utf-8"))
    return paths


def read_table2(path: Path | str) -> list[MethodRow]:
    data = json.loads(Path(path).read_text("utf-8"))
    return [MethodRow(method=r["method"], label=r["label"], results=r["results"], notes=r.get("notes", ""),
                      encoder_key=r.get("encoder_key", ""), seconds=r.get("seconds", 0.0), counts=r.get("counts", {}),
                      split=r.get("split", "random"))
            for r in data["rows"]]


# ---------------------------------------------------------------------------------
# transfer


def kaleido_available() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def transfer_heatmap(matrix: pd.DataFrame, indicator: str, method: str = ""):
    """A plotly heatmap of one R² matrix (rows = train city, columns = test city)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(), x=list(matrix.columns), y=list(matrix.index),
                               colorscale="Viridis", colorbar={"title": "R²"},
                               text=[[f"{v:.3f}" for v in row] for row in matrix.to_numpy()],
                               texttemplate="%{text}", hovertemplate="train %{y} → test %{x}: R² %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Cross-city transfer, {indicator}" + (f" ({method})" if method else ""),
                      xaxis_title="test city", yaxis_title="train city", yaxis_autorange="reversed",
                      width=520, height=460)
    return fig


def write_transfer(matrices: dict[str, pd.DataFrame], records: pd.DataFrame, out_dir: Path | str,
                   method: str = "", meta: dict | None = None) -> dict[str, Path]:
    """transfer.json, transfer.csv (long) and transfer_<indicator>.html (+ .png with kaleido)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"json": out / "transfer.json", "csv": out / "transfer.csv"}
    nested = {ind: {a: {b: float(m.loc[a, b]) for b in m.columns} for a in m.index} for ind, m in matrices.items()}
    atomic_write_json(paths["json"], {"method": method, "metric": "R2", "scale": "log1p", "meta": meta or {},
                                      "mean_offdiagonal_r2": {ind: mean_offdiagonal(m) for ind, m in matrices.items()},
                                      "transfer": nested})
    atomic_write_bytes(paths["csv"], records.to_csv(index=False).encode("utf-8"))
    png = kaleido_available()
    for ind, m in matrices.items():
        fig = transfer_heatmap(m, ind, method)
        p = out / f"transfer_{ind}.html"
        fig.write_html(str(p), include_plotlyjs=True)
        paths[f"html_{ind}"] = p
        if png:
            fig.write_image(str(out / f"transfer_{ind}.png"))
            paths[f"png_{ind}"] = out / f"transfer_{ind}.png"
    return paths


def mean_offdiagonal(m: pd.DataFrame) -> float:
    """Mean R² over ordered pairs of different cities (the paper's transfer summary)."""
    vals = [float(m.loc[a, b]) for a in m.index for b in m.columns if a != b]
    return float(sum(vals) / len(vals)) if vals else float("nan")


# ---------------------------------------------------------------------------------
# run log (metrics.jsonl, shared event schema of urbanclip.events)


class RunLog:
    """Start / step / message / end events to RUN/metrics.jsonl (+ a terminal progress bar)."""

    def __init__(self, run_dir: Path | str | None, bar: bool = False, keys: Sequence[str] = ()):
        from urbanclip.events import JsonlLogger, TqdmProgress

        self.callbacks: list = []
        if run_dir:
            self.callbacks.append(JsonlLogger(run_dir))
        if bar:
            self.callbacks.append(TqdmProgress(keys))
        self.t0 = time.time()

    def _emit(self, event: str, **data: Any) -> None:
        from urbanclip.events import ProgressEvent

        ev = ProgressEvent(event, data)
        for cb in self.callbacks:
            cb(ev)

    def start(self, command: str, total_steps: int) -> None:
        self.t0 = time.time()
        self._emit("start", command=command, total_steps=int(total_steps))

    def step(self, step: int, total_steps: int, **values: float) -> None:
        el = time.time() - self.t0
        rate = step / el if el > 0 else 0.0
        eta = (total_steps - step) / rate if rate > 0 else None
        self._emit("step", step=int(step), total_steps=int(total_steps), epoch=0, eta_s=eta, items_per_s=rate,
                   **{k: float(v) for k, v in values.items()})

    def message(self, text: str) -> None:
        self._emit("message", text=text)

    def end(self, status: str, summary: dict | None = None) -> None:
        self._emit("end", status=status, summary=summary or {})
