"""Safe YAML reading that remembers where every value came from.

Flows are edited by hand, so every later message must point at a line and column. PyYAML's
composer keeps marks on its nodes; this module turns the node tree into plain Python values plus a
map from key path to mark.

It reads with YAML 1.2 scalars rather than PyYAML's 1.1 ones: `yes`, `no`, `on`, `off` stay
strings (a menu option called "no" must not become False), and `17:30` stays a string instead of
the sexagesimal integer 1050. Duplicate keys, which PyYAML silently lets the last one win, are
reported, and alias expansion is bounded so a "billion laughs" file cannot exhaust memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.flows.problems import Problem

MAX_FILE_BYTES = 1_000_000
"""A flow or personality is a few kilobytes; anything near a megabyte is a mistake."""

MAX_VALUES = 100_000
"""Bound on values built from one document, aliases counted each time they are expanded."""

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A position in a file, as people count: line and column both start at 1."""

    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """A parsed YAML document: its data and the position of every value in it."""

    path: str
    data: Any
    marks: dict[KeyPath, Mark] = field(default_factory=dict)
    key_marks: dict[KeyPath, Mark] = field(default_factory=dict)

    def mark(self, key_path: KeyPath) -> Mark:
        """Where the value at `key_path` starts, else its closest enclosing value."""
        probe = tuple(key_path)
        while probe:
            if probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return self.marks.get((), Mark(1, 1))

    def key_mark(self, key_path: KeyPath) -> Mark:
        """Where the key that names `key_path` starts (for 'unknown key' messages)."""
        return self.key_marks.get(tuple(key_path)) or self.mark(key_path)

    def problem(self, key_path: KeyPath, message: str, *, severity: str = "error",
                at_key: bool = False) -> Problem:
        """A `Problem` in this file at `key_path`: where its key starts with `at_key`, else
        where its value (or the closest enclosing value) starts.
        """
        where = self.key_mark(key_path) if at_key else self.mark(key_path)
        return Problem(self.path, where.line, where.column, message, severity)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                           "tag:yaml.org,2002:float"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0) if text.startswith("0x") else int(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq",
                                    "tag:yaml.org,2002:omap"})


class _TooBig(Exception):
    pass


class _Builder:
    def __init__(self, loader: _Loader, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.count = 0
        self.problems: list[Problem] = []
        self.own_keys: dict[int, set[int]] = {}

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig
        self.document.marks.setdefault(path, _mark(node.start_mark))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_COLLECTION_TAGS:
            # Scalars with unknown tags are refused by the constructor; collections are built
            # here, so refuse theirs too rather than read `!!python/...` as plain data.
            self.problems.append(Problem(
                self.document.path, node.start_mark.line + 1, node.start_mark.column + 1,
                f"{dotted(path)}: unsupported YAML tag {node.tag!r}; flows are plain data"))
        if isinstance(node, yaml.MappingNode):
            # Merged pairs come first and may be overridden; only the mapping's own keys can
            # be duplicates. Remembered per node, as an aliased mapping is flattened only once.
            own = self.own_keys.setdefault(id(node), {id(key) for key, _ in node.value})
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys
            result: dict[Any, Any] = {}
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    # Building a list or mapping key would expand its aliases unbounded.
                    self.problems.append(Problem(
                        self.document.path, key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        _braces_message(path, node) or
                        f"{dotted(path)}: a key must be a plain name, not a "
                        f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}"))
                    continue
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    # Keys are names, as in JSON: `1:` is "1" (not the list index 1 of a key
                    # path), `true:` is "true".
                    key = key_node.value
                key_path = (*path, key)
                if id(key_node) in own and key in seen:
                    first = self.document.key_marks[key_path]
                    self.problems.append(Problem(
                        self.document.path, key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        f"{dotted(key_path)}: duplicate key '{key}' (first defined on line "
                        f"{first.line}); remove one of them"))
                if id(key_node) in own:
                    seen.add(key)
                self.document.key_marks[key_path] = _mark(key_node.start_mark)
                result[key] = self.build(value_node, key_path)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


_BRACE_VALUE = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w-]*:\s+\{\{")


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""


_UNQUOTED_BRACES = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w-]*):\s+(\{\{.*?\}\})\s*(?:#.*)?$")


def _braces_message(path: KeyPath, node: yaml.MappingNode) -> str | None:
    """For `text: {{ vars.x }}` or `when: {{ ... }}` written without quotes, which YAML reads
    as a mapping inside a mapping: what to write instead; None for anything else."""
    buffer = getattr(node.start_mark, "buffer", None)
    if not isinstance(buffer, str) or not path:
        return None
    lines = buffer.splitlines()
    line = lines[node.start_mark.line] if node.start_mark.line < len(lines) else ""
    found = _UNQUOTED_BRACES.match(line)
    if found is None or found.group(1) != path[-1]:
        return None
    key, value = found.group(1), found.group(2)
    if key == "when":
        inner = value[2:-2].strip()
        return (f"{dotted(path)}: write the condition without {{{{ }}}} (when: is an "
                f"expression already): when: {inner}")
    return (f"{dotted(path)}: a text that starts with {{{{ must be quoted, or YAML reads it as "
            f"a mapping: {key}: \"{value}\"")


def _mark(mark: yaml.Mark) -> Mark:
    return Mark(mark.line + 1, mark.column + 1)


def dotted(key_path: KeyPath) -> str:
    """`('nodes', 'greet', 'routes', 0, 'to')` -> `nodes.greet.routes[0].to`."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def read_text(path: str, text: str) -> tuple[Document | None, list[Problem]]:
    """Parse one YAML document from `text`; `path` is only used in messages."""
    if not text.strip() or all(line.lstrip().startswith("#") or not line.strip()
                               for line in text.splitlines()):
        return None, [Problem(path, 1, 1, "the file is empty; it should hold one YAML mapping")]
    try:
        loader = _Loader(text)  # checks that every character may appear in YAML
    except yaml.reader.ReaderError as error:
        return None, [_unprintable(path, text, error)]
    document = Document(path, None)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, [Problem(path, 1, 1, "the file holds no YAML document")]
        builder = _Builder(loader, document)
        document.data = builder.build(root, ())
    except yaml.MarkedYAMLError as error:
        where = error.problem_mark or error.context_mark
        line, column = (where.line + 1, where.column + 1) if where else (1, 1)
        reason = error.problem or error.context or "invalid YAML"
        context = error.context or ""
        opened = _unclosed_quote(text, line)
        if opened is not None:
            # YAML reads a quoted text on over the following lines and fails wherever that
            # stops making sense: point at the quote instead.
            quote_line, quote_column, quote = opened
            read_on = "the end of the file" if "end of stream" in reason \
                else f"line {line}: {reason}"
            return None, [Problem(path, quote_line, quote_column, (
                f"YAML syntax error: the quote {quote} opened here is not closed on its line; "
                f"close it (YAML read on to {read_on})"))]
        if context.startswith("while ") and error.context_mark \
                and error.context_mark.line + 1 != line:
            # An unclosed bracket or quote is noticed lines later; say where it opened.
            reason += f" ({context} that starts on line {error.context_mark.line + 1})"
        elif context and reason.startswith("but "):
            reason = f"{context}, {reason}"
        hint = ""
        if "mapping values are not allowed" in reason:
            hint = " (a value that contains ': ' must be quoted)"
        elif "found character '\\t'" in reason:
            hint = " (YAML indents with spaces, not tabs)"
        elif _BRACE_VALUE.match(_line(text, line)):
            hint = (" (a value that starts with { is read as a mapping: quote a text that "
                    "starts with {{, and write a when: without {{ }})")
        return None, [Problem(path, line, column, f"YAML syntax error: {reason}{hint}")]
    except yaml.YAMLError as error:
        return None, [Problem(path, 1, 1, f"YAML error: {error}")]
    except _TooBig:
        return None, [Problem(path, 1, 1, f"the document expands to more than {MAX_VALUES} "
                                          "values (aliases used as a bomb?); refusing to read it")]
    except RecursionError:
        return None, [Problem(path, 1, 1, "the document is nested too deeply to read")]
    finally:
        loader.dispose()
    return document, builder.problems


def _open_quote(line: str) -> tuple[int, str] | None:
    """The column (1-based) and character of a quote that opens a value on `line` and is not
    closed on it; None when every quote closes (or there is none)."""
    quote, start, previous = "", 0, ":"  # a value may start the line (a continued list)
    index = 0
    while index < len(line):
        char = line[index]
        if quote == '"' and char == "\\":
            index += 2
            continue
        if quote and char == quote:
            if quote == "'" and line[index + 1:index + 2] == "'":
                index += 2  # '' is a quote inside '...'
                continue
            quote = ""
        elif not quote and char in "'\"" and previous in ":-[{,?":
            quote, start = char, index + 1
        elif not quote and char == "#" and (index == 0 or line[index - 1] in " \t"):
            break  # a comment
        if not char.isspace():
            previous = char if not quote or char == quote else previous
        index += 1
    return (start, quote) if quote else None


def _unclosed_quote(text: str, error_line: int) -> tuple[int, int, str] | None:
    """(line, column, quote) of the first quote left open on its line before the line YAML
    failed on, which is most likely the mistake; None when there is none."""
    for number, line in enumerate(text.splitlines()[:error_line], 1):
        found = _open_quote(line)
        if found is not None:
            return (number, *found) if number < error_line else None
    return None


def _unprintable(path: str, text: str, error: yaml.reader.ReaderError) -> Problem:
    before = text[: max(error.position, 0)]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, int) else 0
    return Problem(path, line, column, f"the file holds the character U+{character:04X}, which "
                                       "YAML does not allow; remove it")


def read_file(path: Path, display: str | None = None) -> tuple[Document | None, list[Problem]]:
    """Read and parse one YAML file, with a clear message for every way that can fail."""
    shown = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [Problem(shown, 1, 1, f"the file is {size / 1_000_000:.1f} MB; flow and "
                                               f"personality files are limited to "
                                               f"{MAX_FILE_BYTES // 1_000_000} MB")]
        raw = path.read_bytes()
    except OSError as error:
        return None, [Problem(shown, 1, 1, f"cannot read the file: {error.strerror or error}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return None, [Problem(shown, line, 1, "the file is not UTF-8 text")]
    return read_text(shown, text)
