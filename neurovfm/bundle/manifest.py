"""The bundle's manifest: the sha256 and size of every file in the folder (``manifest.json`` itself aside).

Loading recomputes every digest and refuses a bundle whose files differ from the manifest, lack one of its
files, or hold files it does not list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from neurovfm.utils.atomic import write_text
from neurovfm.utils.failure import Failed

MANIFEST = "manifest.json"
FORMAT = "neurovfm-bundle"
VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def bundle_files(root: str | Path) -> list[str]:
    """Every file under ``root`` (symbolic links followed, as in a Hugging Face snapshot), relative, sorted;
    hidden names and the manifest left out."""
    root = Path(root)
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and rel.as_posix() != MANIFEST and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def build_manifest(root: str | Path, not_identity: tuple[str, ...] = ()) -> dict:
    """``bundle_id``: a digest of the digests of every file but ``not_identity`` (the model card, which carries
    its build date), so rebuilding the same model gives the same id."""
    root = Path(root)
    files = {
        rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size} for rel in bundle_files(root)
    }
    model = {k: v["sha256"] for k, v in files.items() if k not in not_identity}
    bundle_id = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]
    return {"format": FORMAT, "version": VERSION, "bundle_id": bundle_id, "files": files}


def write_manifest(root: str | Path, not_identity: tuple[str, ...] = ()) -> dict:
    manifest = build_manifest(root, not_identity)
    write_text(Path(root) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify(root: str | Path) -> dict:
    """The manifest of ``root`` after checking every file against it; :class:`Failed` (``bad_input_path``) if
    the manifest is missing or any file is missing, extra or changed."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise Failed("bad_input_path", "the bundle has no manifest.json", private=f"{path} does not exist")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise Failed("bad_input_path", f"the manifest is not a {FORMAT} v{VERSION} manifest")
    listed, present = set(manifest["files"]), set(bundle_files(root))
    missing, extra = sorted(listed - present), sorted(present - listed)
    if missing or extra:
        raise Failed(
            "bad_input_path",
            f"bundle files differ from its manifest ({len(missing)} missing, {len(extra)} not listed)",
            private=f"bundle {root}: files missing from the folder {missing[:5]}, files not in "
            f"its manifest.json {extra[:5]}",
        )
    changed = [rel for rel, meta in sorted(manifest["files"].items()) if sha256_file(root / rel) != meta["sha256"]]
    if changed:
        raise Failed(
            "bad_input_path",
            f"{len(changed)} bundle file(s) do not match their sha256 in the manifest",
            private=f"bundle {root}: {len(changed)} file(s) differ from their sha256 in manifest.json: {changed[:5]}",
        )
    return manifest
