"""Reading files a user hands us, safely: one place for the limits every reader applies.

Every reader of logs and configs goes through these functions instead of ``open``/``read_text``/
``json.loads``/``yaml.safe_load``, so that no input can block, exhaust memory, recurse without
bound or crash the process (issue 12: a FIFO blocked ``doctor`` forever, a symlink to
``/dev/zero`` grew ``lint`` to 6 GB, a 9-level YAML alias bomb reached 3.6 GB, 1,000-deep JSON
raised ``RecursionError``):

- **regular files only**: FIFOs, character devices (``/dev/zero``), sockets and directories are
  refused. The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open
  descriptor, so a FIFO swapped in after a check cannot block the open either;
- **a size cap** (``max_bytes``), checked before reading and again while reading (a file that
  grows is cut off, never read without end);
- **bounded JSON**: nesting depth at most ``max_depth``; ``NaN``/``Infinity`` and integers too long
  for a float are kept as data (``float('nan')``, ``float('inf')``), never a crash;
- **bounded YAML**: the safe loader only (no Python tags, nothing executed), nesting depth at most
  ``max_depth`` and at most ``max_nodes`` nodes *after* alias expansion, counted while composing,
  so an alias bomb is refused before anything expands; huge integers become floats (``inf``).

Each limit raises the caller's error class (``LogReadError`` by default, ``ConfigError`` for
configs) with one line naming the file and the limit. A JSON *syntax* error is left as
:class:`json.JSONDecodeError` so a caller may try a repair (JSON with comments); every other
problem is the caller's error class.

Limits: the YAML limits need the pure-Python composer (the libyaml ``CSafeLoader`` cannot be
bounded from Python), so YAML is slower than with libyaml: configs are small, which is why
:data:`CONFIG_MAX_BYTES` is a few MiB.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from stabletrain.errors import LogReadError, StableTrainError

__all__ = [
    "CONFIG_MAX_BYTES",
    "LOG_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "check_depth",
    "load_json",
    "load_yaml",
    "number",
    "open_regular",
    "parse_json",
    "parse_yaml",
    "read_bytes",
    "read_text",
    "regular_file",
]

#: A config (YAML/JSON settings) larger than this is refused: real ones are a few KiB.
CONFIG_MAX_BYTES = 4 << 20
#: A log file larger than this is refused (one file; a run dir may hold several).
LOG_MAX_BYTES = 2 << 30
#: Deepest nesting accepted in JSON and YAML (real configs and logs nest fewer than 10 levels).
MAX_DEPTH = 100
#: Most YAML nodes accepted after alias expansion.
MAX_NODES = 100_000
#: Integers with more digits than this are read as floats (``inf`` beyond ~308 digits).
_MAX_INT_DIGITS = 300

ErrorClass = type[StableTrainError]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str | os.PathLike[str], mode: int, error: ErrorClass) -> StableTrainError:
    return error(
        f"{path}: is {_kind(mode)}, not a regular file; stabletrain reads regular files only"
    )


def _oserror(path: str | os.PathLike[str], e: OSError, error: ErrorClass) -> StableTrainError:
    return error(f"{path}: cannot read ({e.strerror or e})")


def regular_file(path: str | os.PathLike[str], *, error: ErrorClass = LogReadError) -> Path:
    """``path`` as a :class:`Path` if it names a regular file (symlinks followed), else ``error``.

    A cheap check for code that hands the path on to a library; code that reads the file itself
    should use :func:`open_regular`, which also closes the race between check and open.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise _oserror(path, e, error) from e
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, st.st_mode, error)
    return Path(path)


def open_regular(
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = LOG_MAX_BYTES,
    error: ErrorClass = LogReadError,
) -> IO[bytes]:
    """Open a regular file for binary reading; refuse anything else and files over ``max_bytes``.

    The open uses ``O_NONBLOCK`` (a FIFO without a writer does not block it) and the type is
    checked on the open descriptor. The caller closes the returned file (``with``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _oserror(path, e, error) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode, error)
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(
                f"{path}: {st.st_size:,} bytes is over the {max_bytes:,}-byte limit for this "
                "kind of file; refusing to read it"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = LOG_MAX_BYTES,
    error: ErrorClass = LogReadError,
) -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` bytes."""
    with open_regular(path, max_bytes=max_bytes, error=error) as f:
        try:
            # read(n) allocates n bytes up front: ask for the size fstat saw (+1 to notice growth)
            size = os.fstat(f.fileno()).st_size
            data = f.read(min(size, max_bytes) + 1)
            if len(data) > size and len(data) <= max_bytes:  # grew since fstat: read the rest
                data += f.read(max_bytes + 1 - len(data))
        except OSError as e:
            raise _oserror(path, e, error) from e
    if len(data) > max_bytes:  # grew while we read it
        raise error(f"{path}: grew past the {max_bytes:,}-byte limit while being read")
    return data


def read_text(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = LOG_MAX_BYTES,
    error: ErrorClass = LogReadError,
    errors: str = "strict",
) -> str:
    """UTF-8 text of a regular file (``errors="replace"`` for logs that may hold stray bytes)."""
    data = read_bytes(path, max_bytes=max_bytes, error=error)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e


def number(text: str) -> int | float:
    """A JSON/YAML integer literal as a number: ``int`` if a float can hold it, else a float.

    A 400-digit integer becomes ``inf`` (data: "not a finite number"), never an ``OverflowError``
    later or the interpreter's 4,300-digit ``ValueError`` now.
    """
    digits = text.lstrip("+-")
    if len(digits) > _MAX_INT_DIGITS:
        return float(text)
    return int(text)


def check_depth(obj: Any, max_depth: int, *, source: str, error: ErrorClass) -> None:
    """Raise ``error`` if lists/dicts in ``obj`` nest deeper than ``max_depth`` (iterative).

    Shared sub-objects are visited once, so a tree built from aliases is checked in linear time.
    """
    stack: list[tuple[Any, int]] = [(obj, 1)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if depth > max_depth:
            raise error(f"{source}: nested deeper than {max_depth} levels; refusing to read it")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = np.zeros(256, dtype=np.int8)  # +1 opens, -1 closes a JSON array/object
_BRACKET[[ord("["), ord("{")]] = 1
_BRACKET[[ord("]"), ord("}")]] = -1
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[np.frombuffer(b"0123456789", dtype=np.uint8)] = True


def _json_shape(text: str | bytes) -> tuple[int, int]:
    """(deepest bracket nesting outside strings, longest run of digits), at numpy speed.

    Computed before parsing, so a 1,000-deep document is refused before the parser recurses and
    the slow integer hook is used only when a huge integer may be present. The depth is exact for
    valid JSON: a bracket is inside a string when an odd number of quotes precede it (with
    backslashes in the text, escaped quotes are removed by a regex first). The digit run counts
    digits inside strings too, which can only make the hook run when it was not needed.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    arr = np.frombuffer(raw, dtype=np.uint8)
    longest = 0
    digits = _DIGIT[arr]
    if digits.any():
        edges = np.flatnonzero(np.diff(np.concatenate(([False], digits, [False])).astype(np.int8)))
        longest = int((edges[1::2] - edges[0::2]).max())
    if b"\\" in raw:  # escaped quotes: strip whole strings (slower, rare in logs)
        arr = np.frombuffer(_JSON_STRING.sub(b"", raw), dtype=np.uint8)
    kind = _BRACKET[arr]
    where = np.flatnonzero(kind)
    if not where.size:
        return 0, longest
    quotes = np.flatnonzero(arr == ord('"'))
    if quotes.size:
        where = where[np.searchsorted(quotes, where) % 2 == 0]  # an even count of quotes before
    if not where.size:
        return 0, longest
    depth = int(np.cumsum(kind[where], dtype=np.int64).max())
    return depth, longest


def parse_json(
    text: str | bytes,
    *,
    source: str,
    max_depth: int = MAX_DEPTH,
    error: ErrorClass = LogReadError,
) -> Any:
    """``json.loads`` with bounded depth; NaN/Infinity and huge integers kept as float data.

    A syntax error is raised as :class:`json.JSONDecodeError` (a ``ValueError``) so the caller
    may repair and retry; a nesting limit raises ``error`` naming ``source``.
    """
    depth, longest = _json_shape(text)
    if depth > max_depth:
        raise error(f"{source}: nested deeper than {max_depth} levels; refusing to read it")
    try:
        if longest > _MAX_INT_DIGITS:
            return json.loads(text, parse_int=number)
        return json.loads(text)
    except RecursionError as e:
        raise error(f"{source}: nested deeper than {max_depth} levels; refusing to read it") from e


def load_json(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = LOG_MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    error: ErrorClass = LogReadError,
) -> Any:
    """Read and parse one JSON file within the limits; every problem is ``error`` naming it."""
    text = read_text(path, max_bytes=max_bytes, error=error)
    try:
        return parse_json(text, source=str(path), max_depth=max_depth, error=error)
    except json.JSONDecodeError as e:
        raise error(f"{path}: invalid JSON ({e})") from e


class _Limit(yaml.YAMLError):
    """A bound of the YAML loader was reached (depth or expanded node count)."""


class _BoundedConstructor(yaml.constructor.SafeConstructor):
    """The safe constructor with huge integers read as floats (``inf``), not a crash."""

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int | float:
        value = str(self.construct_scalar(node))
        plain = value.replace("_", "").lstrip("+-")
        if len(plain) > _MAX_INT_DIGITS:
            try:
                return float(value.replace("_", ""))
            except ValueError:
                return float("inf") if not value.startswith("-") else float("-inf")
        result: int | float = super().construct_yaml_int(node)
        return result


_BoundedConstructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:int", _BoundedConstructor.construct_bounded_int
)


class _BoundedLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _BoundedConstructor,
    yaml.resolver.Resolver,
):
    """``yaml.SafeLoader`` whose composer counts depth and alias-expanded nodes as it goes."""

    def __init__(self, stream: str, max_depth: int, max_nodes: int) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _BoundedConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.depth = 0
        # per composed node: (nodes after alias expansion, height after alias expansion)
        self.sizes: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise _Limit(f"nested deeper than {self.max_depth} levels")
        try:
            node = super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self.depth -= 1
        if node is None:
            return node
        if id(node) not in self.sizes:
            self.sizes[id(node)] = self._measure(node)
        size, height = self.sizes[id(node)]
        if height + self.depth > self.max_depth:
            raise _Limit(f"nested deeper than {self.max_depth} levels once aliases are expanded")
        if size > self.max_nodes:
            raise _Limit(
                f"more than {self.max_nodes:,} values once aliases are expanded (an alias bomb?)"
            )
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            return 1, 1
        size, height = 1, 1
        for child in children:
            s, h = self.sizes.get(id(child), (1, 1))
            size += s
            height = max(height, h + 1)
        return size, height


def parse_yaml(
    text: str,
    *,
    source: str,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    error: ErrorClass = LogReadError,
) -> Any:
    """The first YAML document in ``text`` with the safe loader, bounded in depth and nodes.

    Every problem (syntax, an unknown ``!!python`` tag, a limit) raises ``error`` naming ``source``.
    """
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, max_depth, max_nodes)  # checks the characters already
        return loader.get_single_data()
    except _Limit as e:
        raise error(f"{source}: {e}; refusing to read it") from e
    except RecursionError as e:  # belt and braces: the depth bound should stop it first
        raise error(f"{source}: nested too deeply; refusing to read it") from e
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise error(f"{source}: invalid YAML ({reason[:200]})") from e
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = CONFIG_MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    error: ErrorClass = LogReadError,
) -> Any:
    """Read and parse one YAML file within the limits; every problem is ``error`` naming it."""
    text = read_text(path, max_bytes=max_bytes, error=error)
    return parse_yaml(text, source=str(path), max_depth=max_depth, max_nodes=max_nodes, error=error)
