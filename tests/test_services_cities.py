"""Two-city comparison: totals in the indicators' own units, distributions, and a correlation only when defined."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from app_helpers import pixel_context, tiny_workspace

from urbanclip.services.cities import best_matches, city_totals, distribution, matched_pairs


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return pixel_context(tiny_workspace(tmp_path_factory.mktemp("cities") / "ws"))


def test_city_totals_sum_each_indicator_in_its_unit(ctx):
    ws = ctx.workspace
    a, b = ws.cities[:2]
    t = city_totals(ctx, [a, b])
    assert list(t.columns) == [a, b]
    from urbanclip.services.profile import format_value

    assert t.loc["Population (sum), observed", a] == format_value(ws.city_cells(a)["population"].sum(), "persons")
    assert t.loc["Cells", b].startswith(f"{len(ws.city_cells(b)):,} (")


def test_predicted_city_totals_sum_expected_values_and_say_when_only_medians_are_known(ctx):
    import dataclasses

    from urbanclip.services.profile import format_value

    ws = ctx.workspace
    a = ws.cities[0]
    mask = (ws.cells["city"] == a).to_numpy()
    median = ws.cells["population"].to_numpy(dtype=float) * 0.5
    mean = median * 1.3
    t = city_totals(dataclasses.replace(ctx, predictions={"population": median}, expected={"population": mean}), [a])
    assert t.loc["Population (sum), predicted", a] == format_value(mean[mask].sum(), "persons")
    # heads saved before expected values existed: the medians' sum, labelled as such
    t = city_totals(dataclasses.replace(ctx, predictions={"population": median}, expected={}), [a])
    assert t.loc["Population (sum of per-cell medians), predicted", a] == format_value(median[mask].sum(), "persons")


def test_distribution_shares_add_up_per_city(ctx):
    ws = ctx.workspace
    d = distribution(ctx, ws.cities[:2], "gdp", bins=6)
    assert set(d["city"]) == set(ws.cities[:2]) and d["bin"].nunique() == 6
    assert d.groupby("city")["share"].sum().to_numpy() == pytest.approx([100.0, 100.0])
    assert "log1p" not in " ".join(d["bin"]) and all("–" in b for b in d["bin"])


def test_correlation_is_none_when_undefined(ctx):
    ws = ctx.workspace
    df = best_matches(ctx, *ws.cities[:2])
    assert matched_pairs(df, "population").correlation is not None
    flat = df.assign(carbon_a=7.0, carbon_b=np.linspace(1, 9, len(df)))  # one side constant
    pairs = matched_pairs(flat, "carbon")
    assert pairs.correlation is None and pairs.correlation_text == "correlation undefined"
    few = df.head(2)
    assert matched_pairs(few, "population").correlation is None
    assert isinstance(matched_pairs(df, "gdp").frame, pd.DataFrame)
