"""Parse a YAML or JSON workflow file into plain data plus the line of every node.

``yaml.compose`` keeps each node's position, so every later complaint (schema or
graph) can point at the line to fix. JSON is parsed by the same YAML composer
(JSON documents are YAML flow collections); a document the composer rejects is
retried with the json module so JSON files get JSON's own error line.

Workflows arrive from the API at runtime, so the text is untrusted: it is
bounded in size (:data:`MAX_BYTES`) and nesting (:data:`MAX_DEPTH`), and YAML
aliases are refused while composing, before any alias is expanded (a
450-byte "billion laughs" document otherwise builds gigabytes). Workflows need
neither anchors' aliases nor deep nesting.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

#: Largest workflow document accepted (bytes of UTF-8).
MAX_BYTES = 256 * 1024
#: Deepest nesting of mappings and lists (a real workflow needs about 6).
MAX_DEPTH = 32


class Issue(Exception):
    """One problem in a definition file, printed as ``FILE:LINE: REASON``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class Document:
    """Plain data of one file and the 1-based line of each path in it."""

    def __init__(self, source: str, data: Any, lines: dict[Path_, int]) -> None:
        self.source = source
        self.data = data
        self.lines = lines

    def line_of(self, path: Path_) -> int:
        """Line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def issue(self, path: Path_, reason: str) -> Issue:
        return Issue(self.source, self.line_of(path), reason)


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}
        # Builds typed scalars (int, float, bool, null) the way safe_load would.
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise Issue(self.source, key_node.start_mark.line + 1, "mapping keys must be plain")
                # Keys stay as written: YAML 1.1 would turn `true:` into a bool.
                key = str(key_node.value)
                if key in out:
                    raise Issue(self.source, key_node.start_mark.line + 1, f"duplicate key {key!r}")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases and deep nesting as it meets them."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise Issue(
                self.source,
                event.start_mark.line + 1,
                f"YAML aliases (*{event.anchor}) are not allowed in workflows",
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            event = self.peek_event()
            raise Issue(self.source, event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _compose(text: str, source: str) -> yaml.Node | None:
    loader = _Loader(text, source)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def parse(text: str, source: str) -> Document:
    """Plain data and line map of a YAML or JSON text; raises :class:`Issue`."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise Issue(source, 1, f"document too large ({size} bytes; the limit is {MAX_BYTES})")
    try:
        node = _compose(text, source)
    except yaml.MarkedYAMLError as err:
        if source.endswith(".json"):
            return _json_document(text, source)
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise Issue(source, line, f"not valid YAML: {err.problem or err.context}") from err
    except yaml.YAMLError as err:
        raise Issue(source, 1, f"not valid YAML: {err}") from err
    if node is None:
        raise Issue(source, 1, "empty document")
    builder = _Builder(source)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        raise Issue(source, 1, "a workflow must be a mapping with name, trigger and steps")
    return Document(source, data, builder.lines)


def _json_document(text: str, source: str) -> Document:
    """JSON the YAML composer refused (tabs, odd escapes): no line map beyond the root."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise Issue(source, err.lineno, f"not valid JSON: {err.msg}") from err
    except RecursionError:
        raise Issue(source, 1, f"nested deeper than {MAX_DEPTH} levels") from None
    if _depth(data) > MAX_DEPTH:
        raise Issue(source, 1, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise Issue(source, 1, "a workflow must be an object with name, trigger and steps")
    return Document(source, data, {(): 1})


def _depth(data: Any) -> int:
    """Nesting depth of plain JSON data, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
