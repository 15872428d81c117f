"""build_report: what the HTML and markdown pages hold, what they skip, and bad input."""
from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import InputPathError, NothingToDoError, OutputExistsError
from koforge._utils.io import write_json
from koforge.report import build_report, collect_runs
from report_fixtures import make_run, png


def test_single_run_report_has_tables_images_settings_and_no_model_files(tmp_path):
    run = make_run(tmp_path / "run", 0.42)
    html_path = build_report([run], tmp_path / "out")
    html = html_path.read_text(encoding="utf-8")
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    # Self-contained: the one plot is inline, nothing is fetched.
    assert html.count('src="data:image/png;base64,') == 1
    assert not re.search(r'(src|href)="(http|file|/)', html)
    for page in (html, md):
        assert "0.42" in page and "spearman" in page and "koforge-bpe" in page and "2.51" in page
        assert "vocab_size" in page and "train.lr" in page  # settings, flattened
        assert "news" in page  # the eval result's own table
        assert "안녕하세요 반갑습니다" in page  # sample generations
        assert "SHOULD_NOT_APPEAR" not in page  # model folder config, tokenizer.json, mlruns
    images = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert images == ["00_chars_per_token.png"] and "(images/00_chars_per_token.png)" in md
    assert (tmp_path / "out" / ".koforge-report").exists()


def test_comparison_of_two_runs_has_one_row_per_run_and_a_plot(tmp_path):
    a, b = make_run(tmp_path / "a" / "run", 0.42), make_run(tmp_path / "b" / "run", 0.61, model="minilm-ko")
    html = build_report([a, b], tmp_path / "out").read_text(encoding="utf-8")
    assert "Comparison · korsts" in html and "a/run" in html and "b/run" in html  # same leaf names told apart
    assert html.count("data:image/png;base64,") == 3  # two tokenizer plots + the comparison bar chart
    rows = collect_runs([a, b])
    assert [r.results[0][1].primary_value for r in rows] == [0.42, 0.61]


def test_several_embed_runs_get_one_table_of_their_last_stages(tmp_path):
    runs = []
    for name, score in (("plain", 0.577), ("expanded", 0.657)):
        rows = [{"stage": "base", "korsts/spearman": 0.42},
                {"stage": "cosent", "korsts/spearman": score + 0.03, "train/steps": 900},
                {"stage": "infonce", "korsts/spearman": score, "train/steps": 400}]
        write_json(tmp_path / name / "comparison.json", {"rows": rows, "stages": []})
        runs.append(tmp_path / name)
    md = (build_report(runs, tmp_path / "out").parent / "report.md").read_text(encoding="utf-8")
    assert "| run | stage | korsts/spearman | train/steps |\n|---|---|---|---|\n| plain | infonce | 0.577 | 400 |\n" \
           "| expanded | infonce | 0.657 | 400 |" in md
    # Each run is a row of the summary too, beside eval results (its last stage, primary metric first found).
    assert ("| plain | embed train (last stage: infonce) | checkpoints/infonce/final | korsts/spearman | 0.577 | higher "
            "| comparison.json |") in md
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows"][1]["value"] == 0.657
    single = (build_report(runs[:1], tmp_path / "one").parent / "report.md").read_text(encoding="utf-8")
    assert "Last stage per run" not in single  # one run: its own comparison table says it
    assert build_report(str(runs[0]), tmp_path / "one-path").exists()  # one folder, not a list: not read letter by letter
    assert "## Summary" in single and "| embed train (last stage: infonce) | checkpoints/infonce/final | korsts/spearman | 0.577 |" in single


def test_a_model_folders_copy_of_its_runs_result_is_shown_once(tmp_path):
    """`compress run` writes eval_result.json beside model/ and a plainer one inside it: one run, one row."""
    from koforge.eval.schema import EvalResult

    run = tmp_path / "sweep" / "keep_layers=2"
    result = EvalResult(task="compress", model="m", metrics={"score": 0.6}, primary_metric="score").to_dict()
    write_json(run / "eval_result.json", {**result, "name": "drop"})
    (run / "model").mkdir()
    (run / "model" / "model.safetensors").write_bytes(b"\0" * 16)
    write_json(run / "model" / "eval_result.json", result)
    results = collect_runs([tmp_path / "sweep"])[0].results
    assert [rel for rel, _ in results] == ["keep_layers=2/eval_result.json"]


def test_sections_follow_the_run_order_of_its_steps(tmp_path):
    run = make_run(tmp_path / "run", 0.42)  # folders embed, lm, tokenizer: by name without a step list
    assert [s.title for s in collect_runs([run])[0].sections] == ["embed", "lm", "tokenizer"]
    (run / "data").mkdir()
    (run / "data" / "log.txt").write_text("prepared\n", encoding="utf-8")
    write_json(run / "demo_summary.json", {"steps": [{"step": s} for s in ("tokenizer", "embed", "lm")]})
    # Folders that are not steps (the demo's data) come first, then the steps in run order.
    assert [s.title for s in collect_runs([run])[0].sections] == ["data", "tokenizer", "embed", "lm"]


def test_report_inside_its_run_folder_is_not_read_back(tmp_path):
    run = make_run(tmp_path / "run", 0.42)
    build_report([run], run / "report")
    first = (run / "report" / "report.html").read_text(encoding="utf-8")
    build_report([run], run / "report", overwrite=True)
    second = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert second.count("data:image/png") == first.count("data:image/png") == 1


def test_bad_inputs_are_clear_errors_and_leave_nothing(tmp_path):
    with pytest.raises(InputPathError, match="not found"):
        build_report([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NothingToDoError, match="nothing to report"):
        build_report([tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    png(tmp_path / "plots" / "a.png")
    build_report([tmp_path / "plots"], tmp_path / "out")
    with pytest.raises(OutputExistsError, match="overwrite"):
        build_report([tmp_path / "plots"], tmp_path / "out")


def test_unreadable_results_are_listed_not_dropped_and_a_file_input_is_named(tmp_path):
    from koforge.report.tables import format_cell

    run = make_run(tmp_path / "run", 0.5)
    (run / "eval_broken.json").write_text("{not json", encoding="utf-8")
    bad = json.loads((run / "embed" / "eval_korsts.json").read_text(encoding="utf-8"))
    (run / "eval_bad.json").write_text(json.dumps(dict(bad, primary_metric="recall")), encoding="utf-8")
    md = (build_report([run], tmp_path / "out").parent / "report.md").read_text(encoding="utf-8")
    assert "Skipped files" in md and "eval_broken.json" in md
    assert "not valid JSON (Expecting property name enclosed in double quotes at line 1): truncated or edited" in md
    assert "eval_bad.json" in md and "recall" in md
    with pytest.raises(InputPathError, match="run folder '.*config.json' is a file"):
        build_report([run / "config.json"], tmp_path / "out2")
    assert format_cell(399840.0) == "399,840" and format_cell(3427000.0) == "3,427,000" and format_cell(0.5) == "0.5"


def test_report_cli(tmp_path):
    from koforge.cli.main import app

    run = make_run(tmp_path / "run", 0.42)
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "report.html").exists() and "korsts" in res.output
    small = make_run(tmp_path / "small", 0.0004)  # '.3f' printed it as 0.000
    res = CliRunner().invoke(app, ["report", str(small), "-o", str(tmp_path / "out3")])
    assert res.exit_code == 0 and "4.000e-04" in res.output and "0.000 " not in res.output, res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "-o", str(tmp_path / "out2")])
    assert res.exit_code == 1 and "not found" in res.output and "Traceback" not in res.output


def test_a_result_whose_metrics_are_not_a_mapping_is_skipped_not_a_traceback(tmp_path):
    """`"metrics": [0.5]` (a hand-edited or foreign file) ended the whole report in AttributeError."""
    from koforge.eval.schema import SCHEMA

    run = make_run(tmp_path / "run", 0.5)
    write_json(run / "eval_list.json", {"schema": SCHEMA, "task": "x", "model": "m", "metrics": [0.5],
                                        "primary_metric": "a"})
    write_json(run / "eval_tables.json", {"schema": SCHEMA, "task": "y", "model": "m", "metrics": {"a": 1},
                                          "primary_metric": "a", "tables": [{"a": 1}]})
    md = (build_report([run], tmp_path / "out").parent / "report.md").read_text(encoding="utf-8")
    assert "Skipped files" in md and "eval_list.json" in md and "eval_tables.json" in md
    assert "0.5" in md  # the readable results are still reported


def test_numbers_just_under_ten_thousand_are_not_shown_as_1e04():
    from koforge.report.tables import format_cell

    assert format_cell(9999.7) == "9,999.7" and format_cell(-9999.8) == "-9,999.8"
    assert format_cell(9999.4) == "9,999" and format_cell(12345.67) == "12,345.7"
