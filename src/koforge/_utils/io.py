"""Atomic output: write to a temporary sibling, then rename.

An interrupted run never leaves a half-written file or folder under the final
name, and an existing output is never replaced unless the caller asks. An
output that cannot be created (a parent is a file, no write permission) is an
`OutputPathError` naming the path, raised by `check_output` before any work.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from koforge._utils.errors import InputPathError, OutputExistsError, OutputPathError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, is_dir: bool) -> None:
    # mkdtemp/mkstemp create 0700/0600 for safety; the final output gets the usual umask-based mode.
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def publish_modes_below(folder: Path) -> None:
    """Give every file and folder below `folder` at least the umask-based mode: safetensors >= 0.8 writes its
    files 0600 (through a temp file of its own), which left the weights unreadable by other users (a grader,
    a server) beside 0644 configs. Bits already set (e.g. executable) are kept."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name, wanted in [(d, 0o777 & ~mask) for d in dirs] + [(f, 0o666 & ~mask) for f in files]:
            p = os.path.join(root, name)
            if os.path.islink(p):
                continue
            mode = os.stat(p).st_mode & 0o7777
            if mode | wanted != mode:
                os.chmod(p, mode | wanted)


def require_path(path: str | os.PathLike, what: str = "input") -> Path:
    """Return `path` as a Path, or raise naming it when it does not exist."""
    p = Path(path).expanduser()
    if not p.exists():
        where = "" if p.is_absolute() else f" (it is resolved from {Path.cwd()})"
        raise InputPathError(f"{what} not found: '{p}'. Check the path{where}.")
    return p


def _check_creatable(p: Path) -> None:
    """Raise unless `p` can be created: its nearest existing ancestor must be a writable folder."""
    for ancestor in p.parents:
        if ancestor.exists():  # False also when a component is a file (ENOTDIR), so walk on up
            break
    else:
        return
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot create output '{p}': '{ancestor}' is a file, not a folder. Choose another output path.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot create output '{p}': no write permission in '{ancestor}'. Choose another output path.")


def check_output(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an existing output unless `overwrite`, one that cannot be created, or one that is (or holds)
    one of the command's `inputs`; return it as a Path."""
    p = Path(path).expanduser()
    check_not_an_input(p, inputs)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"output '{p}' already exists. Pass --overwrite (overwrite=True) or choose another path.")
    _check_creatable(p)
    return p


def check_not_an_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is, or is a folder holding, one of the existing `inputs`, or that would replace a
    file inside an input folder (a tokenizer's own tokenizer.json, a model's weights). A new file, or a folder
    (a report inside the run it reports on), may be written into an input folder."""
    p = Path(output).expanduser().resolve()
    for source in inputs:
        s = Path(source).expanduser()
        if not s.exists():
            continue
        where = "is" if p == s.resolve() else "holds" if p in s.resolve().parents else \
            "is inside" if p.is_file() and s.resolve() in p.parents else None
        if where:
            raise OutputPathError(f"output '{output}' {where} the input '{source}': writing it would replace what is "
                                  "being read. Choose another output path.")


def check_folder_output(path: str | os.PathLike) -> Path:
    """For an output folder a command adds to or continues (a training run resumed): refuse a file there, an
    existing folder it cannot write into, or one that cannot be created; return it as a Path."""
    p = Path(path).expanduser()
    if not p.exists():
        _check_creatable(p)
    elif not p.is_dir():
        raise OutputPathError(f"output '{p}' is a file, but this output is a folder. Choose another output path.")
    elif not os.access(p, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write into output '{p}': no write permission. Choose another output path.")
    return p


def check_file_output(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """`check_output` for an output that is one file: an existing folder there is refused up front."""
    final = check_output(path, overwrite, inputs)
    if final.is_dir():  # os.replace cannot put a file there, and would leave the temporary file behind
        raise OutputPathError(f"output '{final}' is a folder, but this output is a file. Give a file path (a new "
                              "name, or one inside that folder).")
    return final


@contextlib.contextmanager
def _output_errors(final: Path) -> Iterator[None]:
    """Turn an OSError while creating `final`'s folder or temporary sibling into an `OutputPathError`."""
    try:
        yield
    except OSError as e:
        raise OutputPathError(f"cannot create output '{final}': {e.strerror or e}"
                              f"{f' (at {e.filename!s})' if e.filename else ''}. Choose another output path.") from None


def _make_parents(final: Path) -> list[Path]:
    """Create `final`'s missing parent folders; returns them, deepest first."""
    created = []
    parent = final.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove folders a failed write created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False,
               inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder that replaces `path` only if the block succeeds (never one of `inputs`)."""
    final = check_output(path, overwrite, inputs)
    with _output_errors(final):
        created = _make_parents(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(created)
        raise
    publish_modes_below(tmp)
    _publish_mode(tmp, is_dir=True)
    if final.exists():
        # Move the old output aside first so a failure here still leaves one of the two.
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        tmp.rename(final)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = True,
                inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary file path that is renamed onto `path` on success (never one of `inputs`)."""
    final = check_file_output(path, overwrite, inputs)
    with _output_errors(final):
        created = _make_parents(final)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(created)
        raise
    _publish_mode(tmp, is_dir=False)
    try:
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputPathError(f"cannot write output '{final}': {e.strerror or e}. Choose another output path.") from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write JSON (UTF-8, Korean kept readable, indented)."""
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def utf8_hint(path: Path) -> str:
    """How to convert a non-UTF-8 file (Korean Windows text is usually cp949)."""
    return f"Convert it to UTF-8, e.g. `iconv -f cp949 -t utf-8 '{path}' > utf8_{path.name}` for Korean Windows text."


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, naming the file on a missing path or a parse error."""
    p = require_path(path, what)
    if p.is_dir():
        raise InputPathError(f"{what} '{p}' is a folder; pass the JSON file itself.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise InputPathError(f"{what} '{p}' is not UTF-8 (byte {e.start}: {e.object[e.start]:#04x}). Convert it, "
                             f"e.g. `iconv -f cp949 -t utf-8 '{p}'` for Korean Windows text.") from None
    except json.JSONDecodeError as e:
        raise InputPathError(f"{what} '{p}' is not valid JSON ({e}). Regenerate it or fix the file.") from None
