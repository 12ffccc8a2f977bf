"""The object model shared by the Helm chart and the plain manifests: Kubernetes objects as plain
dicts in which values-dependent parts are placeholders.

- `Value("a.b")`: a setting of values.yaml; Helm gets `{{ .Values.a.b | toJson }}`, the plain
  manifests the setting's value.
- `Helm(template, plain)`: a Go-template snippet (API versions by `.Capabilities`, the release
  namespace) and the value the plain manifests use instead.
- `OnlyIf(helm_condition, plain_condition, value)`: a mapping entry present only when a setting
  says so (Helm: `{{- if }}` around the line).
- `Part`: one file of templates/ (objects, and the condition under which Helm renders them).

`to_plain` resolves a tree for kubectl; `to_helm_yaml` writes it as a Helm template. Both walk the
same tree, so the chart and the manifests cannot drift apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from isletops.errors import ConfigError


@dataclass(frozen=True)
class Value:
    """A setting of values.yaml (dotted path); `text` makes Helm render it as a string."""

    path: str
    text: bool = False


@dataclass(frozen=True)
class Helm:
    """A Go-template snippet for Helm and the value the plain manifests use: a tree, or a function
    of the values for what needs computing (an image reference, a checksum)."""

    template: str
    plain: Any


@dataclass(frozen=True)
class OnlyIf:
    """A mapping entry kept only when the condition holds (scalar values only); the plain
    condition is a bool or a placeholder whose value's truth decides."""

    helm_condition: str
    plain_condition: Any
    value: Any


@dataclass(frozen=True)
class Part:
    """A file of templates/: its objects, rendered by Helm only when `helm_if` holds."""

    name: str
    objects: list[dict[str, Any]]
    helm_if: str | None = None
    plain_if: bool = True
    comment: str = ""
    extra_helm: list[str] = field(default_factory=list)


def lookup(values: dict[str, Any], path: str) -> Any:
    """The setting at dotted `path` of `values`; a missing one is a ConfigError naming it."""
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"The chart values have no setting '{path}'.", "Compare with the chart's values.yaml.")
        node = node[key]
    return node


def to_plain(node: Any, values: dict[str, Any]) -> Any:
    """The tree with every placeholder resolved from `values` (OnlyIf entries dropped when false)."""
    if isinstance(node, Value):
        value = lookup(values, node.path)
        return str(value) if node.text else value
    if isinstance(node, Helm):
        return to_plain(node.plain(values) if callable(node.plain) else node.plain, values)
    if isinstance(node, dict):
        result = {}
        for key, item in node.items():
            if isinstance(item, OnlyIf):
                if not to_plain(item.plain_condition, values):
                    continue
                item = item.value
            result[key] = to_plain(item, values)
        return result
    if isinstance(node, list):
        return [to_plain(item, values) for item in node]
    return node


_JSON_SNIPPET = re.compile(r"^\{\{ (?P<expression>.+) \| toJson \}\}$")


def go_expression(node: Any) -> str:
    """A string, a `Value` or a `{{ EXPR | toJson }}` snippet as a Go-template expression, to build
    a mapping inside a template (`dict "key" EXPR ...`)."""
    if isinstance(node, str):
        return json.dumps(node)
    if isinstance(node, Value):
        return f"(.Values.{node.path}{' | toString' if node.text else ''})"
    if isinstance(node, Helm):
        match = _JSON_SNIPPET.match(node.template)
        if match:
            return f"({match['expression']})"
    raise ConfigError(f"{node!r} has no Go-template expression.")


def merged_mapping(base: dict[str, Any], extra_path: str, condition: str | None = None) -> Helm:
    """`base` plus the mapping of values setting `extra_path` (only while the `condition`
    setting is true, when one is given); `base`'s keys win, as Helm's `merge` keeps them."""
    pairs = " ".join(f"{json.dumps(key)} {go_expression(value)}" for key, value in base.items())
    merge = f"{{{{ $m = merge $m (.Values.{extra_path} | default dict) }}}}"
    if condition:
        merge = f"{{{{ if .Values.{condition} }}}}{merge}{{{{ end }}}}"

    def plain(values: dict[str, Any]) -> dict[str, Any]:
        extra = lookup(values, extra_path) if not condition or lookup(values, condition) else {}
        resolved = to_plain(base, values)
        return {**resolved, **{key: value for key, value in (extra or {}).items() if key not in resolved}}

    return Helm(f"{{{{ $m := dict {pairs} }}}}{merge}{{{{ toJson $m }}}}", plain)


class _Tokens:
    """Replaces placeholders by unique plain words for yaml.dump, and back by Go templates."""

    def __init__(self) -> None:
        self.snippets: dict[str, str] = {}
        self.conditions: dict[str, str] = {}

    def _token(self) -> str:
        return f"HELMTOKEN{len(self.snippets) + len(self.conditions):04d}X"

    def replace(self, node: Any) -> Any:
        if isinstance(node, Value):
            token = self._token()
            pipe = " | toString" if node.text else ""
            self.snippets[token] = f"{{{{ .Values.{node.path}{pipe} | toJson }}}}"
            return token
        if isinstance(node, Helm):
            token = self._token()
            self.snippets[token] = node.template
            return token
        if isinstance(node, dict):
            result = {}
            for key, item in node.items():
                if isinstance(item, OnlyIf):
                    token = self._token()
                    self.conditions[token] = item.helm_condition
                    result[f"{token}{key}"] = self.replace(item.value)
                else:
                    result[key] = self.replace(item)
            return result
        if isinstance(node, list):
            return [self.replace(item) for item in node]
        return node

    def restore(self, text: str) -> str:
        lines = []
        for line in text.splitlines():
            condition = next((c for token, c in self.conditions.items() if token in line), None)
            if condition is not None:
                line = re.sub(r"HELMTOKEN\d{4}X(?=[\w.-]+:)", "", line, count=1)
            for token, snippet in self.snippets.items():
                line = line.replace(f"'{token}'", snippet).replace(token, snippet)
            if condition is not None:
                lines += [f"{{{{- if {condition} }}}}", line, "{{- end }}"]
            else:
                lines.append(line)
        return "\n".join(lines) + "\n"


def dump_yaml(documents: list[Any]) -> str:
    """YAML documents the way both outputs are written (key order kept, long lines unbroken)."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=1000)


def to_helm_yaml(objects: list[dict[str, Any]]) -> str:
    """Objects as Helm template text: placeholders become Go-template expressions."""
    tokens = _Tokens()
    replaced = [tokens.replace(obj) for obj in objects]
    return tokens.restore(dump_yaml(replaced).rstrip("\n"))
