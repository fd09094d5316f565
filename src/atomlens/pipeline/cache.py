"""Stage outputs cached by the hash of their inputs and settings.

Each stage writes into ``DIR/cache/<stage>-<key>/`` and marks completion by writing
``done.json`` last, so an interrupted stage is simply redone and a completed one is
never redone while its inputs and settings are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 1


def stable_hash(*parts: Any) -> str:
    """A short hex digest of JSON-able parts (sorted keys, so dict order does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> dict:
    """Identity of an input file: resolved path, size and modification time."""
    path = Path(path).resolve()
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.rglob("*")) if p.is_file()]
        return {
            "path": str(path),
            "size": sum(s.st_size for s in stats),
            "mtime": max((s.st_mtime_ns for s in stats), default=0),
        }
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime_ns}


@dataclass
class StageDir:
    """Where one stage's outputs for one key live."""

    root: Path
    stage: str
    key: str

    @property
    def path(self) -> Path:
        return self.root / f"{self.stage}-{self.key}"

    @property
    def done(self) -> bool:
        return (self.path / "done.json").exists()

    def begin(self) -> Path:
        """A clean directory for a (re)run of this stage."""
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self.path

    def finish(self, summary: dict | None = None) -> None:
        tmp = self.path / "done.json.tmp"
        tmp.write_text(json.dumps({"stage": self.stage, "key": self.key, **(summary or {})}))
        tmp.rename(self.path / "done.json")

    def summary(self) -> dict:
        return json.loads((self.path / "done.json").read_text())


def stage_dir(out: Path, stage: str, *key_parts: Any) -> StageDir:
    return StageDir(out / "cache", stage, stable_hash(CACHE_VERSION, stage, *key_parts))
