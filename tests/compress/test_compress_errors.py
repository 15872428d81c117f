"""Bad inputs: one clear KoforgeError each, and no output folder left behind."""
from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import ConfigError, DataError, TokenizerError
from koforge.compress import CompressionConfig, MeasureConfig, UnsupportedModelError, apply_compression
from koforge.compress.layout import load_model
from koforge.compress.score import check_same_base, run_baseline
from koforge.compress.layout import model_fingerprint


def test_keep_layers_out_of_range_leaves_nothing(tiny_models, tmp_path):
    cfg = CompressionConfig(methods=["drop_layers"], drop_strategy="top", keep_layers=9)
    with pytest.raises(ConfigError, match=r"keep_layers=9 out of range: the model has 4 layers.*between 1 and 4"):
        apply_compression(tiny_models["llama"], cfg, tmp_path / "out")
    cfg = CompressionConfig(methods=["drop_layers"], drop_strategy="explicit", drop_indices=[7])
    with pytest.raises(ConfigError, match=r"drop_indices \[7\] out of range"):
        apply_compression(tiny_models["llama"], cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_heads_that_do_not_divide_into_kv_groups(tiny_models, tmp_path):
    cfg = CompressionConfig(methods=["prune_heads"], keep_heads=3)
    with pytest.raises(ConfigError, match=r"keep_heads=3 does not divide into whole KV groups.*multiple of 2 "
                                          r"\(one of: 2, 4, 6, 8\)"):
        apply_compression(tiny_models["qwen3"], cfg, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(str(tmp_path / "gpt2"))
    with pytest.raises(UnsupportedModelError, match="model type 'gpt2'.*Supported model types: llama, mistral, qwen3, exaone4"):
        load_model(tmp_path / "gpt2")


def test_missing_tokenizer_is_named(tiny_models, tmp_path):
    folder = tmp_path / "no_tok"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_models["llama"] / name, folder / name)
    with pytest.raises(TokenizerError, match="no tokenizer in model folder"):
        apply_compression(folder, CompressionConfig(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_baseline_from_another_model_is_refused(tiny_models, heldout, tmp_path):
    from koforge.compress import evaluate_compressed

    measure = MeasureConfig(texts=str(heldout), max_docs=3, context=32, stride=16, new_tokens=3, repeats=1,
                            warmup=0, prompts=["가"])
    base = run_baseline(tiny_models["llama"], measure, output=tmp_path / "baseline_result.json")
    apply_compression(tiny_models["qwen3"], CompressionConfig(methods=["drop_layers"], drop_strategy="top",
                                                              keep_layers=2), tmp_path / "small_qwen")
    with pytest.raises(DataError, match="was measured on another model.*compressed from"):
        evaluate_compressed(tmp_path / "small_qwen", tmp_path / "baseline_result.json")
    assert not (tmp_path / "small_qwen" / "eval_result.json").exists()
    # The same check without provenance: another tokenizer is refused too.
    model, tok = load_model(tiny_models["llama"])
    fp = dict(model_fingerprint(model, tok), tokenizer_sha="0" * 16)
    with pytest.raises(DataError, match="another tokenizer"):
        check_same_base(base, fp, None, "other")


def test_cli_reports_one_red_line_and_writes_nothing(tiny_models, tmp_path):
    from koforge.cli.main import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compress", "apply", str(tiny_models["exaone4"]), "--out", str(out),
                                      "methods=[drop_layers]", "drop_strategy=top", "keep_layers=0"])
    assert result.exit_code == 1
    assert "error:" in result.output and "keep_layers=0 out of range" in result.output
    assert "Traceback" not in result.output and not out.exists()
    result = CliRunner().invoke(app, ["compress", "apply", str(tiny_models["exaone4"]), "--out", str(out),
                                      "methods=[prune_heads]", "keep_heads=5"])
    assert result.exit_code == 1 and "multiple of 2" in result.output and not out.exists()


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="compression.methods"):
        CompressionConfig(methods=["distill_everything"])
    with pytest.raises(ConfigError, match="needs compression.keep_layers"):
        CompressionConfig(methods=["drop_layers"], drop_strategy="importance")
    with pytest.raises(ConfigError, match="measure.stride"):
        MeasureConfig(context=16, stride=32)
