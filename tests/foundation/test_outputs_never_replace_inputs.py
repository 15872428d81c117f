"""--overwrite never replaces what the command reads: an output that is, or holds, one of its inputs is refused
before any work, for every command that writes (the data, embed and report commands have their own tests)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koforge.cli.main import app


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def inputs(tmp_path) -> Path:
    """Stand-ins: each command is refused before it reads them, so only their paths matter."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("한국어 문장입니다.\n", encoding="utf-8")
    (tmp_path / "text.txt").write_text("한국어 문장입니다.\n", encoding="utf-8")
    for folder in ("tok", "donor", "base", "run", "hf", "model"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    (tmp_path / "model" / "model.safetensors").write_bytes(b"weights")
    return tmp_path


CASES = [
    ("tokenizer train, -o the corpus file", ["tokenizer", "train", "-i", "{d}/text.txt", "-o", "{d}/text.txt", "vocab_size=300"]),
    ("tokenizer train, -o the corpus folder", ["tokenizer", "train", "-i", "{d}/corpus", "-o", "{d}/corpus", "vocab_size=300"]),
    ("tokenizer eval, -o a text set", ["tokenizer", "eval", "{d}/tok", "-x", "{d}/text.txt", "-o", "{d}/text.txt"]),
    ("tokenizer compare, -o a tokenizer", ["tokenizer", "compare", "{d}/tok", "{d}/donor", "-x", "n={d}/text.txt", "-o", "{d}/donor"]),
    ("expand apply, output the donor", ["expand", "apply", "{d}/base", "{d}/donor", "{d}/donor"]),
    ("expand diff, -o the donor's file", ["expand", "diff", "{d}/base", "{d}/donor", "-o", "{d}/donor/tokenizer.json"]),
    ("expand analyze, -o the text", ["expand", "analyze", "{d}/base", "{d}/donor", "-t", "{d}/text.txt", "-o", "{d}/text.txt"]),
    ("lm export onto its run", ["lm", "export", "{d}/run", "{d}/run"]),
    ("lm export, --onnx a file of its run", ["lm", "export", "{d}/run", "{d}/new", "--onnx", "{d}/run/tokenizer.json"]),
    ("lm import onto its source", ["lm", "import", "{d}/hf", "{d}/hf"]),
    ("compress package onto the weights", ["compress", "package", "{d}/model", "--out", "{d}/model/model.safetensors"]),
]


@pytest.mark.parametrize("args", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_overwrite_never_replaces_an_input(inputs, args, monkeypatch):
    monkeypatch.setenv("KOFORGE_MLFLOW", "off")
    before = _snapshot(inputs)
    result = CliRunner().invoke(app, [a.format(d=inputs) for a in args] + ["--overwrite"])
    assert result.exit_code == 1, result.output
    assert "writing it would replace what is being read" in " ".join(result.output.split()), result.output
    assert _snapshot(inputs) == before and not (inputs / "new").exists()
