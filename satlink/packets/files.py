"""Packet files: one file per packet, named by sequence number, for the ``satlink encode`` /
``satlink decode`` test bench (carry the files over any channel, drop or corrupt some, and see
what the receiver makes of the rest).

Only the writing side lives here, beside the packets it writes; decoding a folder needs the
codec and is :func:`satlink.receiver.decode_files`.

>>> import tempfile
>>> import numpy as np
>>> from codec.code import ProgressiveCode
>>> code = ProgressiveCode(np.zeros((2, 4, 4), np.uint16), (64, 64), 10, 1)
>>> with tempfile.TemporaryDirectory() as folder:
...     paths = encode_to_files(code, folder, packet_size_bytes=30)
...     [(p.name, p.stat().st_size) for p in paths][:2]
[('packet_00000.bin', 30), ('packet_00001.bin', 30)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from satlink.packets.format import DEFAULT_PACKET_SIZE_BYTES
from satlink.packets.identity import content_message_id
from satlink.packets.packetize import packetize

if TYPE_CHECKING:
    from codec.code import ProgressiveCode

__all__ = ["PACKET_FILE_PATTERN", "encode_to_files", "write_packet_files"]

# Zero-padded so that a sorted directory listing is sequence order (16-bit seq: 5 digits).
PACKET_FILE_PATTERN = "packet_{seq:05d}.bin"


def write_packet_files(packets: Sequence[bytes], out_dir: str | Path) -> list[Path]:
    """Write ``packets[seq]`` to ``out_dir/packet_<seq>.bin`` (folder created); return the paths.

    Plain files, for a folder the caller owns: this layer knows nothing of output folders.
    ``satlink encode --out`` writes the same names through :func:`satlink.outdir.write_files`
    instead, which refuses a folder of someone else's files and removes an earlier encode's
    extra packets."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seq, data in enumerate(packets):
        path = out / PACKET_FILE_PATTERN.format(seq=seq)
        path.write_bytes(data)
        paths.append(path)
    return paths


def encode_to_files(
    code: ProgressiveCode,
    out_dir: str | Path,
    *,
    packet_size_bytes: int = DEFAULT_PACKET_SIZE_BYTES,
    interleave: bool = False,
    message_id: int | None = None,
) -> list[Path]:
    """Packetize a code (``codec.encode(image)``) and write one file per packet, named by
    sequence number; return the paths in sequence order. Without ``message_id`` the id is
    derived from the content (:func:`satlink.packets.content_message_id`)."""
    if message_id is None:
        message_id = content_message_id(code)
    packets = packetize(code, packet_size_bytes, message_id=message_id, interleave=interleave)
    return write_packet_files(packets, out_dir)
