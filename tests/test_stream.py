"""Format version 2: one index stream over the stages (satlink.packets.stream)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.code import ProgressiveCode
from satlink import packets as pk
from satlink.packets import (
    FecConfig,
    PacketFieldError,
    RepairPacket,
    packetize,
    parse_packet,
    reassemble,
)
from satlink.packets.fec import protect
from satlink.packets.stream import packet_count, stage_seqs, stream_layout


def reseal(body: bytes) -> bytes:
    """Append a valid CRC-32C, to reach the checks that come after the CRC."""
    return body + pk.crc32c(body).to_bytes(4, "big")


def random_code(seed: int, stages: int, latent: tuple[int, int], bits: int = 10):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 1 << bits, (stages, *latent), dtype=np.uint16)
    return ProgressiveCode(indices, (latent[0] * 16, latent[1] * 16), bits, 7)


def reference_stream(order: str, stages: int, positions: int, capacity: int) -> list[tuple]:
    """(stage, rank) of every slot, spelled out as docs/PACKET_FORMAT.md words it."""
    if order == "stage-major":
        return [(s, r) for s in range(stages) for r in range(positions)]
    out = []
    for start in range(0, positions, capacity):  # chunks of a packet's worth of positions
        chunk = range(start, min(start + capacity, positions))
        out += [(s, r) for s in range(stages) for r in chunk]
    return out


@settings(max_examples=100, deadline=None)
@given(
    order=st.sampled_from(pk.ORDERS),
    stages=st.integers(1, 16),
    positions=st.integers(1, 150),
    capacity=st.integers(1, 160),
)
def test_the_stream_is_the_one_the_format_describes(
    order: str, stages: int, positions: int, capacity: int
) -> None:
    # Round trips alone could not catch a wrong but self-consistent order: compare with the
    # format's words, which hold every (stage, rank) once.
    stage, rank = stream_layout(order, stages, positions, capacity)
    assert list(zip(stage.tolist(), rank.tolist(), strict=True)) == reference_stream(
        order, stages, positions, capacity
    )
    # Every packet counts for the stage it starts in, and for that stage only.
    seqs = stage_seqs(order, stages, positions, capacity)
    total = packet_count(stages, positions, capacity)
    assert sorted(int(q) for per in seqs for q in per) == list(range(total))
    for s, per in enumerate(seqs):
        assert all(stage[q * capacity] == s for q in per)


def test_a_768_by_512_picture_takes_29_packets_and_stages_complete_early() -> None:
    code = random_code(1, 5, (32, 48))
    packets = packetize(code, 360)
    assert len(packets) == 29 == pk.packets_for_stages(code, 5)
    for k, n in enumerate([6, 12, 17, 23, 29], start=1):
        assert pk.packets_for_stages(code, k) == n
        msg = reassemble(packets[:n])
        assert msg.complete_stages == k
        assert (msg.indices[:k] == code.indices[:k]).all()
        if k < 5:  # the boundary packet already brought the next stage's head
            assert 0 < msg.received[k].sum() < msg.received[k].size


def test_position_major_keeps_a_full_chunk_s_packets_to_one_stage() -> None:
    code = random_code(2, 3, (10, 10))  # 100 positions, 42 indices a 70-byte packet
    for raw in packetize(code, 70, order="position-major"):
        p = parse_packet(raw)
        if p.first_slot < 2 * 42 * 3:  # the two full chunks
            assert set(p.stages.tolist()) == {p.stage}
            assert len(set(p.positions.tolist())) == p.num_indices


def test_a_stage_that_starts_no_packet_rides_in_the_blocks_before_it() -> None:
    code = random_code(3, 5, (2, 3))  # 30 indices: one packet holds all five stages
    assert [len(s) for s in stage_seqs("stage-major", 5, 6, 274)] == [1, 0, 0, 0, 0]
    sent = protect(packetize(code, 360, message_id=4), FecConfig("reed-solomon", (1.0,) * 5))
    assert sent.repair_count == 1  # stage 1's block only
    msg = reassemble([sent.packets[1]])  # the source is lost; its repair rebuilds it
    assert msg.complete and (msg.indices == code.indices).all()
    # A repair that names a stage no packet starts in is refused, naming the field.
    repair = bytearray(sent.packets[1])
    assert isinstance(parse_packet(bytes(repair)), RepairPacket)
    repair[12] = (2 << 4) | (repair[12] & 15)
    with pytest.raises(PacketFieldError, match=r"stage = 2 .*no packet starts in it"):
        parse_packet(reseal(bytes(repair[:-4])))


def test_decode_refuses_version_1_files_saying_why(tmp_path, capsys) -> None:
    from satlink.cli import main

    folder = tmp_path / "old"
    folder.mkdir()
    for i, raw in enumerate(packetize(random_code(4, 5, (8, 8)), 360)):
        old = bytes([0x10 | (raw[0] & 15)]) + raw[1:-4]  # version 1 in byte 0's high nibble
        (folder / f"packet_{i:05d}.bin").write_bytes(reseal(old))
    out = tmp_path / "out.png"
    assert main(["decode", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "format version 1" in err and "encode the picture again" in err
    assert not out.exists()
