"""Resume files: one JSON per finished replication, named by a hash of what decides its result.

Running the same sweep again (or a larger one: more seeds, more grid values) finds them and
runs only what is missing, so an interrupted sweep resumes where it stopped.

>>> replication_key({"channel": {}}, "img", "rvq", None, 7, "model") == replication_key(
...     {"channel": {}}, "img", "rvq", None, 7, "model")
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from satlink.fileio import atomic_write
from satlink.packets.format import FORMAT_VERSION as PACKET_FORMAT_VERSION
from satlink.sweep.grid import canonical, digest

__all__ = ["FORMAT_VERSION", "load_done", "replication_key", "save_done"]

FORMAT_VERSION = 2  # of the per-replication files; part of their key (2: stage1_complete)


def replication_key(
    physics: Mapping[str, Any],
    image_digest: str,
    payload: str,
    budget_packets: int | None,
    seed: int,
    model_fingerprint: str,
) -> str:
    """Hash of everything that decides a replication's result: the grid point's scenario (not
    its name), the image's pixels, payload, budget, seed, the codec weights and the packet
    format (format 2 packs a message into fewer packets, so a format 1 result is stale)."""
    return digest(
        canonical(
            {
                "format": FORMAT_VERSION,
                "packet_format": PACKET_FORMAT_VERSION,
                "scenario": dict(physics),
                "image": image_digest,
                "payload": payload,
                "budget_packets": budget_packets,
                "seed": seed,
                "model": model_fingerprint,
            }
        )
    )


def load_done(path: Path, key: str) -> dict[str, Any] | None:
    """A finished replication's result, or None when missing, unreadable or not this key's."""
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable: run it (again)
    ok = isinstance(res, dict) and res.get("format") == FORMAT_VERSION and res.get("key") == key
    return res if ok else None


def save_done(folder: Path, key: str, result: Mapping[str, Any]) -> None:
    """Write one replication's result atomically (a crash never leaves half a file)."""
    atomic_write(folder / f"{key}.json", canonical(dict(result)))
