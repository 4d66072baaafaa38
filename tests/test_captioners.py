"""Captioners: the transformers backend end to end on a tiny randomly initialised model saved
to a temp folder (nothing downloaded), bad model folders, and `describe` (resume, bad images)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

from urbanclip.errors import UserError
from urbanclip.text.captioners import make_captioner, split_generated


def build_tiny_hf_captioner(path: Path) -> Path:
    """A ViT encoder + GPT-2 decoder (VisionEncoderDecoder) with random weights, a word-level
    tokenizer and a ViT image processor, saved with save_pretrained like a downloaded model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    words = "the a of with and buildings road river park residential dense area green trees .".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins word-level tokens with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    enc = ViTConfig(image_size=32, patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32)
    dec = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=16, n_layer=1, n_head=2, add_cross_attention=True,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=cfg)
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = 1, 0, 2
    gen.suppress_tokens = [0, 1, 3]  # a random model would otherwise emit only <s>/<pad>
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    return build_tiny_hf_captioner(tmp_path_factory.mktemp("hf") / "tiny-ved")


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]


def test_split_generated():
    assert split_generated("A road. A park!\nTrees line the river") == ["A road.", "A park!", "Trees line the river"]
    assert split_generated("") == []
    assert split_generated("\x12\x12") == []  # control bytes from a byte-level decoder


def test_hf_backend_end_to_end(tiny_hf):
    cap = make_captioner("hf", str(tiny_hf), batch_size=2, max_new_tokens=8)
    out = cap.describe(_images(3))  # 2 batches
    assert len(out) == 3
    vocab = set(json.loads((tiny_hf / "tokenizer.json").read_text())["model"]["vocab"])
    for sentences in out:
        assert sentences and all(isinstance(s, str) for s in sentences)
        assert set(" ".join(sentences).split()) <= vocab  # decoded from the saved tokenizer
    assert str(tiny_hf.resolve()) in cap.provenance and "vision-encoder-decoder" in cap.provenance
    assert "prompt=none" in cap.provenance  # a plain captioner takes no instruction
    # deterministic decoding: same images, same text
    assert cap.describe(_images(3)) == out


def test_hf_backend_bad_paths(tmp_path, tiny_hf):
    with pytest.raises(UserError, match="does not exist"):
        make_captioner("hf", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        make_captioner("hf", str(tmp_path / "empty"))
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=1)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(UserError, match="not an image-to-text model"):
        make_captioner("hf", str(tmp_path / "gpt2"))
    with pytest.raises(UserError, match="unknown captioner backend"):
        make_captioner("nope", str(tiny_hf))


def test_urbanclip_backend_missing_run(tmp_path):
    pytest.importorskip("urbanclip.model.checkpoint")
    with pytest.raises(UserError):
        make_captioner("urbanclip", str(tmp_path / "no-run"))


# ---------------------------------------------------------------------------------
# describe


def _image_workspace(root: Path, n: int = 7, with_text: tuple[int, ...] = (0,)):
    from urbanclip.data.indicators import STANDARD
    from urbanclip.data.workspace import Manifest, WorkspaceBuilder

    rows = []
    with WorkspaceBuilder(root) as b:
        for i, im in enumerate(_images(n)):
            rel = b.write_image("T", f"c{i}.png", im)
            rows.append(dict(cell_id=f"T/{i:02d}", city="T", row=0, col=i, image=rel,
                             geometry=box(i * .01, 0, i * .01 + .01, .01),
                             text_raw="An original caption of the tile." if i in with_text else "",
                             population=float(i)))
        return b.finish(gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"),
                        Manifest(name="t", indicators={"population": STANDARD["population"]}))


class Counting:
    """Wraps a captioner; counts images and can stop the run after `stop_after` calls."""

    def __init__(self, inner, stop_after: int | None = None):
        self.inner, self.stop_after, self.calls, self.images = inner, stop_after, 0, 0
        self.provenance = inner.provenance

    def describe(self, images):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.images += len(images)
        return self.inner.describe(images)


def test_describe_only_missing_resumes_after_interrupt(tmp_path, tiny_hf):
    from urbanclip.data.workspace import Workspace
    from urbanclip.text.describe import describe_workspace

    _image_workspace(tmp_path / "ws")
    inner = make_captioner("hf", str(tiny_hf), batch_size=4, max_new_tokens=6)
    first = Counting(inner, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        describe_workspace(Workspace.load(tmp_path / "ws"), first, only_missing=True, chunk_size=2,
                           show_progress=False)
    ws = Workspace.load(tmp_path / "ws")
    done = ws.cells["text_raw"].ne("")
    assert first.images == 2 and int(done.sum()) == 3  # the original caption + the saved first chunk
    second = Counting(inner)
    stats = describe_workspace(ws, second, only_missing=True, chunk_size=2, show_progress=False)
    assert second.images == 4 and stats["described"] == 4  # only the rest
    ws = Workspace.load(tmp_path / "ws")
    c = ws.cells.set_index("cell_id")
    assert c.loc["T/00", "text_raw"] == "An original caption of the tile."  # source text untouched
    assert c.loc["T/00", "text_origin"] == ""
    assert (c["text_raw"] != "").all()
    assert (c.drop(index="T/00")["text_origin"] == inner.provenance).all()
    assert not any("missing_text" in f for f in c["flags"])
    assert "generated for cells without text" in ws.manifest.provenance["text_raw"]
    third = Counting(inner)
    assert describe_workspace(ws, third, only_missing=True, show_progress=False)["pending"] == 0
    assert third.calls == 0


def test_describe_command_bad_images_are_flagged_not_fatal(tmp_path, tiny_hf, capsys):
    from urbanclip.cli import main
    from urbanclip.data.workspace import Workspace

    ws = _image_workspace(tmp_path / "ws", n=4)
    (ws.root / ws.cells["image"].iloc[1]).write_bytes(b"not an image at all")
    (ws.root / ws.cells["image"].iloc[2]).unlink()
    rc = main(["describe", "--workspace", str(ws.root), "--backend", "hf", "--model", str(tiny_hf),
               "--batch-size", "2", "--max-new-tokens", "5", "--chunk-size", "2", "--out", str(tmp_path / "run")])
    assert rc == 0
    from urbanclip.events import read_events

    events = read_events(tmp_path / "run")
    assert [e["event"] for e in events] == ["start", "step", "step", "end"]
    assert events[-1]["status"] == "completed" and events[-1]["summary"]["described"] == 2
    out = capsys.readouterr().out
    assert "described 2 of 3 pending" in out and "1 unreadable" in out and "1 image files missing" in out
    c = Workspace.load(ws.root).cells.set_index("cell_id")
    assert (c["text_raw"].iloc[[1, 2, 3]] == "").all()  # default target leaves text_raw alone
    assert c.loc["T/00", "text_generated"] and c.loc["T/03", "text_generated"]
    assert c.loc["T/01", "text_generated"] == "" and "image_unreadable" in c.loc["T/01", "flags"]
    assert not isinstance(c.loc["T/02", "image"], str) and "missing_image" in c.loc["T/02", "flags"]
    # rerun: nothing left (failed cells are not retried without --retry-failed)
    assert main(["describe", "--workspace", str(ws.root), "--model", str(tiny_hf)]) == 0
    assert "nothing to describe" in capsys.readouterr().out


def test_describe_command_bad_model_path(tmp_path, capsys):
    from urbanclip.cli import main

    _image_workspace(tmp_path / "ws", n=3)
    assert main(["describe", "--workspace", str(tmp_path / "ws"), "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_urbanclip_backend_end_to_end(tmp_path):
    pytest.importorskip("urbanclip.model.checkpoint")
    import torch

    from urbanclip.model.checkpoint import save_checkpoint
    from urbanclip.model.config import ModelConfig
    from urbanclip.model.model import UrbanCLIP
    from urbanclip.model.tokenizer import UrbanTokenizer

    texts = ["Dense residential blocks beside a road.", "A park with trees and a pond.",
             "Factories and warehouses along a railway."] * 5
    tok = UrbanTokenizer.train(texts, vocab_size=300)
    cfg = ModelConfig(image_size=32, patch_size=16, width=32, depth=1, heads=2, embed_dim=16, n_visual_queries=4,
                      text_width=32, text_depth=2, text_heads=2, vocab_size=tok.vocab_size, context_length=16)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "model.pt", UrbanCLIP(cfg, tok))
    cap = make_captioner("urbanclip", str(ckpt), batch_size=2, max_new_tokens=6)
    out = cap.describe(_images(3))
    assert len(out) == 3 and all(isinstance(s, list) for s in out)
    assert str(ckpt.resolve()) in cap.provenance and "strategy=beam" in cap.provenance


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")])
def test_a_run_that_raises_ends_interrupted_or_failed_with_its_summary(tmp_path, error, status):
    from urbanclip.events import read_events, tracker_for

    tracker = tracker_for(tmp_path / "run")
    tracker.start("describe", 2)
    stats = {"described": 0}
    with pytest.raises(error), tracker.ends_on_error(stats):
        stats["described"] = 1
        raise error()
    end = read_events(tmp_path / "run")[-1]
    assert end["event"] == "end" and end["status"] == status and end["summary"] == {"described": 1}
