"""JSON that stays readable and diff-able at millions of entries: header keys one per line, then one
compact list item per line (the layout of our shard and feature indices)."""

from __future__ import annotations

import json


def dumps_listed(obj: dict, list_key: str) -> str:
    """``obj`` as JSON; when ``list_key`` is present its items are written one per line."""
    head = {k: v for k, v in obj.items() if k != list_key}
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    if list_key not in obj:
        lines[-1] = lines[-1].rstrip(",")
        return "\n".join(lines) + "\n}\n"
    items = obj[list_key]
    body = ",\n".join("  " + json.dumps(v, separators=(",", ":")) for v in items)
    lines.append(f" {json.dumps(list_key)}: [" + ("\n" + body + "\n ]" if items else "]"))
    return "\n".join(lines) + "\n}\n"


def read_jsonl(path) -> list[dict]:
    """The records of a JSON-lines file (one object per non-blank line)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
