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
    cfg = CompressionConfig(methods=["drop_layers"], drop_strategy="explicit", drop_indices=[1, 1])
    with pytest.raises(ConfigError, match=r"drop_indices names layer\(s\) \[1\] more than once"):
        apply_compression(tiny_models["llama"], cfg, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"keep_fraction=1.5 must be in \(0, 1\]"):
        CompressionConfig(methods=["drop_layers"], drop_strategy="top", keep_fraction=1.5)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_the_drop_half_preset_keeps_half_of_any_model(tiny_models, heldout, tmp_path):
    """keep_fraction, not a layer count fitted to one model (it kept 4 of 4 here, and would keep 4 of 30)."""
    from koforge.config import load_config

    cfg = load_config(CompressionConfig, "drop_half_heal", ["heal_steps=1", "calibration_docs=2", f"calibration_texts={heldout}"],
                      group="compress")
    assert cfg.layers_kept(30) == 15 and cfg.layers_kept(4) == 2 and cfg.layers_kept(1) == 1
    # A count given over the preset wins (the preset's fraction is not the user's to unset).
    assert load_config(CompressionConfig, "drop_half_heal", ["keep_layers=3"], group="compress").layers_kept(30) == 3
    out = apply_compression(tiny_models["llama"], cfg, tmp_path / "half")
    assert out["before"]["number_of_layers"] == 4 and out["after"]["number_of_layers"] == 2


def test_output_onto_the_base_folder_is_refused_even_with_overwrite(tiny_models, tmp_path):
    import shutil

    from koforge._utils.errors import ConfigError

    base = shutil.copytree(tiny_models["llama"], tmp_path / "base")
    before = sorted(p.name for p in base.iterdir())
    with pytest.raises(ConfigError, match="is the base model folder itself"):
        apply_compression(base, CompressionConfig(methods=["convert_dtype"]), base, overwrite=True)
    assert sorted(p.name for p in base.iterdir()) == before


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
    # Without provenance (a packaged model/), the same embeddings confirm the base; others leave only the tokenizer.
    fp = model_fingerprint(model, tok)
    assert check_same_base(base, fp, None, "same") == "embeddings"
    assert check_same_base(base, dict(fp, embed_checksum=fp["embed_checksum"] + 1), None, "other") == "tokenizer only"


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
    with pytest.raises(ConfigError, match="measure.new_tokens must be >= 2"):
        MeasureConfig(new_tokens=1)
    # A setting whose method is not in the recipe would do nothing: refused, not ignored.
    with pytest.raises(ConfigError, match=r"keep_layers is set but method drop_layers is not in .*methods=\[drop_layers\]"):
        CompressionConfig(keep_layers=6)
    # Healing and int8 need float32 weights: a cast before them is refused before any work.
    with pytest.raises(ConfigError, match=r"heal needs float32 weights but runs after convert_dtype to bf16.*"
                                          r"methods=\[drop_layers, heal, convert_dtype\]"):
        CompressionConfig(methods=["drop_layers", "convert_dtype", "heal"], keep_layers=2, dtype="bf16")
    with pytest.raises(ConfigError, match="convert_dtype after quantize_int8"):
        CompressionConfig(methods=["quantize_int8", "convert_dtype"], dtype="fp32")
    CompressionConfig(methods=["drop_layers", "heal", "convert_dtype"], keep_layers=2, dtype="bf16")


def test_corrupted_or_incomplete_weights_are_one_message(tiny_models, tmp_path):
    from checkpoint_edits import copy_without, truncated_copy

    from koforge._utils.errors import ModelLoadError
    from koforge.compress import package_submission

    truncated = truncated_copy(tiny_models["llama"], tmp_path / "truncated")
    with pytest.raises(ModelLoadError, match="safetensors file is corrupted or truncated. Re-download or re-save"):
        load_model(truncated)
    with pytest.raises(ModelLoadError, match="corrupted or truncated"):
        package_submission(truncated, tmp_path / "submit.zip")
    incomplete = copy_without(tiny_models["llama"], tmp_path / "incomplete", "layers.3.")
    with pytest.raises(ModelLoadError, match=r"lacks 9 weights of its architecture \(e.g. model.layers.3."):
        load_model(incomplete)
    assert not (tmp_path / "submit.zip").exists()
    import json
    import shutil

    wider = shutil.copytree(tiny_models["llama"], tmp_path / "wider")  # a config that is not the weights' own
    config = json.loads((wider / "config.json").read_text())
    (wider / "config.json").write_text(json.dumps({**config, "intermediate_size": 2 * config["intermediate_size"]}))
    from koforge.eval.loading import load_causal_lm
    from koforge.vocab.loading import load_model as load_base

    for load in (load_model, load_base, load_causal_lm):
        with pytest.raises(ModelLoadError, match="do not fit its config.json .*tensor shapes differ") as err:
            load(str(wider))
        assert "above report" not in str(err.value)


def test_mistyped_relative_path_fails_at_once_offline(tmp_path, monkeypatch):
    from koforge._utils.errors import ModelLoadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=r"model 'models/llamaa' not found: there is no file or folder "
                                             r"'.*models/llamaa'.*hub is off"):
        load_model("models/llamaa")


def test_existing_baseline_is_kept_without_overwrite(tiny_models, heldout, tmp_path):
    from koforge._utils.errors import OutputExistsError

    measure = MeasureConfig(texts=str(heldout), max_docs=2, context=32, stride=16, new_tokens=2, repeats=1,
                            warmup=0, prompts=["가"])
    out = tmp_path / "config.json"
    out.write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_baseline(tiny_models["llama"], measure, output=out)
    assert out.read_text() == "precious"
    assert run_baseline(tiny_models["llama"], measure, output=out, overwrite=True)["kind"] == "koforge.compress.baseline"


def test_measurements_past_the_position_limit_are_refused(tiny_models, heldout, tmp_path):
    """The tiny models attend to 512 positions: a 2,000-token window would still run, and record a wrong baseline."""
    base = dict(texts=str(heldout), max_docs=2, repeats=1, warmup=0, prompts=["가"])
    with pytest.raises(ConfigError, match=r"measure.context=2000 is longer than the model attends to "
                                          r"\(max_position_embeddings=512\)"):
        run_baseline(tiny_models["llama"], MeasureConfig(context=2000, stride=1000, new_tokens=2, **base),
                     output=tmp_path / "b.json")
    with pytest.raises(ConfigError, match=r"the speed test would reach position \d+ .* past max_position_embeddings=512"):
        run_baseline(tiny_models["llama"], MeasureConfig(context=32, stride=16, new_tokens=600, **base),
                     output=tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


def test_cli_apply_refuses_the_measure_preset_and_two_text_sources(tiny_models, heldout, tmp_path):
    from koforge.cli.main import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compress", "apply", str(tiny_models["llama"]), "--out", str(out), "--preset", "measure"])
    assert result.exit_code == 1 and "not a recipe" in result.output
    result = CliRunner().invoke(app, ["compress", "apply", str(tiny_models["llama"]), "--out", str(out), "--texts",
                                      str(heldout), "--baseline", str(tmp_path / "b.json")])
    assert result.exit_code == 1 and "not both" in result.output and not out.exists()
    result = CliRunner().invoke(app, ["compress", "package", str(tiny_models["llama"]), "--out", str(tmp_path / "s.zip"),
                                      "--transformers-version", "4..54"])
    assert result.exit_code == 1 and "not a version like 4.54.0" in result.output


def test_cut_that_transformers_refuses_to_save_is_refused_before_any_work(tiny_models, tmp_path):
    """transformers 5 refuses a Llama config whose hidden_size is not a multiple of num_attention_heads (on save and
    load), so such a cut used to fail with a raw traceback at save time, after every slow step."""
    from transformers import AutoModelForCausalLM

    with pytest.raises(ConfigError, match=r"compression.keep_heads=6 gives a llama config that transformers refuses "
                                          r"to save and load \(The hidden size \(64\) is not a multiple of the number "
                                          r"of attention heads \(6\)\); choose keep_heads from: 2, 4, 8\.$"):
        apply_compression(tiny_models["llama"], CompressionConfig(methods=["prune_heads"], keep_heads=6,
                                                                  head_importance="magnitude"), tmp_path / "out")
    with pytest.raises(ConfigError, match=r"compression.hidden_size=50 gives a llama config .* choose a hidden_size it "
                                          r"accepts, e.g. 48 or 56\.$"):
        apply_compression(tiny_models["llama"], CompressionConfig(methods=["reduce_width"], hidden_size=50,
                                                                  width_importance="magnitude"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    # Qwen3 has an explicit head_dim and no such rule: 6 of 8 heads saves and reloads as the same network.
    out = apply_compression(tiny_models["qwen3"], CompressionConfig(methods=["prune_heads"], keep_heads=6,
                                                                    head_importance="magnitude"), tmp_path / "q")
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "q"))
    assert out["reload_max_diff"] == 0.0
    assert (plain.config.num_attention_heads, plain.config.num_key_value_heads, plain.config.head_dim) == (6, 3, 8)


def test_keep_heads_out_of_range_lists_the_valid_values(tiny_models):
    from koforge.compress.heads import check_keep_heads
    from koforge.compress.layout import load_model_config

    cfg = load_model_config(tiny_models["qwen3"])
    with pytest.raises(ConfigError, match=r"^keep_heads=16 out of range: the model has 8 query heads per layer \(4 KV "
                                          r"groups of 2\), so keep_heads must be one of: 2, 4, 6, 8\.$"):
        check_keep_heads(cfg, 16)


def test_recipes_that_would_misapply_a_setting_are_refused():
    # drop_indices without drop_strategy=explicit used to fail with "drop_strategy=importance needs keep_layers".
    with pytest.raises(ConfigError, match=r"^compression.drop_indices is set but drop_strategy is importance, which "
                                          r"ignores it; add drop_strategy=explicit"):
        CompressionConfig(methods=["drop_layers"], drop_indices=[1])
    # A repeated cut used to run twice: explicit indices then named layers of the already-cut model.
    with pytest.raises(ConfigError, match=r"lists drop_layers twice.*Only heal may repeat"):
        CompressionConfig(methods=["drop_layers", "heal", "drop_layers"], drop_strategy="explicit", drop_indices=[1])
    CompressionConfig(methods=["drop_layers", "heal", "heal"], drop_strategy="top", keep_layers=2)
    # threads=0 was silently "leave as is"; a negative count crashed torch after the perplexity was measured.
    for threads in (0, -1):
        with pytest.raises(ConfigError, match=rf"measure.threads must be >= 1 .*got {threads}\."):
            MeasureConfig(threads=threads)


def test_missing_calibration_text_names_the_steps_and_the_fix(tiny_models, heldout, tmp_path):
    cfg = CompressionConfig(methods=["prune_heads", "heal"], keep_heads=4, heal_steps=1)
    with pytest.raises(ConfigError, match=r"^prune_heads \(head_importance=activation\) and heal need calibration "
                                          r"text: give the held-out file \(--texts, measure.texts;.*or "
                                          r"compression.calibration_texts=FILE\.$"):
        apply_compression(tiny_models["llama"], cfg, tmp_path / "out")
    short = tmp_path / "short.txt"
    short.write_text("".join(heldout.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"held-out file '.*short.txt' has no documents past the 3 its perplexity "
                                          r"reads.*set compression.calibration_texts=FILE"):
        apply_compression(tiny_models["llama"], cfg, tmp_path / "out", measure=MeasureConfig(texts=str(short)))
    assert not (tmp_path / "out").exists()


def test_a_bad_jsonl_line_is_named_by_its_line_in_the_file(tmp_path):
    from koforge._utils.errors import DataError
    from koforge.compress.calibration import load_texts

    bad = tmp_path / "t.jsonl"
    bad.write_text('{"text": "가"}\n\n{bad\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 of '.*t.jsonl' is not JSON"):
        load_texts(bad)
    bad.write_text('{"text": "가"}\n["list"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 of '.*t.jsonl' has no field 'text' \(fields: list\)"):
        load_texts(bad)
