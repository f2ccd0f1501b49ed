"""The configuration reference (docs/configuration.md), generated from the schema and the checkout's defaults.

    python -m neurovfm.config_doc > docs/configuration.md

Each key of ``workflow/schemas/config.schema.yaml`` becomes one row: its dotted path, what the schema allows
(type, allowed values, bounds, pattern), the default from ``config.yaml`` and the comment written beside that
key in ``config.yaml``. tests/test_config_doc.py fails when the committed page differs from this output, so a
schema or default change is followed by rerunning the command above.
"""

from __future__ import annotations

import json
import re
import sys

import yaml

from neurovfm.config import DEFAULT_CONFIG, load_schema

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def _comment_of(rest: str) -> tuple[str, int | None]:
    """The inline comment of a YAML line's value part (outside quotes) and its column within ``rest``."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1 :].strip(), i
    return "", None


def config_comments(text: str) -> dict[str, str]:
    """Dotted key path -> the comment written beside it in a block-style YAML file (comment-only lines right
    below it, indented deeper than the key, continue it). Keys inside flow mappings ({...}) are not reached."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the open block mappings
    last_path, last_col = None, None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            last_path = None
            continue
        if stripped.startswith("#"):
            col = len(line) - len(line.lstrip())
            if last_path is not None and last_col is not None and col > last_col:
                comments[last_path] += " " + stripped[1:].strip()
            else:
                last_path = None
            continue
        m = _KEY_LINE.match(line)
        if not m:
            last_path = None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [m["key"]])
        stack.append((indent, m["key"]))
        comment, _ = _comment_of(m["rest"])
        if comment:
            comments[path] = comment
            last_path, last_col = path, indent
        else:
            last_path = None
    return comments


def _resolve(schema: dict, node: dict) -> dict:
    """``node`` with a local ``$ref`` (a JSON pointer into the schema) or an ``allOf`` merged in."""
    ref = node.get("$ref")
    if ref:
        target = schema
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node = {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}
    if "allOf" in node:
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for sub in node["allOf"]:
            sub = _resolve(schema, sub)
            merged = {**sub, **merged, "properties": {**sub.get("properties", {}), **merged.get("properties", {})}}
        node = merged
    return node


def _allowed(node: dict) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    types = node.get("type")
    if types and "enum" not in node:
        types = types if isinstance(types, list) else [types]
        parts.append(" or ".join(str(t) for t in types))
    if node.get("type") == "array" or (isinstance(types, list) and "array" in types):
        items = node.get("items")
        if isinstance(items, dict) and items.get("type"):
            parts[-1] = f"array of {items['type']}" if isinstance(items["type"], str) else parts[-1]
        if "minItems" in node or "maxItems" in node:
            lo, hi = node.get("minItems"), node.get("maxItems")
            parts.append(f"{lo} items" if lo == hi else f"{lo if lo is not None else 0}..{hi if hi else ''} items")
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{sign} {node[key]}")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    return ", ".join(parts)


def _default(cfg, path: list[str]):
    value = cfg
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None, False
        value = value[key]
    return value, True


def _fmt_default(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = text if len(text) <= 60 else text[:57] + "..."
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows(schema: dict, defaults: dict, comments: dict[str, str]):
    """(path, allowed, default, comment) of every key, depth first in the schema's order."""

    def walk(node: dict, path: list[str]):
        node = _resolve(schema, node)
        for key, sub in (node.get("properties") or {}).items():
            sub = _resolve(schema, sub)
            dotted = ".".join([*path, key])
            value, present = _default(defaults, [*path, key])
            has_children = bool(sub.get("properties"))
            default = "" if has_children else (_fmt_default(value) if present else "")
            comment = comments.get(dotted, "") or sub.get("description", "")
            yield dotted, "section" if has_children else _allowed(sub), default, comment
            if has_children:
                yield from walk(sub, [*path, key])

    yield from walk(schema, [])


def render() -> str:
    schema = load_schema()
    text = DEFAULT_CONFIG.read_text()
    defaults = yaml.safe_load(text)
    comments = config_comments(text)
    out = [
        "# Configuration reference",
        "",
        "Generated by `python -m neurovfm.config_doc > docs/configuration.md` from",
        "`workflow/schemas/config.schema.yaml` (what is allowed) and `config.yaml` (the defaults and the comment",
        "beside each key); do not edit by hand. A run's own file (`--configfile my_run.yaml`) holds only the keys",
        "it changes and is merged over these defaults. Keys whose default is a mapping written on one line",
        "(`{...}`) are listed with that mapping; `config.yaml` explains their members.",
        "",
    ]
    section = None
    for path, allowed, default, comment in rows(schema, defaults, comments):
        top = path.split(".")[0]
        if top != section:
            section = top
            out += ["", f"## `{top}`", "", "| key | allowed | default | meaning |", "|---|---|---|---|"]
        if allowed == "section" and "." not in path:
            if comment:
                out.insert(len(out) - 2, _cell(comment) + "\n")
            continue
        out.append(f"| `{path}` | {_cell(allowed)} | {default} | {_cell(comment)} |")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
