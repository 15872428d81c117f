"""Run folders shaped like koforge outputs, for the report tests (not a test module)."""
from __future__ import annotations

from pathlib import Path

from koforge._utils.io import write_json
from koforge.eval.schema import EvalResult, write_result


def png(path: Path, values=(1.0, 3.0, 2.0)) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.bar(range(len(values)), values)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def make_run(root: Path, spearman: float, model: str = "minilm") -> Path:
    """A run with an eval result, a tokenizer table + plot, a settings file, a model folder and noise."""
    write_result(EvalResult(task="korsts", model=f"/models/{model}", metrics={"spearman": spearman, "pearson": 0.5},
                            primary_metric="spearman", settings={"split": "test", "pairs": 1379},
                            tables={"per_genre": [{"genre": "news", "spearman": 0.31}]}), root / "embed")
    write_json(root / "tokenizer" / "comparison.json",
               {"reference": "minilm", "rows": [{"tokenizer": "koforge-bpe", "chars_per_token": 2.51},
                                                {"tokenizer": "minilm", "chars_per_token": 0.8}]})
    png(root / "tokenizer" / "chars_per_token.png")
    write_json(root / "config.json", {"vocab_size": 8000, "train": {"lr": 0.001}})
    (root / "lm").mkdir(parents=True, exist_ok=True)
    (root / "lm" / "generations.txt").write_text("안녕하세요 -> 안녕하세요 반갑습니다\n", encoding="utf-8")
    model_dir = root / "embed" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "model.safetensors").write_bytes(b"\0" * 16)
    write_json(model_dir / "config.json", {"hidden_size": 384, "SHOULD_NOT_APPEAR": 1})
    write_json(model_dir / "tokenizer.json", {"model": {"vocab": {"SHOULD_NOT_APPEAR": 0}}})
    write_json(root / "mlruns" / "meta.json", {"SHOULD_NOT_APPEAR": 1})
    return root
