"""``packets.pcap``: the replay's transmissions as a capture that Wireshark and tshark read.

Every transmission (a trace row that put a message on the wire, whatever became of it:
delivered, lost, corrupted, retransmitted, abandoned) is one frame, timestamped with its
transmission start (seconds since the start of the replay, counted from ``epoch_s``, by default
1970-01-01 00:00:00 UTC). The link type is
``DLT_USER0`` (147), which Wireshark leaves to user dissectors. Each frame is a 40-byte *trace
header* (what the simulator knows: outcome, attempt, sequence numbers, times, elevation, the
receiver's verdict) followed by the message's bytes: as received when the copy arrived damaged,
else as sent.

The package ships a Lua dissector for it (:func:`dissector_path`; ``satlink dissector`` prints the
path) that names every header field and checks the CRC::

    tshark -X lua_script:$(satlink dissector) -r replay-out/packets.pcap

Trace header (big-endian):

====== ==== ====================================================================
offset size field
====== ==== ====================================================================
0      1    ``header_version`` (1)
1      1    ``outcome``: index into ``satlink.channel.OUTCOMES``
2      1    ``flags``: bit 0 reliable (ARQ), bit 1 arrived, bit 2 fragment, bit 3 bytes as
            received and different from the bytes sent
3      1    ``attempt`` (0 = first transmission; capped at 255)
4      4    ``wire_seq``: the message's slot on the link (fragments count)
8      4    ``packet_seq``: the packet it belongs to
12     4    ``bits_flipped``
16     8    ``t_tx_start_s`` (float64)
24     8    ``t_arrival_s`` (float64, NaN when nothing arrived)
32     4    ``elevation_deg`` (float32, NaN when unknown)
36     1    ``rx_verdict``: 0 none, else 1 + index into ``satlink.receiver.VERDICTS``
37     1    reserved (0)
38     2    ``preview``: the preview this copy made (0 = none)
====== ==== ====================================================================

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "p.pcap"
>>> rows = [{"seq": 0, "attempt": 0, "outcome": "delivered", "t_tx_start_s": 1.5,
...          "t_tx_end_s": 1.6, "t_arrival_s": 1.75, "packet_seq": 0, "rx_verdict": "accepted",
...          "preview": 1}]
>>> write_pcap(path, rows, [b"abc"])
1
>>> [(t, len(frame)) for t, frame in read_pcap(path)]
[(1.5, 43)]
>>> dissector_path().name
'satlink.lua'
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from satlink.channel import OUTCOMES
from satlink.fileio import atomic_write
from satlink.receiver import VERDICTS
from satlink.report.figures import is_transmission

__all__ = [
    "DLT_USER0",
    "TRACE_HEADER",
    "dissector_path",
    "read_pcap",
    "trace_header",
    "write_pcap",
]

DLT_USER0 = 147
TRACE_HEADER = struct.Struct(">BBBBIIIddfBBH")  # 40 bytes, see the module docstring
TRACE_HEADER_VERSION = 1
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_PCAP_MAGIC_US = 0xA1B2C3D4


def dissector_path() -> Path:
    """Path of the Wireshark Lua dissector shipped in the package (``satlink.lua``)."""
    return Path(str(resources.files("satlink.report").joinpath("satlink.lua")))


def _num(v: Any, default: float = math.nan) -> float:
    return float(v) if isinstance(v, int | float) and v != "" else default


def trace_header(row: Mapping[str, Any], *, arrived_damaged: bool, fragment: bool) -> bytes:
    """The 40-byte trace header of one ``packets.csv`` row."""
    t_arrival = _num(row.get("t_arrival_s"))
    flags = (
        bool(row.get("reliable"))
        | (math.isfinite(t_arrival) << 1)
        | (fragment << 2)
        | (arrived_damaged << 3)
    )
    verdict = row.get("rx_verdict") or ""
    preview = row.get("preview")
    return TRACE_HEADER.pack(
        TRACE_HEADER_VERSION,
        OUTCOMES.index(row["outcome"]),
        flags,
        min(int(row.get("attempt") or 0), 255),
        int(row["seq"]),
        int(row.get("packet_seq", row["seq"]) or 0),
        int(row.get("bits_flipped") or 0),
        _num(row.get("t_tx_start_s"), 0.0),
        t_arrival,
        _num(row.get("elevation_deg")),
        VERDICTS.index(verdict) + 1 if verdict in VERDICTS else 0,
        0,
        int(preview) if isinstance(preview, int) else 0,
    )


def write_pcap(
    path: Path,
    rows: Sequence[Mapping[str, Any]],
    messages: Sequence[bytes],
    received: Mapping[tuple[int, float], bytes] | None = None,
    *,
    epoch_s: float = 0.0,
    fragments: bool = False,
) -> int:
    """Write one frame per transmission in ``rows`` (``packets.csv`` rows); ``messages[seq]``
    are the bytes sent, ``received[(seq, t_arrival_s)]`` the bytes of copies that arrived
    changed. Returns the number of frames."""
    received = received or {}
    out = bytearray(_PCAP_HEADER.pack(_PCAP_MAGIC_US, 2, 4, 0, 0, 262_144, DLT_USER0))
    frames = 0
    for row in rows:
        if not is_transmission(row):
            continue
        seq = int(row["seq"])
        data = received.get((seq, row.get("t_arrival_s")))
        damaged = data is not None and data != messages[seq]
        frame = trace_header(row, arrived_damaged=damaged, fragment=fragments) + (
            data if data is not None else messages[seq]
        )
        t = epoch_s + _num(row.get("t_tx_start_s"), 0.0)
        sec = math.floor(t)
        usec = min(round((t - sec) * 1e6), 999_999)
        out += _RECORD_HEADER.pack(sec, usec, len(frame), len(frame)) + frame
        frames += 1
    atomic_write(path, bytes(out))
    return frames


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """``(time_s, frame)`` of every record of a microsecond pcap file with link type 147."""
    data = Path(path).read_bytes()
    magic, _, _, _, _, _, link = _PCAP_HEADER.unpack_from(data)
    if magic != _PCAP_MAGIC_US or link != DLT_USER0:
        raise ValueError(f"{path}: not a satlink pcap (magic {magic:#x}, link type {link})")
    out, pos = [], _PCAP_HEADER.size
    while pos < len(data):
        sec, usec, n, _ = _RECORD_HEADER.unpack_from(data, pos)
        pos += _RECORD_HEADER.size
        out.append((sec + usec / 1e6, data[pos : pos + n]))
        pos += n
    return out
