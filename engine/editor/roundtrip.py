"""Write a changed flow back into its YAML text, keeping what the author wrote.

The editor changes a flow as data (the JSON the page holds); the file stays the source of truth,
so its comments, key order, quoting and layout must survive an edit made in the browser.
`apply_data(text, data)` merges `data` into the round-trip tree of `text` (ruamel.yaml keeps
comments and key order on it), dumps it, and then keeps every top-level entry and every node
whose value did not change byte for byte as it was written: ruamel re-indents and re-spaces
what it dumps (aligned comments, spacing inside flow mappings), which an edit of one greeting
must not do to the rest of the file. New keys go after the existing ones; removed keys go with
the comments attached to them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.tokens import CommentToken

__all__ = ["RoundTripError", "apply_data"]


class RoundTripError(ValueError):
    """The text is not a YAML mapping that ruamel.yaml can read back."""


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the author kept on one line
    yaml.indent(mapping=2, sequence=4, offset=2)  # the bundled flows' style
    return yaml


def _load(text: str) -> CommentedMap:
    try:
        tree = _yaml().load(text)
    except YAMLError as error:
        raise RoundTripError(f"the YAML does not parse: {error}") from error
    if not isinstance(tree, CommentedMap):
        raise RoundTripError("the YAML is not a mapping")
    return tree


def _dump(tree: CommentedMap) -> str:
    out = io.StringIO()
    _yaml().dump(tree, out)
    return out.getvalue()


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _fresh(value: Any) -> Any:
    """`value` as a round-trip node: mappings in block style, lists of scalars in flow style
    (`input: [speech, dtmf]`, as flows are written by hand)."""
    if isinstance(value, Mapping):
        mapped = CommentedMap()
        for key, item in value.items():
            mapped[key] = _fresh(item)
        return mapped
    if isinstance(value, list):
        seq = CommentedSeq(_fresh(item) for item in value)
        if all(_scalar(item) for item in value):
            seq.fa.set_flow_style()
        return seq
    return value


def _same_scalar(old: Any, new: Any) -> bool:
    # True == 1 in Python, but `retries: 1` must not stay `true` (and the other way round).
    return type(old) is type(new) or (
        isinstance(old, str) and isinstance(new, str)) or (
        not isinstance(old, bool) and not isinstance(new, bool)
        and isinstance(old, int | float) and isinstance(new, int | float))


def _block(value: Any) -> bool:
    return isinstance(value, CommentedMap | CommentedSeq) and len(value) > 0 \
        and not value.fa.flow_style()


def _take_trailing(value: Any) -> Any:
    """Remove and return the comment after the last entry of a block collection (where ruamel
    keeps the blank lines and comments that follow it), or None."""
    if not _block(value):
        return None
    if isinstance(value, CommentedMap):
        last = list(value)[-1]
        if _block(value[last]):
            return _take_trailing(value[last])
        slot = value.ca.items.get(last)
        if slot and len(slot) > 2 and slot[2] is not None:
            return _split_trailing(slot, 2)
        return None
    last_index = len(value) - 1
    if _block(value[last_index]):
        return _take_trailing(value[last_index])
    slot = value.ca.items.get(last_index)
    if slot and slot[0] is not None:
        return _split_trailing(slot, 0)
    return None


def _split_trailing(slot: list[Any], index: int) -> Any:
    """Take what follows the line from the comment at `slot[index]`: a comment on the entry's
    own line (`next: support  # anything else`) stays with it, the lines after it move."""
    token = slot[index]
    value = str(token.value)
    if value.startswith("\n"):
        slot[index] = None
        return token
    own, _, rest = value.partition("\n")
    token.value = own + "\n"
    if not rest:
        return None
    return CommentToken("\n" + rest, token.start_mark, None)


def _put_trailing(holder: CommentedMap, key: Any, token: Any) -> None:
    value = holder[key]
    if _block(value):
        if isinstance(value, CommentedMap):
            _put_trailing(value, list(value)[-1], token)
        else:
            last_index = len(value) - 1
            if isinstance(value[last_index], CommentedMap) and _block(value[last_index]):
                _put_trailing(value[last_index], list(value[last_index])[-1], token)
            else:
                value.ca.items[last_index] = [token, None]
        return
    holder.ca.items[key] = [None, None, token, None]


def _merge(old: Any, new: Any) -> Any:
    if isinstance(old, CommentedMap) and isinstance(new, Mapping):
        for key in [key for key in old if key not in new]:
            del old[key]
        for key, value in new.items():
            if key in old:
                old[key] = _merge(old[key], value)
                continue
            # The blank line (or comment) after what was last now follows the new last entry.
            trailing = _take_trailing(old) if not old.fa.flow_style() else None
            old[key] = _fresh(value)
            if trailing is not None:
                _put_trailing(old, key, trailing)
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        for index, value in enumerate(new[:len(old)]):
            old[index] = _merge(old[index], value)
        del old[len(new):]
        old.extend(_fresh(value) for value in new[len(old):])
        return old
    if _scalar(old) and _scalar(new) and old == new and _same_scalar(old, new):
        return old  # keeps the scalar's quoting and style
    return _fresh(new)


def _key_lines(tree: CommentedMap) -> list[tuple[Any, int]]:
    return [(key, tree.lc.key(key)[0]) for key in tree]


def _blocks(text: str) -> tuple[list[str], dict[tuple[str, ...], list[str]], list[tuple[str, ...]]]:
    """The lines before the first key, and each top-level entry's and each node's lines (keyed
    `(key,)` and `("nodes", id)`; the `nodes` entry holds only its own header), in order."""
    tree = _load(text)
    lines = text.splitlines(keepends=True)
    top = _key_lines(tree)
    head = lines[:top[0][1]] if top else lines
    blocks: dict[tuple[str, ...], list[str]] = {}
    order: list[tuple[str, ...]] = []
    for index, (key, start) in enumerate(top):
        end = top[index + 1][1] if index + 1 < len(top) else len(lines)
        nodes = tree[key]
        if key == "nodes" and isinstance(nodes, CommentedMap) and len(nodes) \
                and not nodes.fa.flow_style():
            inner = _key_lines(nodes)
            blocks[("nodes",)] = lines[start:inner[0][1]]
            order.append(("nodes",))
            for position, (node_id, node_start) in enumerate(inner):
                node_end = inner[position + 1][1] if position + 1 < len(inner) else end
                blocks[("nodes", str(node_id))] = lines[node_start:node_end]
                order.append(("nodes", str(node_id)))
        else:
            blocks[(str(key),)] = lines[start:end]
            order.append((str(key),))
    return head, blocks, order


def _value(tree: Mapping[str, Any], block: tuple[str, ...]) -> Any:
    if block == ("nodes",):
        nodes = tree.get("nodes")
        return list(nodes) if isinstance(nodes, Mapping) else nodes  # the header: node ids
    found: Any = tree
    for part in block:
        found = found.get(part) if isinstance(found, Mapping) else None
    return found


def _rename_nodes(tree: CommentedMap, renames: Mapping[str, str]) -> None:
    """Rename nodes in place, so a renamed node keeps its place and its comments."""
    nodes = tree.get("nodes")
    if not isinstance(nodes, CommentedMap):
        return
    for old, new in renames.items():
        if old not in nodes or new in nodes:
            continue
        position = list(nodes).index(old)
        comment = nodes.ca.items.pop(old, None)
        nodes.insert(position, new, nodes.pop(old))
        if comment is not None:
            nodes.ca.items[new] = comment


def apply_data(text: str, data: Mapping[str, Any],
               renames: Mapping[str, str] | None = None) -> str:
    """`text` changed to hold `data`, comments and untouched entries kept as written.

    `data` is the whole flow as plain JSON values; `renames` (old node id -> new) says which
    nodes of `data` are nodes of the text under a new name, so they keep their place and
    comments instead of moving to the end. Raises RoundTripError when `text` is not a YAML
    mapping (the page then edits the YAML itself, not the graph).
    """
    original = _load(text)
    before = _plain(original)
    if before == _plain(dict(data)):
        return text
    tree = _load(text)
    _rename_nodes(tree, renames or {})
    dumped = _dump(_merge(tree, data))
    head, old_blocks, _ = _blocks(text)
    _, new_blocks, order = _blocks(dumped)
    out = list(head)
    # Nodes the author set apart with blank lines: a node added after the last one is too.
    spaced = any(key[0] == "nodes" and len(key) == 2 and lines and not lines[-1].strip()
                 for key, lines in old_blocks.items())
    previous: tuple[str, ...] = ()
    for block in order:
        keep = block in old_blocks and _value(before, block) == _value(data, block)
        lines = old_blocks[block] if keep else new_blocks[block]
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"  # an entry that ended the old file now has one after it
        if spaced and len(block) == 2 and len(previous) == 2 and out and out[-1].strip():
            out.append("\n")
        out += lines
        previous = block
    merged = "".join(out)
    # A removed last node leaves the blank line that came before it at the end of the file.
    return merged.rstrip("\n") + "\n" if merged.endswith("\n") else merged


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)  # a timestamp, say: compared as text
