"""`similar`: the cells (by default in other cities) whose images look most like a given cell."""

from __future__ import annotations

import argparse

NAME = "similar"
HELP = "top-k most similar cells to a cell id (the app's look-alikes: cosine of image embeddings and, for UrbanCLIP, readings)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--cell", "-c", required=True, help="query cell id")
    p.add_argument("--encoder", "-e", default="pca", help="encoder spec (default: pca; use urbanclip:RUN for the model)")
    p.add_argument("-k", type=int, default=5, help="how many matches")
    p.add_argument("--same-city", action="store_true", help="also search the query's own city")
    p.add_argument("--per-city", action="store_true", help="top-k in each other city separately (paper's figure)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="baseline option")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from urbanclip.data.embeddings import cached_embeddings
    from urbanclip.data.workspace import Workspace
    from urbanclip.errors import UserError
    from urbanclip.evaluation.encoders import make_encoder, parse_opts, reading_table
    from urbanclip.search.index import SimilarityIndex, describe_matches

    ws = Workspace.load(args.workspace)
    city = ws.cell(args.cell)["city"]
    enc = make_encoder(args.encoder, ws, **parse_opts(args.opt))
    table = cached_embeddings(ws, enc)
    if args.cell not in set(table.cell_ids):
        raise UserError(f"cell {args.cell!r} has no image, so it has no embedding to compare")
    index = SimilarityIndex.for_table(table, ws, readings=reading_table(ws, enc))
    q = args.cell  # the index's own vector of the cell (search.index: the one similarity policy)
    if args.per_city:
        groups = index.top_k_per_city(q, args.k, exclude_city=None if args.same_city else city)
        matches = [m for ms in groups.values() for m in ms]
    else:
        exclude = None if args.same_city else city
        if exclude is not None and len(index.city_names) < 2:
            raise UserError(f"the workspace has only city {city!r}; pass --same-city to search within it")
        matches = [m for m in index.top_k(q, args.k + 1, exclude_city=exclude) if m.cell_id != args.cell][:args.k]
    df = describe_matches(ws, matches)
    df["description"] = [d if len(d) <= 70 else d[:67] + "..." for d in df["description"]]
    with pd.option_context("display.width", 250, "display.float_format", "{:.4g}".format):
        how = " + captioner readings" if index.reading_offset is not None else ""
        print(f"query {args.cell} ({city}), encoder {enc.label}{how}, search engine {index.backend}")
        print(df.to_string(index=False, formatters={"description": lambda d: f"{d:<70}"}))
    return 0
