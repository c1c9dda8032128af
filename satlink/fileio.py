"""Files that appear whole or not at all.

Every file satlink writes goes to a temporary name in its folder and is renamed into place, so
an interrupted run (Ctrl-C, a kill, a full disk) never leaves a half-written file that a reader,
a later run or :class:`satlink.outdir.OutputFolder` could mistake for a finished one.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
>>> atomic_write(path, b"one"); atomic_write(path, b"two"); path.read_bytes()
b'two'
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "save_png"]


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: readers see the old file or the new, never half.

    The bytes go to a temporary file in the same folder (a rename is atomic only within one
    file system), named uniquely per call so that two writers of one path (sweep workers, two
    threads) never share a temporary file; the last rename wins. On failure the temporary file
    is removed, and an ``OSError`` names ``path`` (a full disk fails a write, which names none).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:  # x: never reuse a file someone else is writing
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None or str(exc.filename) == str(tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_png(path: Path, image: np.ndarray) -> None:
    """An RGB array ``[H, W, 3]`` (uint8) as a lossless PNG, atomically.

    libpng through imagecodecs with one fixed row filter: a replay writes a preview after
    every packet, and Pillow's per-row filter search took 32 ms a 768×512 preview against 14 ms
    here, for files 1 % larger.
    """
    import imagecodecs

    data = imagecodecs.png_encode(
        np.ascontiguousarray(image), level=1, filter=imagecodecs.PNG.FILTER.AVG
    )
    atomic_write(path, bytes(data))
