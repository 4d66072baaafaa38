"""What a Train-page user may launch: which commands, and which of their options ("Extra arguments").

The app's server runs commands for whoever reaches the page, so the page passes only:
  --workspace  picked from the known workspaces (services.workspaces), set by the form
  --out        a folder under the runs root (services.runs.resolve_out), set by the form
  the options listed in PAGE_OPTIONS, whose values are checked here when they name a file:
  a model (`RUN`) must be a run under the runs root, the shipped model or the active one;
  no URL templates, no Hugging Face model folders, no baseline weight files, no config files.
Everything else (`import`, `export`, `demo`, other paths) stays on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from urbanclip.errors import UserError

Check = Callable[[str, Any], Any]  # (option, value) -> the value to pass (paths made absolute); UserError when refused


def model_ref(option: str, value: Any) -> Any:
    """A model the page may load: a run under the runs root (a relative name is taken from the root), the
    shipped model, or the active model. Returns the absolute path the command gets."""
    if value is None:
        return None
    from urbanclip import paths
    from urbanclip.services.context import active_model_path
    from urbanclip.services.runs import runs_root

    p = Path(str(value)).expanduser()
    p = (p if p.is_absolute() else runs_root() / p).resolve()
    allowed = [runs_root(), paths.shipped_model_dir().resolve()]
    try:
        active = active_model_path()
    except UserError:
        active = None
    ok = any(p == a or p.is_relative_to(a) for a in allowed) or (active is not None and p == Path(active).resolve())
    if not ok:
        raise UserError(f"{option} {value}: from the Train page a model must be a run under the runs root "
                        f"({runs_root()}) or the shipped model ({paths.shipped_model_dir()}); "
                        "other paths can be used from the command line")
    return str(p)


def encoder_specs(option: str, value: Any) -> Any:
    """Encoder specs: baselines by name, or our models (urbanclip:RUN / urbanvit:RUN) with RUN a model_ref."""
    from urbanclip.evaluation.encoders import BASELINE_NAMES, MODEL_KINDS

    out = []
    for spec in value if isinstance(value, list) else [value]:
        if spec is None:
            continue
        name, _, arg = str(spec).strip().partition(":")
        out.append(str(spec).strip())
        if name.lower() in MODEL_KINDS:
            if not arg:
                raise UserError(f"{option} {spec!r} needs a run: {name}:RUN")
            out[-1] = f"{name}:{model_ref(option, arg)}"
        elif name.lower() not in BASELINE_NAMES:
            raise UserError(f"{option} {spec!r} is not an encoder; use one of {', '.join(BASELINE_NAMES)}, "
                            "urbanclip:RUN or urbanvit:RUN")
        elif arg:
            raise UserError(f"{option} {spec!r}: weight files cannot be passed from the Train page; use {name}")
    return out if isinstance(value, list) else (out[0] if out else value)


def baseline_opts(option: str, value: Any) -> Any:
    for pair in value or []:
        key = str(pair).partition("=")[0].strip().replace("-", "_")
        if key == "weights":
            raise UserError(f"{option} {pair!r}: weight files cannot be passed from the Train page")
    return value


def method_runs(option: str, value: Any) -> Any:
    out = []
    for pair in value or []:
        method, sep, run = str(pair).partition("=")
        if not sep:
            raise UserError(f"{option} {pair!r} must look like METHOD=RUN")
        out.append(f"{method.strip()}={model_ref(option, run.strip())}")
    return out


def builtin_config(option: str, value: Any) -> Any:
    if value not in (None, "demo", "tiny", "default"):
        raise UserError(f"{option} {value!r}: from the Train page use a built-in config (demo, tiny, default)")
    return value


def urbanclip_backend(option: str, value: Any) -> Any:
    if value != "urbanclip":
        raise UserError(f"{option} {value!r}: from the Train page describe with `--backend urbanclip --model RUN` "
                        "(the hf backend loads a model folder from the server's disk: use the command line)")
    return value


PROBE = dict.fromkeys(("indicators", "seeds", "hidden", "dropout", "weight_decay", "max_epochs", "patience",
                       "drop_zero_targets"))
SPLITS = dict.fromkeys(("splits", "block_size", "ensemble", "interval"))

# command -> {option dest: check of its value, or None when argparse's own type check is enough}
PAGE_OPTIONS: dict[str, dict[str, Check | None]] = {
    "pretrain": dict.fromkeys(("max_steps", "image_only", "inference_only")),
    "probe": {"encoder": encoder_specs, "opt": baseline_opts, **PROBE, **SPLITS},
    "compare": {"methods": None, "config": builtin_config, "epochs": None, "max_steps": None, "run": method_runs,
                "opt": baseline_opts, **PROBE, **SPLITS},
    "transfer": {"encoder": encoder_specs, "cities": None, "opt": baseline_opts, **PROBE},
    "faithfulness": {"checkpoint": model_ref, "city": None, "source": None, "n_reference": None, "threshold": None,
                     "seed": None, "max_cells": None, "max_len": None, "batch_size": None, "json": None},
    "describe": {"backend": urbanclip_backend, "model": model_ref, "only_missing": None, "batch_size": None,
                 "chunk_size": None, "max_new_tokens": None, "limit": None, "retry_failed": None},
    "refine": {"column": None, "urban_population": None, "off_topic_keywords": None, "min_words": None,
               "similarity": None, "grounding_threshold": None, "checkpoint": model_ref, "n_reference": None,
               "seed": None, "json": None},
    "text-probe": {"columns": None, "indicators": None, "cities": None, "seeds": None, "features": None,
                   "text_tower": model_ref, "batch_size": None},
}
ALWAYS_CHECKED = {("describe", "backend")}  # checked on the final value, given or default


def launch_from_page(command: str, workspace: str | Path, out: str, extra: str = "",
                     pretrain: dict[str, Any] | None = None) -> Path:
    """Check and start what the Train form asks for: `command` on a known `workspace` into `out` (a folder
    under the runs root) with the user's `extra` arguments (a shell-quoted string); `pretrain` holds the
    pretraining form's fields (epochs, batch_size, lr, seed, resume). Returns the run folder."""
    import shlex

    from urbanclip.commands import accepts, check_page_arguments
    from urbanclip.services import runs
    from urbanclip.services.workspaces import check_known_workspace

    run_dir = runs.resolve_out(out)
    ws = check_known_workspace(workspace)
    try:
        extra_argv = shlex.split(extra or "")
    except ValueError as e:
        raise UserError(f"Extra arguments cannot be split into words ({e}); check the quotes") from None
    pass_out = accepts(command, "--out")
    form = ["--workspace", str(ws), *(["--out", str(run_dir)] if pass_out else [])]
    args = check_page_arguments(command, extra_argv, form)
    if command == "pretrain":
        args = [*runs.pretrain_args(run_dir, **(pretrain or {})), *args]
    return runs.launch_run(command, args, run_dir, workspace=ws, pass_out=pass_out)
