"""Files of a report folder: JSON, CSV and the readable summary layout.

Each is written whole or not at all (:func:`satlink.fileio.atomic_write`).

>>> rounded({"t_s": 60.2500001, "final_ms_ssim": 0.918812345, "final_psnr_db": 22.8412, "n": 3})
{'t_s': 60.25, 'final_ms_ssim': 0.9188, 'final_psnr_db': 22.84, 'n': 3}
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from satlink.fileio import atomic_write

__all__ = [
    "json_default",
    "rounded",
    "write_csv",
    "write_json",
]

# Decimal places by the end of a key's name (its unit): what a reader needs, not float noise.
ROUNDING_BY_SUFFIX: tuple[tuple[str, int], ...] = (
    ("_s", 3),  # milliseconds
    ("_db", 2),
    ("_dbw", 2),
    ("_dbk", 2),
    ("_deg", 2),
    ("ms_ssim", 4),
    ("_frac", 4),
    ("lpips", 4),
    ("dists", 4),
)


def json_default(o: Any) -> Any:
    """JSON for numpy scalars and arrays and paths (non-finite floats become null)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    """``obj`` as indented JSON, atomically; always valid JSON (NaN and infinities, which JSON
    cannot hold, are written as null)."""
    text = json.dumps(_finite(obj), indent=2, default=json_default, allow_nan=False)
    atomic_write(path, (text + "\n").encode())


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def rounded(obj: Any, key: str = "") -> Any:
    """``obj`` with floats rounded by their key's unit (:data:`ROUNDING_BY_SUFFIX`; others to
    6 significant digits) and non-finite floats as None; dicts keep their key order."""
    if isinstance(obj, Mapping):
        return {k: rounded(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, key) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        if not math.isfinite(v):
            return None
        for suffix, places in ROUNDING_BY_SUFFIX:
            if key.endswith(suffix):
                return round(v, places)
        return float(f"{v:.6g}")
    return obj


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV; the columns are every key in first-seen order, floats to 6 significant
    digits, NaN and missing values empty."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    atomic_write(path, buf.getvalue().encode())


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v
