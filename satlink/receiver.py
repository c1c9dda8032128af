"""The ground end: check each message, reassemble, render and score a preview after every packet.

The receiver joins transport and codec: it takes raw bytes off the channel (fragments or whole
packets), lets the CRC decide what is corrupt, and after every *new* packet decodes the indices
received so far with their ``received`` mask.

>>> import codec
>>> rx = Receiver(codec.default_codec(), reference=image)            # doctest: +SKIP
>>> arrival = rx.receive(payload, t_arrival_s=61.2)                    # doctest: +SKIP
>>> arrival.verdict, arrival.preview.scores["ms_ssim"]                 # doctest: +SKIP
('accepted', 0.71)
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    # Types only: the codec pulls in torch (seconds), and `import satlink` stays light; the
    # functions that decode import it when they run.
    from codec import Codec, ProgressiveCode

from satlink.fileio import atomic_write
from satlink.outdir import LOCK_NAME, MANIFEST_NAME
from satlink.packets import (
    MAX_PACKET_SIZE_BYTES,
    PACKET_FILE_PATTERN,  # the packet-file writer lives in satlink.packets.files
    BytesPacket,
    Defragmenter,
    IndexPacket,
    PacketCRCError,
    PacketError,
    Reassembler,
    RepairPacket,
    encode_to_files,
    parse_fragment,
    parse_packet,
)

__all__ = [
    "PACKET_FILE_PATTERN",
    "VERDICTS",
    "Arrival",
    "BoundedLRU",
    "DecodeCache",
    "DecodeReport",
    "Preview",
    "Receiver",
    "crc_check",
    "decode_files",
    "encode_to_files",
]

VERDICTS = ("accepted", "duplicate", "corrupted", "rejected", "fragment")


class BoundedLRU:
    """A bounded mapping that forgets the least recently used entry first, counting hits.

    >>> lru = BoundedLRU(2)
    >>> lru.remember("a", lambda: 1), lru.remember("a", lambda: 2), lru.hits
    (1, 1, 1)
    """

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._store: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        """The entry (now the most recent), or None; counts a hit or a miss."""
        item = self._store.get(key)
        if item is None:
            self.misses += 1
            return None
        self._store.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: Hashable, value: Any) -> None:
        self._store[key] = value
        self._store.move_to_end(key)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def remember(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The entry for ``key``, made (and kept) by ``make()`` when it is not there."""
        item = self.get(key)
        if item is None:
            item = make()
            self.put(key, item)
        return item

    def __len__(self) -> int:
        return len(self._store)


class DecodeCache(BoundedLRU):
    """Bounded LRU of decoded previews keyed by (code, received mask).

    Replications of one image under one scenario see the same masks again and again (every
    stage-major run starts with the same prefixes), so a sweep decodes each distinct mask once.
    """

    @staticmethod
    def key(code: ProgressiveCode, received: np.ndarray) -> bytes:
        h = hashlib.blake2b(digest_size=20)
        h.update(np.asarray(code.image_size, np.int64).tobytes())
        h.update(code.model_id.to_bytes(2, "big"))
        h.update(code.indices.tobytes())
        h.update(np.packbits(received).tobytes())
        return h.digest()


@dataclass
class Preview:
    """One refinement: what the user sees after an accepted packet.

    ``image`` is the pixels in memory or, once a replay has streamed the preview to disk and
    let go of them (``path`` set, memory bounded however many previews there are), read back
    from that PNG on each access (lossless: the same pixels).
    """

    number: int  # 1-based count of previews so far
    seq: int  # sequence number of the packet that triggered it
    t_arrival_s: float
    indices_received: int
    indices_total: int
    stages_complete: int
    scores: dict[str, float]
    image: np.ndarray | None = field(default=None, repr=False)
    path: Path | None = field(default=None, repr=False, compare=False)  # the PNG, once written
    # A small copy for the report (satlink.report.replay_files.frame_of), kept by the preview
    # stream so the report does not read every PNG back; None when not kept.
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)


def _preview_image(self: Preview) -> np.ndarray | None:
    image = self.__dict__.get("_pixels")
    if image is None and self.path is not None:
        with Image.open(self.path) as im:
            image = np.asarray(im.convert("RGB"))
    return image


def _set_preview_image(self: Preview, image: np.ndarray | None) -> None:
    self.__dict__["_pixels"] = image


# A property over the dataclass field: the generated __init__ assigns through the setter.
Preview.image = property(_preview_image, _set_preview_image)  # type: ignore[assignment]


@dataclass
class Arrival:
    """What the receiver made of one message off the channel."""

    t_arrival_s: float
    verdict: str  # one of VERDICTS
    reason: str = ""
    packet_seq: int | None = None
    preview: Preview | None = None
    wire_seq: int = -1  # the channel's message slot, filled in by whoever drives the link


def crc_check(fragmented: bool) -> Callable[[bytes], bool]:
    """The receiver's CRC as a yes/no check, for the channel to judge corruption by (ARQ)."""
    parse = parse_fragment if fragmented else parse_packet

    def check(payload: bytes) -> bool:
        try:
            parse(payload)
        except PacketError:
            return False
        return True

    return check


class Receiver:
    """Accepts messages in arrival order and keeps the previews and counts.

    ``reference`` (the source image) enables scoring; ``perceptual`` adds optional metrics
    such as LPIPS (``codec.metrics.load_perceptual``). ``fragmented`` means the channel carries
    fragments (``satlink.packets.fragment``) rather than whole packets.
    """

    def __init__(
        self,
        codec: Codec | None = None,
        reference: np.ndarray | None = None,
        *,
        packet_size_bytes: int | None = None,
        fragmented: bool = False,
        perceptual: Mapping[str, object] | None = None,
        cache: DecodeCache | None = None,
        keep_images: bool = True,
    ) -> None:
        from codec import default_codec, load_image

        self.codec = codec or default_codec()
        self.reference = None if reference is None else load_image(reference)
        self._scorer = None
        self.fragmented = fragmented
        self.perceptual = dict(perceptual or {})
        self.cache = cache
        self.keep_images = keep_images
        self.reassembler = Reassembler(packet_size_bytes)
        self.defragmenter = (
            Defragmenter(packet_size_bytes=packet_size_bytes) if fragmented else None
        )
        self.previews: list[Preview] = []

    # -- scoring ---------------------------------------------------------------------------------
    def _score(self, image: np.ndarray) -> dict[str, float]:
        if self.reference is None:
            return {}
        if self._scorer is None:
            from codec.metrics import Reference

            # Prepared once: a replay scores a preview against the same original after every
            # packet, and the original's MS-SSIM moments need computing only once.
            self._scorer = Reference(self.reference)
        scores = {
            "psnr_db": self._scorer.psnr(image),
            "ms_ssim": self._scorer.ms_ssim(image),
        }
        for name, metric in self.perceptual.items():
            scores[name] = float(metric(self.reference, image))
        return scores

    def render(self, code: ProgressiveCode, received: np.ndarray) -> tuple[np.ndarray, dict]:
        """Decode and score one mask, through the cache when there is one."""
        key = DecodeCache.key(code, received) if self.cache is not None else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            return hit
        image = self.codec.decode(code, received)
        value = (image, self._score(image))
        if key is not None:
            self.cache.put(key, value)
        return value

    # -- intake ----------------------------------------------------------------------------------
    def receive(self, payload: bytes, t_arrival_s: float) -> Arrival:
        """Take one message off the channel; return what became of it."""
        data = payload
        if self.defragmenter is not None:
            try:
                data = self.defragmenter.add(payload)  # checks the fragment's own CRC
            except PacketCRCError as exc:
                return Arrival(t_arrival_s, "corrupted", f"fragment CRC: {exc}")
            except PacketError as exc:
                return Arrival(t_arrival_s, "rejected", f"fragment: {exc}")
            if data is None:
                return Arrival(t_arrival_s, "fragment", "waiting for the other fragments")
        try:
            packet = parse_packet(data, self.reassembler.packet_size_bytes)
        except PacketCRCError as exc:
            return Arrival(t_arrival_s, "corrupted", str(exc))
        except PacketError as exc:
            return Arrival(t_arrival_s, "rejected", str(exc))
        # Message identity: one receiver shows one picture; a packet of another message is
        # refused, never blended in (ids derive from the content: satlink.packets.identity).
        shown = self.reassembler.message_ids[:1]
        if shown and packet.message_id != shown[0]:
            return Arrival(
                t_arrival_s,
                "rejected",
                f"message {packet.message_id} is another picture; this receiver shows "
                f"message {shown[0]}",
                packet.seq,
            )
        try:
            new = self.reassembler.add(packet)
        except PacketError as exc:
            return Arrival(t_arrival_s, "rejected", str(exc), packet.seq)
        if not new:
            return Arrival(t_arrival_s, "duplicate", "already have this packet", packet.seq)
        # FEC: a packet that lets the reassembler rebuild lost sources of its block (a repair
        # completing a stage's block) renders a preview with them; a repair that rebuilds
        # nothing yet is kept, and shows nothing new.
        rebuilt = self.reassembler.last_recovered
        reason = f"rebuilt seq {', '.join(str(p.seq) for p in rebuilt)}" if rebuilt else ""
        if isinstance(packet, RepairPacket):
            if not rebuilt:
                return Arrival(t_arrival_s, "accepted", "repair packet kept", packet.seq)
            packet = rebuilt[-1]
        preview = self._refresh(packet, t_arrival_s)
        return Arrival(t_arrival_s, "accepted", reason, packet.seq, preview)

    def _refresh(self, packet: IndexPacket | BytesPacket, t: float) -> Preview | None:
        if isinstance(packet, BytesPacket):
            msg = self.reassembler.bytes_message(packet.message_id)
            if msg.data is None:  # a classical file shows nothing until it is whole
                return None
            from codec.classical import decode_file

            image = decode_file(msg.data, msg.content_type)
            if self.reference is not None and image.shape != self.reference.shape:
                h, w = self.reference.shape[:2]
                image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
            return self._add_preview(
                packet.seq, t, image, self._score(image), msg.total_packets, msg.total_packets, 0
            )
        msg = self.reassembler.index_message(packet.message_id)
        image, scores = self.render(msg.code, msg.received)
        return self._add_preview(
            packet.seq,
            t,
            image,
            scores,
            int(msg.received.sum()),
            msg.received.size,
            msg.complete_stages,
        )

    def _add_preview(
        self, seq: int, t: float, image: np.ndarray, scores: dict, got: int, total: int, stages: int
    ) -> Preview:
        preview = Preview(
            len(self.previews) + 1,
            seq,
            t,
            got,
            total,
            stages,
            scores,
            image if self.keep_images else None,
        )
        self.previews.append(preview)
        return preview


# -- the packet-file test bench (`satlink encode` / `satlink decode`) ---------------------------


@dataclass
class DecodeReport:
    accepted: list[str]
    rejected: dict[str, str]  # file name -> reason
    missing_seqs: list[int]
    total_packets: int
    stages_complete: int
    out_path: Path | None

    def describe(self) -> str:
        lines = [
            f"accepted {len(self.accepted)} of {self.total_packets} packets, "
            f"rejected {len(self.rejected)}, missing {len(self.missing_seqs)}"
        ]
        for name, why in sorted(self.rejected.items()):
            lines.append(f"  rejected {name}: {why}")
        if self.missing_seqs:
            shown = ", ".join(map(str, self.missing_seqs[:20]))
            more = " ..." if len(self.missing_seqs) > 20 else ""
            lines.append(f"  missing seq: {shown}{more}")
        lines.append(f"complete stages: {self.stages_complete}")
        if self.out_path is not None:
            lines.append(f"wrote {self.out_path}")
        return "\n".join(lines)


def decode_files(
    packet_dir: str | Path, out_path: str | Path, codec: Codec | None = None, *, split: bool = False
) -> DecodeReport | list[DecodeReport]:
    """Decode whatever packet files are in a folder and write the best preview.

    Files that fail the checks are reported with the reason and skipped; nothing is guessed.
    A folder mixing the packets of several pictures (message ids) is refused with one line
    that says which files belong to which, never decoded into a blend; with ``split`` each
    picture is written on its own (``<out>-msg<id>.png``) and a list of reports comes back.
    """
    folder = Path(packet_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"packet folder not found: {folder}")
    # `satlink encode` leaves its folder's manifest and lock: bookkeeping, not packets
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME)
    )
    if not files:
        raise FileNotFoundError(f"no packet files in {folder}")
    reassembler = Reassembler()
    accepted, rejected = [], {}
    owner: dict[str, int] = {}  # file name -> message id
    for path in files:
        size = path.stat().st_size
        if size > MAX_PACKET_SIZE_BYTES:  # a stray big file is judged by its size, never read
            rejected[path.name] = (
                f"{size:,} bytes, larger than any packet (at most {MAX_PACKET_SIZE_BYTES:,}); "
                "not read"
            )
            continue
        try:
            packet = parse_packet(path.read_bytes(), reassembler.packet_size_bytes)
            owner[path.name] = packet.message_id
            if reassembler.add(packet):
                accepted.append(path.name)
            else:
                rejected[path.name] = "duplicate of an earlier file"
        except PacketError as exc:
            rejected[path.name] = str(exc)
    if not accepted:
        name, why = next(iter(rejected.items()))
        raise ValueError(
            f"none of the {len(files)} files in {folder} is a valid packet ({name}: {why})"
        )
    message_ids = reassembler.message_ids
    if len(message_ids) > 1 and not split:
        groups = "; ".join(
            f"message {m}: {_name_range([n for n in accepted if owner[n] == m])}"
            for m in message_ids
        )
        raise ValueError(
            f"{folder} mixes {len(message_ids)} pictures ({groups}); nothing written: "
            "keep one picture's files per folder, or pass --split for one picture each"
        )
    if split:
        out = Path(out_path)
        return [
            _decode_one(
                reassembler,
                m,
                [n for n in accepted if owner[n] == m],
                {n: r for n, r in rejected.items() if owner.get(n) == m},
                out.with_name(f"{out.stem}-msg{m:05d}{out.suffix or '.png'}"),
                codec,
            )
            for m in message_ids
        ]
    return _decode_one(reassembler, message_ids[0], accepted, rejected, Path(out_path), codec)


def _name_range(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names) + f" ({len(names)} files)"
    return f"{names[0]} .. {names[-1]} ({len(names)} files)"


def _decode_one(
    reassembler: Reassembler,
    message_id: int,
    accepted: list[str],
    rejected: dict[str, str],
    out: Path,
    codec: Codec | None,
) -> DecodeReport:
    msg = reassembler.index_message(message_id)
    if codec is None:
        from codec import load_codec

        codec = load_codec(msg.model_id)  # the header names the model that made it
    image = codec.decode(msg.code, msg.received)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write(out, buf.getvalue())  # a reader never sees half a PNG
    return DecodeReport(
        accepted, rejected, msg.missing_seqs, msg.total_packets, msg.complete_stages, out
    )
