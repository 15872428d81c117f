"""`cli_errors`: a library error is one line on stderr, printed as text (brackets are not rich markup)."""
from __future__ import annotations

import typer
from typer.testing import CliRunner

from koforge._utils.errors import ConfigError
from koforge.cli._common import cli_errors

runner = CliRunner()


def _app(error: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @cli_errors
    def run() -> None:
        raise error

    return app


def test_a_message_with_brackets_is_printed_whole():
    message = "setting keep_layers needs its method in the recipe: add it, e.g. methods=[drop_layers] or [bold]x[/]."
    r = runner.invoke(_app(ConfigError(message)), [])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().replace("\n", " ") == f"error: {message}"


def test_a_file_system_error_names_the_path_whole():
    r = runner.invoke(_app(PermissionError(13, "Permission denied", "/data/[2024]/out")), [])
    assert r.exit_code == 1
    assert r.output.strip() == "error: cannot access '/data/[2024]/out': Permission denied."


def test_every_help_example_prints_as_written():
    """Every command's --help has an example, printed as written. Rich markup would eat an unescaped [..] in an example ("methods=[drop_layers,heal]" printed as "methods=")."""
    import re

    import typer
    from typer.testing import CliRunner

    from koforge.cli.main import app

    def commands(group, path):
        for name, cmd in getattr(group, "commands", {}).items():
            yield [*path, name], cmd
            yield from commands(cmd, [*path, name])

    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in commands(root, []):
        examples = [line.strip() for line in (cmd.help or "").splitlines() if line.strip().startswith("Example")]
        if getattr(cmd, "commands", None):  # a group: its commands carry the examples
            continue
        assert examples, f"'koforge {' '.join(path)} --help' shows no example"
        shown = " ".join(CliRunner().invoke(app, [*path, "--help"], terminal_width=400).output.split())
        shown = re.sub(r"[│╭╮╰╯─]", " ", shown)
        shown = " ".join(shown.split())
        for example in examples:
            assert " ".join(example.replace("\\[", "[").split()) in shown, (path, example)
            checked += 1
    assert checked >= 20


def test_paths_passed_on_as_overrides_are_kept_as_typed(tmp_path, monkeypatch):
    """`lm train --data` became `data_dir=PATH`, read as YAML: '실험 #3/shards' was cut to '실험' at the comment
    sign, and a folder named 'on' became 'True'."""
    from typer.testing import CliRunner

    from koforge.cli.main import app

    monkeypatch.chdir(tmp_path)
    for data in (str(tmp_path / "실험 #3" / "shards"), "on", "[v2]"):
        r = CliRunner().invoke(app, ["lm", "train", "--data", data, "--out", str(tmp_path / "run")])
        assert r.exit_code == 1 and f"shard folder not found: '{data}'" in " ".join(r.output.split()), r.output
