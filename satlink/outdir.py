"""Output folders: a run owns only what it writes.

A replay writes into a folder the user names (``--out``). That folder may already hold the
user's own files, or the files of an earlier run, and a second run may start into it at the
same time. :class:`OutputFolder` makes the rules explicit:

* **Ownership.** A folder is satlink's when it is new, empty, or holds a manifest
  (``.satlink-run.json``) that a satlink run wrote; a non-empty folder without one is refused
  before anything is written, with a line that says how to proceed.
* **Never someone else's file.** The manifest records every file a run wrote with its size and
  modification time. A run overwrites a file only if it wrote it itself or an earlier run
  recorded it unchanged; a file the user put there or changed since is refused, not touched.
* **No stale mix.** When a run ends (finished or interrupted), files an earlier run wrote that
  this run did not write again (previews beyond this run's count) are removed, but only if
  they are still exactly as recorded. A run that fails removes nothing.
* **One run at a time.** A lock (``.satlink.lock``, ``flock``: released by the OS when the
  process ends, so a killed run never leaves a stale lock) refuses a second concurrent run.

>>> folder = OutputFolder("out", kind="replay")           # doctest: +SKIP
>>> with folder:                                           # claims and locks; releases at the end
...     report.write_json(folder.file("summary.json"), summary)      # doctest: +SKIP
...     folder.finish("complete")                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import satlink
from satlink.fileio import atomic_write

try:  # POSIX; elsewhere the folder is not locked (documented in docs/GUARANTEES.md)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "OutputFolder",
    "OutputFolderError",
    "write_files",
]

MANIFEST_NAME = ".satlink-run.json"
LOCK_NAME = ".satlink.lock"
_OURS = (MANIFEST_NAME, LOCK_NAME)


class OutputFolderError(ValueError):
    """An output folder a run may not use; the message names it and says how to proceed."""


def _is_temp(name: str) -> bool:
    # fileio.atomic_write's temporary files (".name.<hex>.tmp"), left only by a killed writer
    return name.startswith(".") and name.endswith(".tmp")


def _inside(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _stamp(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class OutputFolder:
    """One run's claim on an output folder: ownership check, lock, manifest, clean-up.

    ``expected`` names files (relative paths) the run will write, checked up front; any other
    file is checked when the run asks for it with :meth:`file`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str = "replay",
        flag: str = "--out",
        remove_stale: bool = True,
    ) -> None:
        self.root = Path(path)
        self.kind = kind
        self.remove_stale = remove_stale  # a sweep keeps every earlier replication (resume)
        self.flag = flag
        self.previous: dict[str, dict[str, int]] = {}  # files an earlier run recorded
        self.written: set[str] = set()  # files this run wrote (relative paths)
        self._lock_fd: int | None = None
        self.state = "running"

    # -- claiming ---------------------------------------------------------------------------------
    def _how(self) -> str:
        return f"choose a new or empty folder with {self.flag}, or move those files away"

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise OutputFolderError(
                f"output folder {self.root}: {MANIFEST_NAME} is not a satlink manifest (damaged "
                f"or not ours); {self._how()}"
            ) from None
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or data.get("tool") != "satlink":
            raise OutputFolderError(
                f"output folder {self.root}: {MANIFEST_NAME} was not written by satlink; "
                f"{self._how()}"
            )
        return data

    def _entries(self) -> list[str]:
        """Relative paths of the plain files below the folder, our own bookkeeping excluded."""
        out = []
        for dirpath, _dirs, names in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root)
            for name in names:
                rel = (rel_dir / name).as_posix()
                if rel in _OURS or _is_temp(name):
                    continue
                out.append(rel)
        return sorted(out)

    def check(self, expected: Iterable[str] = ()) -> None:
        """Refuse the folder if it is not satlink's or holds a foreign file in the way.

        Writes nothing: call it before any expensive work, so a refusal comes first.
        """
        if self.root.exists() and not self.root.is_dir():
            raise OSError(f"cannot write to output folder {self.root}: it is a file")
        if not self.root.is_dir():
            return
        manifest = self._read_manifest()
        entries = self._entries()
        if manifest is None:
            if entries:
                shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
                raise OutputFolderError(
                    f"output folder {self.root} already holds {len(entries)} file(s) that no "
                    f"satlink run wrote ({shown}); {self._how()}"
                )
            return
        self.previous = {
            str(k): v
            for k, v in manifest["files"].items()
            if isinstance(v, dict) and _inside(str(k))  # never a path out of the folder
        }
        for rel in expected:
            self._check_target(rel)

    def _unchanged(self, rel: str) -> bool:
        rec = self.previous.get(rel)
        return rec is not None and _stamp(self.root / rel) == {
            "size_bytes": rec.get("size_bytes"),
            "mtime_ns": rec.get("mtime_ns"),
        }

    def _check_target(self, rel: str) -> None:
        path = self.root / rel
        if rel in self.written or not (path.exists() or path.is_symlink()):
            return
        if path.is_symlink() or not path.is_file():
            raise OutputFolderError(
                f"output folder {self.root}: {rel} is in the way (not a file satlink wrote); "
                f"{self._how()}"
            )
        if not self._unchanged(rel):
            why = (
                "was changed after satlink wrote it"
                if rel in self.previous
                else ("was not written by satlink")
            )
            raise OutputFolderError(
                f"output folder {self.root}: {rel} {why}, so it is not overwritten; {self._how()}"
            )

    def claim(self, expected: Iterable[str] = ()) -> OutputFolder:
        """Create and lock the folder, check it again under the lock, record the run."""
        lock_path = self.root / LOCK_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            created = not lock_path.exists()
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OSError(
                f"cannot write to output folder {self.root}: {exc.strerror or exc}"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputFolderError(
                    f"output folder {self.root} is in use by another satlink run (pid "
                    f"{holder}); wait for it to finish or choose another folder with {self.flag}"
                ) from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.check(expected)  # again, now that no other run can change the folder
            self._write_manifest()
        except BaseException:
            self.release()
            if created and not (self.root / MANIFEST_NAME).exists():
                lock_path.unlink(missing_ok=True)  # refused: leave the folder as it was
            raise
        return self

    # -- during the run ---------------------------------------------------------------------------
    def file(self, rel: str) -> Path:
        """The path to write ``rel`` to, once it is clear the file is this run's to write."""
        self._check_target(rel)
        self.written.add(rel)
        return self.root / rel

    def wrote(self, rel: str) -> bool:
        """Whether ``rel`` is on disk as this run wrote it (not an earlier run's copy)."""
        path = self.root / rel
        return path.is_file() and not self._unchanged(rel)

    # -- the end ----------------------------------------------------------------------------------
    def _files(self) -> dict[str, dict[str, int]]:
        files = {}
        for rel in sorted(set(self.previous) | self.written):
            if rel not in self.written and not self._unchanged(rel):
                continue  # gone or changed: no longer ours
            stamp = _stamp(self.root / rel)
            if stamp is not None:
                files[rel] = stamp
        return files

    def _write_manifest(self) -> None:
        manifest = {
            "tool": "satlink",
            "version": satlink.__version__,
            "kind": self.kind,
            "state": self.state,
            "pid": os.getpid(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": self._files(),
        }
        atomic_write(self.root / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())

    def finish(self, state: str) -> list[str]:
        """Record the run as ``state``; after a run that ``complete``d or was ``interrupted``,
        remove the earlier run's files this run did not write again (only those still exactly
        as recorded). Returns the removed paths."""
        self.state = state
        removed = []
        if self.remove_stale and state in ("complete", "interrupted"):
            for rel in sorted(set(self.previous) - self.written):
                if self._unchanged(rel):
                    (self.root / rel).unlink()
                    removed.append(rel)
            self.previous = {k: v for k, v in self.previous.items() if k not in removed}
        self._write_manifest()
        return removed

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def __enter__(self) -> OutputFolder:
        if self._lock_fd is None:
            self.claim()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.state == "running" and self._lock_fd is not None:
                # an error, or a Ctrl-C outside the link: what is there may be a mix of this
                # run's files and an earlier run's, so nothing is removed
                self.remove_stale = False
                self.finish("interrupted" if exc_type is KeyboardInterrupt else "failed")
        except OSError:
            if exc_type is None:
                raise
            # already failing (a full disk, say): that error is the one to report
        finally:
            self.release()


def write_files(
    out_dir: str | Path, files: Mapping[str, bytes], *, kind: str, flag: str = "--out"
) -> list[Path]:
    """Write ``files`` (relative path -> bytes) into ``out_dir`` as one run of ``kind``, under
    the rules above: the folder must be new, empty or satlink's; each file is written
    atomically; an earlier run's files that this one does not write again are removed (if
    unchanged). Returns the paths, in the order given.

    >>> write_files("packets", {"packet_000.bin": b"..."}, kind="encode")  # doctest: +SKIP
    [PosixPath('packets/packet_000.bin')]
    """
    folder = OutputFolder(out_dir, kind=kind, flag=flag)
    with folder.claim(files):
        paths = []
        for rel, data in files.items():
            path = folder.file(rel)
            atomic_write(path, data)
            paths.append(path)
        folder.finish("complete")
    return paths
