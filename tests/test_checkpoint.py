"""Checkpoints and configs: round trip, fp16 export, and clear errors for every bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from urbanclip.errors import UserError
from urbanclip.model.checkpoint import (
    MODEL_FILE,
    TRAIN_STATE_FILE,
    check_compatible,
    export_for_inference,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from urbanclip.model.config import ModelConfig, TrainConfig, demo_config, load_config, save_config, tiny_config
from urbanclip.model.model import UrbanCLIP
from urbanclip.model.tokenizer import UrbanTokenizer

TEXTS = ["a green park with trees.", "grey industrial warehouses.", "a wide river with water."] * 3


@pytest.fixture(scope="module")
def model() -> UrbanCLIP:
    torch.manual_seed(0)
    return UrbanCLIP(tiny_config()[0], UrbanTokenizer.train(TEXTS, 300)).eval()


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def test_round_trip_restores_model_and_tokenizer(model, tmp_path):
    save_checkpoint(tmp_path / TRAIN_STATE_FILE, model, step=7, train_cfg=tiny_config()[1], workspace_fingerprint="abc")
    again = load_model(tmp_path)  # a run folder works as well as a file
    assert not again.training and again.kind == "urbanclip"
    assert again.config == model.config
    assert again.tokenizer.to_str() == model.tokenizer.to_str()
    with torch.no_grad():
        assert torch.equal(again.encode_image(_images()), model.encode_image(_images()))
        assert torch.equal(again.encode_text(TEXTS[:2]), model.encode_text(TEXTS[:2]))
    ckpt = read_checkpoint(tmp_path / TRAIN_STATE_FILE)
    assert ckpt["step"] == 7 and ckpt["workspace_fingerprint"] == "abc"
    assert ckpt["code"]["urbanclip"] and ckpt["train_config"]["batch_size"] == tiny_config()[1].batch_size
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind


def test_export_is_fp16_without_optimizer_and_close(model, tmp_path):
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / TRAIN_STATE_FILE, model, optimizer=opt, train_cfg=tiny_config()[1])
    export_for_inference(tmp_path, tmp_path / MODEL_FILE)
    ckpt = read_checkpoint(tmp_path)  # a folder prefers model.pt
    assert ckpt["_path"].endswith(MODEL_FILE) and ckpt["optimizer"] is None
    assert ckpt["state_dict"]["image_proj.weight"].dtype == torch.float16
    small = load_model(tmp_path / MODEL_FILE)
    with torch.no_grad():
        assert torch.allclose(small.encode_image(_images()), model.encode_image(_images()), atol=2e-2)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_model(tmp_path)
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot be read"):
        load_model(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an urbanclip checkpoint"):
        load_model(tmp_path / "other.pt")


def test_incompatible_config_names_the_field(model, tmp_path):
    save_checkpoint(tmp_path / "c.pt", model)
    ckpt = read_checkpoint(tmp_path / "c.pt")
    check_compatible(ckpt, model.config)  # same config: fine
    with pytest.raises(UserError, match=r"model\.width=32 in the checkpoint but 64"):
        check_compatible(ckpt, dataclasses.replace(model.config, width=64))


def test_inconsistent_weights_name_the_tensor(model, tmp_path):
    save_checkpoint(tmp_path / "c.pt", model)
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    ckpt["model_config"]["embed_dim"] = 48  # config says 48, weights say 32
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="image_proj.weight"):
        load_model(tmp_path / "bad.pt")
    ckpt["model_config"]["embed_dim"] = 32
    ckpt["model_config"]["frobnicate"] = 1
    torch.save(ckpt, tmp_path / "newer.pt")
    with pytest.raises(UserError, match="frobnicate"):
        load_model(tmp_path / "newer.pt")


def test_config_files(tmp_path):
    m, t = demo_config()
    save_config(tmp_path / "c.json", m, t)
    assert load_config(tmp_path / "c.json") == (m, t)
    assert load_config("demo") == demo_config()
    (tmp_path / "partial.json").write_text(json.dumps({"base": "tiny", "train": {"epochs": 3}}))
    mp, tp = load_config(tmp_path / "partial.json")
    assert mp == tiny_config()[0] and tp.epochs == 3


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"model": {"widht": 3}}), "unknown field.*widht"),
    (json.dumps({"model": {"width": 30, "heads": 4}}), "divisible by heads"),
    (json.dumps({"model": {"image_size": 60, "patch_size": 16}}), "multiple of patch_size"),
    (json.dumps({"train": {"lr": -1}}), "'lr' must be > 0"),
    (json.dumps({"train": {"lambda_con": 0, "lambda_lm": 0}}), "nothing would be learned"),
    (json.dumps({"base": "huge"}), "'base' must be one of"),
    (json.dumps({"modle": {}}), "unknown top-level key"),
])
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "none.json")


def test_defaults_are_valid():
    ModelConfig().validate()
    TrainConfig().validate()


def test_shipped_configs_are_json_files_loaded_by_name():
    from urbanclip.model.config import ModelConfig, config_names, load_config, named_config

    assert {"tiny", "demo", "default"} <= set(config_names())
    demo_model, demo_train = named_config("demo")
    assert (demo_model.image_size, demo_model.width) == (64, 128) and demo_train.epochs > 0
    assert load_config("default")[0] == ModelConfig()  # "default" = the dataclass defaults
    assert load_config("tiny") == named_config("tiny")
