"""Bad inputs: one clear KoforgeError, nothing written, no existing output touched."""
from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from koforge._utils.errors import (ConfigError, ModelLoadError, NothingToDoError, OutputExistsError,
                                   TokenizerError)
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.diff import diff_vocabularies
from koforge.vocab.expand import EmbeddingResizeError, expand_vocabulary, resize_embeddings


def test_donor_equal_to_base_writes_nothing(model_dirs, tmp_path, monkeypatch):
    def no_model_needed(*args, **kwargs):
        raise AssertionError("the model was loaded before the tokenizer checks")

    monkeypatch.setattr("koforge.vocab.expand.load_model", no_model_needed)
    out = tmp_path / "out"
    with pytest.raises(NothingToDoError, match="no token to add"):
        expand_vocabulary(model_dirs["qwen3"], model_dirs["qwen3"], ExpansionConfig(), out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_nothing_left_after_filter(model_dirs, tok_dirs, tmp_path):
    with pytest.raises(NothingToDoError, match="Nothing was written"):
        diff_vocabularies(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(pattern="x{50}"), output=tmp_path / "d.json")
    assert not (tmp_path / "d.json").exists()


def test_unloadable_base_and_donor_are_named(tok_dirs, model_dirs, tmp_path):
    with pytest.raises(TokenizerError, match="nope"):
        expand_vocabulary(tmp_path / "nope", tok_dirs["donor"], ExpansionConfig(), tmp_path / "out")
    with pytest.raises(TokenizerError, match="donor tokenizer"):
        expand_vocabulary(model_dirs["qwen3"], tmp_path / "missing-donor", ExpansionConfig(), tmp_path / "out")
    # a tokenizer folder is not a model: named, with the reason
    with pytest.raises(ModelLoadError, match="base model"):
        expand_vocabulary(tok_dirs["base"], tok_dirs["donor"], ExpansionConfig(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoint_missing_weights_is_refused(model_dirs, tok_dirs, tmp_path):
    """transformers would fill the missing layer with random weights; the expanded model would hide that."""
    from checkpoint_edits import copy_without

    broken = copy_without(model_dirs["bert"], tmp_path / "broken", ".layer.1.")
    with pytest.raises(ModelLoadError, match=r"lacks 16 weights of BertModel \(encoder\.layer\.1\..*incomplete"):
        expand_vocabulary(broken, tok_dirs["donor"], ExpansionConfig(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_mode_rejects_wordpiece_and_names_the_alternative(model_dirs, tok_dirs, tmp_path):
    with pytest.raises(TokenizerError, match="supports BPE.*added-tokens"):
        expand_vocabulary(model_dirs["bert"], tok_dirs["donor"], ExpansionConfig(mode="merge"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_embeddings_that_cannot_be_resized():
    class NoEmbeddings(torch.nn.Module):
        def get_input_embeddings(self):
            raise NotImplementedError("custom model")

    class Quantized(torch.nn.Module):
        def get_input_embeddings(self):
            return torch.nn.Linear(2, 2)

    with pytest.raises(EmbeddingResizeError, match="cannot be resized"):
        resize_embeddings(NoEmbeddings(), 10, None)
    with pytest.raises(EmbeddingResizeError, match="Linear"):
        resize_embeddings(Quantized(), 10, None)


def test_existing_output_is_kept_without_overwrite(model_dirs, tok_dirs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(), out)
    assert (out / "keep.txt").read_text() == "precious"
    with pytest.raises(ConfigError, match="base model folder itself"):
        expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(), model_dirs["qwen3"], overwrite=True)


@pytest.mark.parametrize("kwargs,match", [({"mode": "bpe"}, "mode must be"), ({"init": "zeros"}, "init must be"),
                                          ({"min_frequency": 3}, "needs a reference"), ({"pattern": "("}, "not a valid regex"),
                                          ({"script": "latin"}, "script must be"), ({"max_new_tokens": 0}, "max_new_tokens")])
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ExpansionConfig(**kwargs)


def test_cli_bad_inputs_are_one_red_line(model_dirs, tok_dirs, tmp_path):
    from koforge.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["expand", "apply", str(model_dirs["qwen3"]), str(model_dirs["qwen3"]), str(tmp_path / "o")])
    assert result.exit_code == 1 and "no token to add" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["expand", "apply", str(model_dirs["bert"]), str(tok_dirs["donor"]), str(tmp_path / "o"), "mode=merge"])
    assert result.exit_code == 1 and "added-tokens" in result.output
    result = runner.invoke(app, ["expand", "diff", str(model_dirs["qwen3"]), str(tok_dirs["donor"]), "-o", str(tmp_path / "d.json"), "bogus=1"])
    assert result.exit_code == 1 and "bogus" in result.output
    assert not (tmp_path / "o").exists()


def test_apply_takes_an_edited_token_list(model_dirs, tok_dirs, tmp_path):
    """diff -> edit the JSON -> apply --tokens: exactly the kept tokens are added, in the file's order."""
    import json

    from koforge._utils.errors import DataError, InputPathError
    from koforge.cli.main import app

    diff_vocabularies(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(), output=tmp_path / "d.json")
    data = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    data["tokens"] = data["tokens"][:10][::-1]
    (tmp_path / "d.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(mode="added-tokens"),
                               tmp_path / "out", tokens=tmp_path / "d.json")
    assert result.report["added_tokens"] == [t["text"] for t in data["tokens"]]
    with pytest.raises(InputPathError, match=r"token list \(diff JSON\) '.*' is a folder; pass the JSON file itself"):
        expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], None, tmp_path / "out2", tokens=tmp_path)
    (tmp_path / "bad.json").write_text('{"tokens": {"text": "x"}}', encoding="utf-8")
    with pytest.raises(DataError, match="not a token list of `koforge expand diff`"):
        expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], None, tmp_path / "out2", tokens=tmp_path / "bad.json")
    # A hand-edited entry is named by its index and what it lacks; so is a repeated token.
    for edit, message in (({"text": "새토큰"}, r"tokens\[10\] \(\{\"text\": \"새토큰\"\}\) lacks donor_token, donor_id"),
                          ({**data["tokens"][0], "donor_id": "7"}, r"tokens\[10\] .* has donor_id '7', not an integer"),
                          (data["tokens"][0], re.escape(f"the token text {data['tokens'][0]['text']!r} more than once"))):
        (tmp_path / "bad.json").write_text(json.dumps({"tokens": data["tokens"] + [edit]}, ensure_ascii=False),
                                           encoding="utf-8")
        with pytest.raises(DataError, match=message):
            expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], None, tmp_path / "out2", tokens=tmp_path / "bad.json")
    assert not (tmp_path / "out2").exists()
    r = CliRunner().invoke(app, ["expand", "apply", str(model_dirs["qwen3"]), str(tok_dirs["donor"]), str(tmp_path / "out3"),
                                 "--tokens", str(tmp_path / "d.json")])
    assert r.exit_code == 0, r.output
    # A hand-added token the base already has would get a second id and move its text off the old one: left out.
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(model_dirs["qwen3"])
    old_piece = next(t for t in base.convert_ids_to_tokens(range(200, 400)) if base.convert_tokens_to_string([t]).strip())
    old_text = base.convert_tokens_to_string([old_piece])
    data["tokens"].insert(0, {"text": old_text, "donor_token": old_piece, "donor_id": 5})
    (tmp_path / "d2.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(mode="added-tokens"),
                               tmp_path / "out4", tokens=tmp_path / "d2.json")
    assert old_text not in result.report["added_tokens"] and len(result.report["added_tokens"]) == 10
    expanded = AutoTokenizer.from_pretrained(tmp_path / "out4")
    assert expanded(old_text, add_special_tokens=False)["input_ids"] == base(old_text, add_special_tokens=False)["input_ids"]
    from koforge._utils.errors import NothingToDoError

    (tmp_path / "known.json").write_text(json.dumps({"tokens": [data["tokens"][0]]}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(NothingToDoError, match="every token of '.*known.json' is already in base"):
        expand_vocabulary(model_dirs["qwen3"], tok_dirs["donor"], None, tmp_path / "out5", tokens=tmp_path / "known.json")
    assert not (tmp_path / "out5").exists()


@pytest.mark.parametrize("key,what", [("reference", "reference corpus"), ("korean_eval", "Korean eval text"),
                                      ("english_eval", "English eval text")])
def test_non_utf8_text_file_is_named_by_its_role(model_dirs, tok_dirs, tmp_path, key, what):
    """A cp949 file given as reference= was reported as the 'Korean eval text' (the report reads it too)."""
    from koforge.cli.main import app

    cp949 = tmp_path / "ko_cp949.txt"
    cp949.write_bytes("안녕하세요 반갑습니다\n".encode("cp949"))
    result = CliRunner().invoke(app, ["expand", "apply", str(model_dirs["qwen3"]), str(tok_dirs["donor"]),
                                      str(tmp_path / "out"), f"{key}={cp949}"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    squashed = "".join(result.output.split())  # rich wraps long paths anywhere
    assert "".join(f"{what} '{cp949}' is not UTF-8".split()) in squashed and "iconv-fcp949" in squashed, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override", ["max_new_tokens=3", "script=any", "pattern=.+"])
def test_apply_refuses_token_selection_overrides_that_tokens_would_ignore(model_dirs, tok_dirs, tmp_path, override):
    """With --tokens the list is the file's: a selection override would silently add the whole list instead."""
    from koforge.cli.main import app

    diff_vocabularies(model_dirs["qwen3"], tok_dirs["donor"], ExpansionConfig(), output=tmp_path / "d.json")
    r = CliRunner().invoke(app, ["expand", "apply", str(model_dirs["qwen3"]), str(tok_dirs["donor"]), str(tmp_path / "o"),
                                 "--tokens", str(tmp_path / "d.json"), override])
    assert r.exit_code == 1, r.output
    assert override.split("=")[0] in r.output and "--tokens" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_truncated_base_weights_are_named_as_corrupted(model_dirs, tok_dirs, tmp_path):
    """The message said "Check that the folder holds config.json and model.safetensors", which it does."""
    from checkpoint_edits import truncated_copy

    broken = truncated_copy(model_dirs["qwen3"], tmp_path / "broken")
    with pytest.raises(ModelLoadError, match="weights of '.*broken' cannot be read .*corrupted or truncated") as e:
        expand_vocabulary(broken, tok_dirs["donor"], ExpansionConfig(), tmp_path / "out")
    assert "Check that the folder holds" not in str(e.value)
    assert not (tmp_path / "out").exists()
