"""The README tells the truth: its commands, presets and Python API match the code.

Every `koforge ...` line of the README's ```bash blocks (also after `torchrun ... -m koforge`
and in `&&` chains) is parsed by click's own parser, as `koforge` would parse it, without
running it: the command must exist, every option must be one of its options, the positional
arguments must fit (`key=value` overrides are the commands' trailing variadic argument), and
the presets it names must be shipped. The "Python API" block is read with `ast`: its imports
must resolve, its calls must bind to the callees' signatures, its configs must accept their
values and the attributes it reads from results must exist. Nothing heavy is called.

A `# or ...` comment offers variants that are checked too (`# or superbpe-32k, sentencepiece-*`
other -p values, `# or -c merge ...` an added option); a `...` argument elides the rest, so
such a line may leave required arguments out.

Not checked: override keys (`train.steps=500`) against the configs, and prose outside code blocks.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import shlex
import typing
from functools import cache
from pathlib import Path

import pytest
import typer

from koforge._utils.errors import ConfigError
from koforge.cli.main import app
from koforge.config import configs_dir, preset_path

try:  # recent typers carry their own copy of click (typer._click); older ones use click itself
    from typer._click.exceptions import MissingParameter, UsageError
except ImportError:
    from click.exceptions import MissingParameter, UsageError

README = Path(__file__).resolve().parents[2] / "README.md"
CLI = typer.main.get_command(app)
"""The `koforge` root command as click sees it."""
ELISION = "..."
"""A token standing for "the rest as above": the line may leave out required arguments."""

PRESET_GROUPS = {
    ("data", "clean"): {"preset": "data"},
    ("tokenizer", "train"): {"preset": "tokenizer"},
    ("expand", "analyze"): {"config": "expand"},
    ("expand", "diff"): {"config": "expand"},
    ("expand", "apply"): {"config": "expand"},
    ("embed", "train"): {"recipe": "embed"},
    ("lm", "train"): {"model": "lm", "train_preset": "lm"},
    ("compress", "baseline"): {"measure": "compress"},
    ("compress", "apply"): {"preset": "compress"},
    ("compress", "run"): {"experiment": "experiments"},  # as compress.experiment.experiment_path looks them up
}
"""Command path -> {parameter: the configs/ folder its value is a preset of}."""


@dataclasses.dataclass(frozen=True)
class ReadmeCommand:
    """One `koforge` invocation written in the README."""

    line_no: int
    line: str
    argv: tuple[str, ...]
    """The arguments after `koforge`."""
    variant: str = ""
    """The `# or ...` alternative this invocation applies, if any."""

    @property
    def elided(self) -> bool:
        return ELISION in self.argv

    @property
    def id(self) -> str:
        return f"L{self.line_no}-{'-'.join(self.argv[:2])}" + (f"-or-{self.variant}" if self.variant else "")

    def __str__(self) -> str:
        return f"README.md:{self.line_no}: {self.line.strip()}" + (f"  [with '# or {self.variant}']" if self.variant else "")


# ---------------------------------------------------------------- reading the README

def fenced_blocks(language: str) -> list[tuple[int, list[str]]]:
    """(line number of the first line, lines) of every ```LANGUAGE block of the README."""
    blocks, opened = [], None  # opened: (language, first line number, lines) of the block being read
    for no, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.startswith("```"):
            if opened:
                opened[2].append(line)
        elif opened is None:
            opened = (line[3:].strip(), no + 1, [])
        else:
            if opened[0] == language:
                blocks.append(opened[1:])
            opened = None
    return blocks


def shell_lines() -> list[tuple[int, str]]:
    """(line number, text) of every line of the ```bash blocks, with `\\` continuations joined."""
    lines: list[tuple[int, str]] = []
    for first, block in fenced_blocks("bash"):
        pending = ""
        for offset, text in enumerate(block):
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            lines.append((first + offset, pending + text))
            pending = ""
    return lines


def koforge_argv(words: list[str]) -> list[str] | None:
    """The arguments after `koforge` in `koforge ...`, `torchrun ... -m koforge ...` or `python -m koforge ...`."""
    if words[:1] == ["koforge"]:
        return words[1:]
    for i in range(len(words) - 1):
        if words[i:i + 2] == ["-m", "koforge"]:
            return words[i + 2:]
    return None


def chained(words: list[str]) -> list[list[str]]:
    """The commands of an `a && b ; c` chain."""
    commands, current = [], []
    for word in words:
        if word in ("&&", "||", ";"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    return [*commands, current]


def alternatives(argv: list[str], comment: str) -> dict[str, list[str]]:
    """The variants a `# or ...` comment offers: `# or -c merge ...` adds an option, `# or a, b` other -p/--preset values."""
    option = re.match(r"or (-\S+ \S+)", comment)
    if option:
        return {option.group(1): [*argv, *option.group(1).split()]}
    names = re.fullmatch(r"or ([\w*.-]+(?:, [\w*.-]+)*)", comment)
    if not names:
        return {}
    at = next((i for i, word in enumerate(argv) if word in ("-p", "--preset")), None)
    assert at is not None, f"'# {comment}' names other presets, but the line has no -p/--preset to replace"
    return {name: [*argv[:at + 1], name, *argv[at + 2:]] for name in names.group(1).split(", ")}


@cache
def readme_commands() -> tuple[ReadmeCommand, ...]:
    """Every `koforge` invocation of the README's ```bash blocks, and the variants their comments offer."""
    found = []
    for no, line in shell_lines():
        comment = re.search(r"\s#\s*(.*)$", line)
        for words in chained(shlex.split(line, comments=True)):
            argv = koforge_argv(words)
            if argv is None:
                continue
            found.append(ReadmeCommand(no, line, tuple(argv)))
            for variant, alt in alternatives(argv, comment.group(1) if comment else "").items():
                found.append(ReadmeCommand(no, line, tuple(alt), variant))
    return tuple(found)


# ---------------------------------------------------------------- parsing as `koforge` would

def parse(command: ReadmeCommand) -> tuple[tuple[str, ...], typer.Context]:
    """(command path, the leaf command's click context): click's own dispatch and parsing, without invoking anything."""
    cmd, ctx, name, path = CLI, None, "koforge", []
    args = [a for a in command.argv if a != ELISION]
    while hasattr(cmd, "resolve_command"):  # a group: pick the sub-command by name, as click does
        ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
        if not args:
            raise UsageError(f"'koforge {' '.join(path)}' is a group; name one of its commands.", ctx)
        name, cmd, args = cmd.resolve_command(ctx, args)
        path.append(name)
    return tuple(path), cmd.make_context(name, args, parent=ctx)


def refusal(command: ReadmeCommand) -> str | None:
    """What `koforge` would answer to the line instead of running it, or None when it parses."""
    try:
        parse(command)
    except MissingParameter as e:
        # an elided line may leave out required arguments (click's resilient parsing would also hide unknown options)
        return None if command.elided else e.format_message()
    except UsageError as e:
        return e.format_message()
    return None


def missing_preset(group: str, value: str) -> str | None:
    """Why `value` is not a shipped preset of `group` (a `*` pattern must match one), or None."""
    if "*" in value:
        return None if any((configs_dir() / group).glob(f"{value}.yaml")) else f"no {group} preset matches '{value}'"
    try:
        preset_path(group, value)
    except ConfigError as e:
        return str(e)
    return None


@pytest.mark.parametrize("command", readme_commands(), ids=lambda c: c.id)
def test_readme_command_parses(command: ReadmeCommand):
    problem = refusal(command)
    assert problem is None, f"{command}\n  koforge would refuse it: {problem}"


@pytest.mark.parametrize("command", [c for c in readme_commands() if not c.elided], ids=lambda c: c.id)
def test_readme_command_names_shipped_presets(command: ReadmeCommand):
    if refusal(command) is not None:
        pytest.skip("koforge refuses the line; test_readme_command_parses reports it")
    path, ctx = parse(command)
    for param, group in PRESET_GROUPS.get(path, {}).items():
        value = ctx.params.get(param)
        if value is not None:
            problem = missing_preset(group, value)
            assert problem is None, f"{command}\n  {param}={value!r}: {problem}"


def test_the_readme_shows_every_command_group():
    """Also a guard on the extraction: a README whose blocks stopped being read would pass the tests above vacuously."""
    shown = {command.argv[0] for command in readme_commands()}
    missing = set(CLI.commands) - {"version"} - shown
    assert not missing, f"no ```bash line of README.md runs koforge {', '.join(sorted(missing))}"


@pytest.mark.parametrize("line, refusal_text", [
    ("koforge data clean -i raw/ -o clean.jsonl --no-such-option", "No such option: --no-such-option"),
    ("koforge data scrub -i raw/ -o clean.jsonl", "No such command 'scrub'"),
    ("koforge compress analyze ./model ./other", "unexpected extra argument"),
])
def test_a_line_the_cli_refuses_fails_naming_the_line(line, refusal_text):
    command = ReadmeCommand(7, line, tuple(shlex.split(line)[1:]))
    with pytest.raises(AssertionError, match=f"README.md:7: {re.escape(line)}\n.*{re.escape(refusal_text)}"):
        test_readme_command_parses(command)


# ---------------------------------------------------------------- the Python API block

@cache
def python_api() -> tuple[int, ast.Module]:
    """(line number of its first line, syntax tree) of the ```python block under '## Python API'."""
    text = README.read_text(encoding="utf-8")
    heading = text.splitlines().index("## Python API") + 1
    first, lines = next((first, lines) for first, lines in fenced_blocks("python") if first > heading)
    return first, ast.parse("\n".join(lines))


def where(node: ast.AST) -> str:
    first, _ = python_api()
    return f"README.md:{first + node.lineno - 1}: {ast.unparse(node)}"


@cache
def imported_objects() -> dict[str, object]:
    """Name -> object of every `from koforge.X import A, B` of the block (importing resolves the lazy exports)."""
    _, tree = python_api()
    objects = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("koforge"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                objects[alias.asname or alias.name] = getattr(module, alias.name, None)
    return objects


def calls_to_imported(tree: ast.Module) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id in imported_objects()]


def test_python_api_imports_resolve():
    _, tree = python_api()
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imports, "the Python API block imports nothing from koforge"
    missing = [f"{where(n)}\n  {n.module} has no '{a.name}'" for n in imports for a in n.names
               if imported_objects().get(a.asname or a.name) is None]
    assert not missing, "\n".join(missing)


def test_python_api_calls_bind_to_signatures():
    _, tree = python_api()
    problems = []
    for call in calls_to_imported(tree):
        assert not any(isinstance(a, ast.Starred) for a in call.args) and all(k.arg for k in call.keywords), where(call)
        try:
            inspect.signature(imported_objects()[call.func.id]).bind(*call.args, **{k.arg: k.value for k in call.keywords})
        except TypeError as e:
            problems.append(f"{where(call)}\n  {call.func.id}: {e}")
    assert not problems, "\n".join(problems)


def test_python_api_configs_accept_their_values():
    """The config dataclasses it builds from literals validate those values (cheap: no model, no file is touched)."""
    _, tree = python_api()
    problems = []
    for call in calls_to_imported(tree):
        cls = imported_objects()[call.func.id]
        if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls)):
            continue
        try:
            cls(*map(ast.literal_eval, call.args), **{k.arg: ast.literal_eval(k.value) for k in call.keywords})
        except (ValueError, TypeError, ConfigError) as e:
            problems.append(f"{where(call)}\n  {e}")
    assert not problems, "\n".join(problems)


def result_types(call: ast.Call) -> list[object]:
    """The annotated return type of an imported callee, split into its items when it returns a tuple."""
    callee = imported_objects()[call.func.id]
    returned = typing.get_type_hints(callee).get("return") if inspect.isfunction(callee) else callee
    return list(typing.get_args(returned)) if typing.get_origin(returned) is tuple else [returned]


def attribute_names(cls: type) -> set[str]:
    """Methods, properties, class attributes and annotated (dataclass) fields."""
    names = set(dir(cls))
    for klass in cls.__mro__:
        names |= set(getattr(klass, "__annotations__", {}))
    return names


def test_python_api_reads_attributes_its_results_have():
    """`res.added_token_ids`, `result.checkpoint_dir`: read from what the call before returned (by its annotation)."""
    _, tree = python_api()
    bound: dict[str, object] = {}  # variable -> the class of the value it holds at this point of the block
    problems = []
    for statement in tree.body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and inspect.isclass(bound.get(node.value.id)):
                cls = bound[node.value.id]
                if node.attr not in attribute_names(cls):
                    problems.append(f"{where(statement)}\n  {cls.__name__} has no '{node.attr}'")
        if isinstance(statement, ast.Assign):
            target = statement.targets[0]
            names = [getattr(e, "id", None) for e in (target.elts if isinstance(target, ast.Tuple) else [target])]
            returned = result_types(statement.value) if statement.value in calls_to_imported(tree) else []
            bound.update(dict.fromkeys(names))  # rebinding forgets what the name held
            bound.update(zip(names, returned))
    assert not problems, "\n".join(problems)
