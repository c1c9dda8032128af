"""The link's record: deliveries, and the trace of every event (one row each).

The sender appends one plain tuple per event (fields as :data:`EVENT_DTYPE`, outcomes as the
small-int codes below); :func:`trace_from_events` turns them into numpy columns in one pass.

>>> rows = [(0, 0, 0.0, 1.0, 1.25, 0.25, 0.0, 90.0, 6.5, 0.01, CODE_DELIVERED, 0, 0)]
>>> trace = trace_from_events(rows, reliable=[True], size_bytes=[125], t_enqueue_s=[0.0])
>>> trace.counts()["delivered"], trace["t_arrival_s"].tolist(), trace["channel_state"].tolist()
(1, [1.25], ['-'])
>>> trace.to_csv().splitlines()[1]
'0,0,True,125,0.0,0.0,1.0,1.25,0.25,0.0,90.0,6.5,0.01,delivered,0,-'
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CHANNEL_STATES",
    "CODE_ABANDONED",
    "CODE_CORRUPTED",
    "CODE_DELIVERED",
    "CODE_DROPPED_QUEUE",
    "CODE_DROPPED_VISIBILITY",
    "CODE_LOST",
    "CODE_RETRANSMITTED",
    "CODE_WAITED",
    "EVENT_DTYPE",
    "OUTCOMES",
    "TRACE_COLUMNS",
    "Delivery",
    "LinkResult",
    "Trace",
    "trace_from_events",
]

OUTCOMES = (
    "delivered",
    "lost",
    "corrupted",
    "retransmitted",
    "dropped-queue",
    "dropped-visibility",
    "waited-for-visibility",
    "abandoned",
)
CHANNEL_STATES = ("-", "good", "bad")  # "-": the loss model has no state
# the sender stores small ints per event; the trace turns them into names once, vectorised
(
    CODE_DELIVERED,
    CODE_LOST,
    CODE_CORRUPTED,
    CODE_RETRANSMITTED,
    CODE_DROPPED_QUEUE,
    CODE_DROPPED_VISIBILITY,
    CODE_WAITED,
    CODE_ABANDONED,
) = range(len(OUTCOMES))


class Delivery(NamedTuple):
    """A copy that reached the receiver (possibly with flipped bits: the receiver's CRC decides)."""

    t_arrival_s: float
    seq: int
    payload: bytes


TRACE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "i8"),
    ("attempt", "i8"),
    ("reliable", "?"),
    ("size_bytes", "i8"),
    ("t_enqueue_s", "f8"),
    ("t_tx_start_s", "f8"),
    ("t_tx_end_s", "f8"),
    ("t_arrival_s", "f8"),
    ("delay_s", "f8"),
    ("wait_s", "f8"),
    ("elevation_deg", "f8"),
    ("ebn0_db", "f8"),
    ("per", "f8"),
    ("outcome", "code"),
    ("bits_flipped", "i8"),
    ("channel_state", "code"),
)
_CODE_NAMES = {"outcome": OUTCOMES, "channel_state": CHANNEL_STATES}
# what the sender records per event, in this order (see satlink.channel.link); the columns
# that are constant per message are looked up from seq once, in trace_from_events
EVENT_DTYPE = np.dtype(
    [
        ("seq", "i8"),
        ("attempt", "i8"),
        ("t_tx_start_s", "f8"),
        ("t_tx_end_s", "f8"),
        ("t_arrival_s", "f8"),
        ("delay_s", "f8"),
        ("wait_s", "f8"),
        ("elevation_deg", "f8"),
        ("ebn0_db", "f8"),
        ("per", "f8"),
        ("outcome", "i1"),
        ("bits_flipped", "i8"),
        ("channel_state", "i1"),
    ]
)


class Trace:
    """Per-packet event trace, one row per event (a transmission attempt, a drop or a wait).

    Columns: ``seq``, ``attempt`` (retry count, 0 for the first transmission), ``reliable``,
    ``size_bytes``, ``t_enqueue_s``, ``t_tx_start_s``, ``t_tx_end_s``, ``t_arrival_s`` (NaN when
    nothing arrived), ``delay_s``, ``wait_s`` (time spent waiting for visibility),
    ``elevation_deg``, ``ebn0_db`` (the budget's Eb/N0 for this attempt, fades included; NaN
    without a budget), ``per`` (the probability of loss or corruption the link applied to this
    attempt), ``outcome`` (one of :data:`OUTCOMES`), ``bits_flipped`` and ``channel_state``
    (``good``/``bad`` for a two-state chain, else ``-``).

    An attempt that failed and will be repeated by the ARQ has outcome ``retransmitted``; one
    that failed with no retries left is ``abandoned`` (the ARQ gives the message up);
    ``lost`` / ``corrupted`` are failures of messages the ARQ does not cover.
    """

    columns = tuple(name for name, _ in TRACE_COLUMNS)

    def __init__(self, data: dict[str, Sequence[Any]]) -> None:
        """``data`` maps every column name to its values; ``outcome`` and ``channel_state``
        may be given as names or as indices into :data:`OUTCOMES` / :data:`CHANNEL_STATES`."""
        self._cols: dict[str, np.ndarray] = {}
        # the return link's messages (ARQ acknowledgements), when it carries them as messages
        self.return_events: list[dict[str, Any]] = []
        self._codes: dict[str, np.ndarray] = {}
        for name, kind in TRACE_COLUMNS:
            values = data[name]
            if kind == "code":
                names = _CODE_NAMES[name]
                arr = np.asarray(values)
                if arr.dtype.kind not in "iu":  # names given: look them up
                    lookup = {v: i for i, v in enumerate(names)}
                    arr = np.array([lookup[v] for v in values], dtype=np.int8)
                self._codes[name] = arr.astype(np.int8).reshape(-1)
                self._cols[name] = np.array(names)[self._codes[name]]
            else:
                self._cols[name] = np.array(values, dtype=kind)

    def __len__(self) -> int:
        return len(self._cols["seq"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self.to_csv() == other.to_csv()

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def rows(self) -> Iterator[dict[str, Any]]:
        """Rows as dicts of plain Python values."""
        lists = {k: v.tolist() for k, v in self._cols.items()}
        for i in range(len(self)):
            yield {k: lists[k][i] for k in self.columns}

    def counts(self) -> dict[str, int]:
        """Number of rows per outcome (every outcome present, zeros included)."""
        counts = np.bincount(self._codes["outcome"], minlength=len(OUTCOMES))
        return {o: int(c) for o, c in zip(OUTCOMES, counts, strict=True)}

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV text (written to ``path`` if given). Floats use repr: exact and deterministic."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        lists = [self._cols[k].tolist() for k in self.columns]
        for row in zip(*lists, strict=True):
            w.writerow([_csv_cell(x) for x in row])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def digest(self) -> str:
        """SHA-256 of the CSV: equal digests mean byte-identical traces."""
        return hashlib.sha256(self.to_csv().encode()).hexdigest()


def _csv_cell(x: Any) -> Any:
    if isinstance(x, float):
        return "" if math.isnan(x) else repr(x)  # repr round-trips: byte-stable, lossless
    return x


class LinkResult(NamedTuple):
    """What :meth:`Link.run` returns: deliveries in arrival order and the trace."""

    deliveries: list[Delivery]
    trace: Trace


def trace_from_events(
    rows: Sequence[tuple[Any, ...]],
    reliable: Sequence[bool],
    size_bytes: Sequence[int],
    t_enqueue_s: Sequence[float],
) -> Trace:
    """The :class:`Trace` of the event tuples ``rows`` (fields as :data:`EVENT_DTYPE`);
    ``reliable``, ``size_bytes`` and ``t_enqueue_s`` are per message, indexed by ``seq``."""
    # one C-level pass turns the event tuples into columns
    rec = np.array(rows, dtype=EVENT_DTYPE) if rows else np.zeros(0, EVENT_DTYPE)
    cols: dict[str, Any] = {name: rec[name] for name in EVENT_DTYPE.names or ()}
    # per-message constants are looked up from seq here rather than stored per event
    seqs = rec["seq"]
    cols["reliable"] = np.array(reliable, dtype=bool)[seqs]
    cols["size_bytes"] = np.array(size_bytes, dtype=np.int64)[seqs]
    cols["t_enqueue_s"] = np.array(t_enqueue_s, dtype=np.float64)[seqs]
    return Trace(cols)
