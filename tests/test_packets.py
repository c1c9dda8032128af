"""Tests of the packet format: round trips, reassembly of any subset, bad input, CRC, fragments."""

from __future__ import annotations

import functools
import itertools
import re
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.code import ProgressiveCode
from satlink import packets as pk
from satlink.packets import (
    BytesPacket,
    Defragmenter,
    IndexPacket,
    Packet,
    PacketConsistencyError,
    PacketCRCError,
    PacketError,
    PacketFieldError,
    PacketLengthError,
    PacketTruncatedError,
    PacketVersionError,
    Reassembler,
    fragment,
    packetize,
    packetize_bytes,
    parse_fragment,
    parse_packet,
    parse_packets,
    reassemble,
    reassemble_bytes,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_code(
    seed: int,
    stages: int = 5,
    latent: tuple[int, int] = (32, 48),
    bits: int = 10,
    downsample_log2: int = 4,
    model_id: int = 3,
) -> ProgressiveCode:
    """A code of random indices whose image size gives ``latent`` at 1/2**downsample_log2."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 1 << bits, (stages, *latent), dtype=np.uint16)
    f = 1 << downsample_log2
    # Any size in ((h-1)*f, h*f] gives latent h; take one from the seed, not always the max.
    image = tuple(int(v * f - rng.integers(0, f)) for v in latent)
    return ProgressiveCode(indices, image, bits, model_id)


def reseal(body: bytes) -> bytes:
    """Append a valid CRC-32C, to reach the checks that come after the CRC."""
    return body + pk.crc32c(body).to_bytes(4, "big")


def with_header(packet: bytes, offset: int, fmt: str, value: int) -> bytes:
    """A copy of ``packet`` with one header field replaced and a fresh CRC."""
    body = bytearray(packet[:-4])
    struct.pack_into(fmt, body, offset, value)
    return reseal(bytes(body))


# --------------------------------------------------------------------------------------------
# CRC and sizes
# --------------------------------------------------------------------------------------------


def test_crc_standard_check_values() -> None:
    # The catalogue "check" value: the CRC of the ASCII string "123456789".
    assert pk.crc32c(b"123456789") == 0xE3069283
    assert pk.crc16_ccitt_false(b"123456789") == 0x29B1


def test_crc_uses_c_extension() -> None:
    import crcmod.crcmod

    assert crcmod.crcmod._usingExtension is True
    assert pk.CRC_USES_C_EXTENSION is True
    pk.require_c_crc()


def test_payload_efficiency_at_least_95_percent_at_360_bytes() -> None:
    eff = pk.payload_efficiency(360, 10)
    print(f"\npayload efficiency: 360 B {eff:.2%}, 340 B {pk.payload_efficiency(340):.2%}, "
          f"70 B {pk.payload_efficiency(70):.2%}")  # fmt: skip
    assert eff >= 0.95
    assert pk.index_capacity(360) == 274  # 2740 index bits of 2880
    assert pk.INDEX_HEADER_SIZE_BYTES + pk.CRC_SIZE_BYTES == 17


def test_packet_size_limits_are_clear() -> None:
    with pytest.raises(ValueError, match=r"packet_size_bytes = 18 is outside 19\.\.65535"):
        pk.index_capacity(18)
    with pytest.raises(ValueError, match="header"):
        packetize(random_code(0, 1, (2, 2)), 10)
    assert pk.index_capacity(19, 16) == 1  # the smallest packet still carries one index


def test_packets_for_stages_counts_what_packetize_sends() -> None:
    code = random_code(1)
    for size in (70, 340, 360):
        packets = packetize(code, size)
        stages = [parse_packet(p).stage for p in packets]
        for k in range(code.num_stages + 1):
            want = pk.packets_for_stages(code.latent_shape, k, packet_size_bytes=size)
            assert sum(s < k for s in stages) == want
            assert pk.bytes_for_stages(code.latent_shape, k, packet_size_bytes=size) == want * size
        # Stage-major: the first packets_for_stages(k) packets are exactly stages 0..k-1.
        assert stages == sorted(stages)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_round_trip_every_packet_size() -> None:
    code = random_code(2, stages=3, latent=(5, 7))
    sizes = [*range(pk.MIN_PACKET_SIZE_BYTES, 401), 1000, 4096]
    for size in sizes:
        packets = packetize(code, size, message_id=size)
        assert {len(p) for p in packets} == {size}
        msg = reassemble(packets, packet_size_bytes=size)
        assert msg.complete and msg.received.all()
        np.testing.assert_array_equal(msg.indices, code.indices)
    # bytes kind at every size too
    data = bytes(np.random.default_rng(2).integers(0, 256, 777, dtype=np.uint8))
    for size in sizes:
        assert reassemble_bytes(packetize_bytes(data, size)).data == data


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    stages=st.integers(1, 16),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    bits=st.integers(1, 16),
    ds=st.integers(0, 6),
    size=st.integers(pk.MIN_PACKET_SIZE_BYTES, 400),
    order=st.sampled_from(pk.ORDERS),
    interleave=st.booleans(),
    message_id=st.integers(0, 0xFFFF),
)
def test_round_trip_property(
    seed: int, stages: int, h: int, w: int, bits: int, ds: int, size: int,
    order: str, interleave: bool, message_id: int,
) -> None:  # fmt: skip
    code = random_code(seed, stages, (h, w), bits, ds, model_id=seed & 0xFFFF)
    packets = packetize(code, size, message_id=message_id, order=order, interleave=interleave)
    assert len(packets) == pk.packets_for_stages((h, w), stages, bits_per_index=bits,
                                                 packet_size_bytes=size)  # fmt: skip
    for seq, raw in enumerate(packets):
        p = parse_packet(raw, size)
        assert isinstance(p, IndexPacket)
        assert (p.seq, p.total, p.message_id, p.model_id) == (seq, len(packets), message_id,
                                                              code.model_id)  # fmt: skip
        assert (p.image_size, p.latent_shape, p.order, p.interleave) == (
            code.image_size, (h, w), order, interleave)  # fmt: skip
        flat = code.indices.reshape(stages, -1)
        np.testing.assert_array_equal(p.indices, flat[p.stages, p.positions])
        assert p.stage == p.stages[0]  # the header's stage is the one the packet starts in
        # One stream without gaps: every packet but the last is full.
        assert p.num_indices == p.capacity or seq == len(packets) - 1
        assert p.to_bytes() == raw  # parsing loses nothing
    msg = reassemble(packets)
    np.testing.assert_array_equal(msg.code.indices, code.indices)
    assert msg.code.image_size == code.image_size and msg.code.model_id == code.model_id
    assert msg.complete_stages == stages


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([19, 40, 70, 340, 360]),
    order=st.sampled_from(pk.ORDERS),
    interleave=st.booleans(),
    data=st.data(),
)
def test_any_order_duplicates_and_subsets(
    seed: int, size: int, order: str, interleave: bool, data: st.DataObject
) -> None:
    code = random_code(seed, stages=4, latent=(9, 11))
    packets = packetize(code, size, message_id=7, order=order, interleave=interleave)
    kept = data.draw(st.lists(st.integers(0, len(packets) - 1), max_size=2 * len(packets)))
    r = Reassembler(size)
    for i in kept:  # random order, with repeats
        r.add(packets[i])
    if not kept:
        assert r.message_ids == []
        return
    msg = r.index_message()
    want = np.zeros(code.indices.shape, dtype=bool)
    for i in set(kept):
        p = parse_packet(packets[i])
        want.reshape(want.shape[0], -1)[p.stages, p.positions] = True
    np.testing.assert_array_equal(msg.received, want)
    np.testing.assert_array_equal(msg.indices[want], code.indices[want])
    assert not msg.indices[~want].any()
    assert msg.missing_seqs == sorted(set(range(len(packets))) - set(kept))
    assert r.duplicates == len(kept) - len(set(kept))


@FAST
@given(data=st.binary(max_size=3000), size=st.sampled_from([19, 70, 360]), cut=st.data())
def test_bytes_payload_round_trip_and_missing(data: bytes, size: int, cut: st.DataObject) -> None:
    packets = packetize_bytes(data, size, message_id=5, content_type="image/avif")
    order = cut.draw(st.permutations(range(len(packets))))
    full = reassemble_bytes([packets[i] for i in order])
    assert full.data == data and full.complete and full.content_type == "image/avif"
    if len(packets) == 1:
        with pytest.raises(ValueError, match="no packet has arrived"):
            reassemble_bytes([])
        return
    dropped = cut.draw(st.integers(0, len(packets) - 1))
    partial = reassemble_bytes([p for i, p in enumerate(packets) if i != dropped])
    assert partial.data is None and not partial.complete and partial.missing_seqs == [dropped]


def test_reassembler_keeps_messages_apart_and_builds_a_code() -> None:
    a, b = random_code(3, 2, (4, 4)), random_code(4, 3, (2, 5), bits=7)
    r = Reassembler()
    for p in packetize(a, 40, message_id=1) + packetize(b, 40, message_id=2):
        r.add(p)
    r.add(packetize_bytes(b"file", 40, message_id=3)[0])
    assert r.message_ids == [1, 2, 3]
    np.testing.assert_array_equal(r.index_message(2).code.indices, b.indices)
    assert r.bytes_message(3).data == b"file"
    with pytest.raises(ValueError, match="pass message_id"):
        r.index_message()
    with pytest.raises(ValueError, match="BYTES, not INDICES"):
        r.index_message(3)


def test_parser_accepts_bytearray_and_memoryview() -> None:
    raw = packetize(random_code(5, 1, (2, 2)), 30)[0]
    for view in (bytearray(raw), memoryview(raw)):
        assert parse_packet(view).raw == raw


def same_result(a: object, b: object) -> bool:
    """Whether two parse results agree: same packet fields and indices, or same error."""
    if isinstance(a, PacketError) or isinstance(b, PacketError):
        return type(a) is type(b) and str(a) == str(b)
    # A header byte changed under a valid CRC may turn a packet into a well-formed repair.
    assert isinstance(a, Packet) and isinstance(b, Packet)
    if isinstance(a, IndexPacket):
        assert isinstance(b, IndexPacket)
        if not np.array_equal(a.indices, b.indices) or not np.array_equal(a.positions, b.positions):
            return False
    return type(a) is type(b) and a.raw == b.raw and a.to_bytes() == b.to_bytes()


@FAST
@given(data=st.data(), size=st.none() | st.just(70))
def test_parse_packets_agrees_with_parse_packet(data: st.DataObject, size: int | None) -> None:
    pool = (
        packetize(random_code(30, 3, (7, 9)), 70, message_id=1)
        + packetize(random_code(31, 2, (5, 5), bits=13), 70, message_id=2, interleave=True)
        + packetize(random_code(32, 2, (5, 5), bits=3), 40, message_id=3)
        + packetize_bytes(b"payload" * 20, 70, message_id=4)
    )
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=30))
    batch = []
    for i in picks:
        raw = bytearray(pool[i])
        how = data.draw(st.sampled_from(["keep", "flip", "cut", "field"]))
        if how == "flip":
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        elif how == "field":  # any header byte, with a valid CRC
            raw[data.draw(st.integers(0, 12))] = data.draw(st.integers(0, 255))
            raw = bytearray(reseal(bytes(raw[:-4])))
        batch.append(bytes(raw))
    single = []
    for raw in batch:
        try:
            single.append(parse_packet(raw, size))
        except PacketError as exc:
            single.append(exc)
    together = parse_packets(batch, size, errors="return")
    assert len(together) == len(single)
    assert all(same_result(a, b) for a, b in zip(single, together, strict=True))
    errors = [r for r in single if isinstance(r, PacketError)]
    if errors:
        with pytest.raises(type(errors[0]), match=re.escape(str(errors[0]))):
            parse_packets(batch, size)


def test_add_many_reports_each_packet_and_keeps_going() -> None:
    code = random_code(33, 2, (4, 4))
    packets = packetize(code, 30, message_id=8)
    bad = bytearray(packets[2])
    bad[20] ^= 8
    r = Reassembler()
    results = r.add_many([packets[0][:-1], packets[0], packets[0], bytes(bad), *packets[1:]])
    assert isinstance(results[0], PacketCRCError)  # no size known yet: the CRC fails
    assert results[1:3] == [True, False]
    assert isinstance(results[3], PacketCRCError)
    assert results[4:] == [True, True, True]
    np.testing.assert_array_equal(r.index_message().indices, code.indices)
    late = r.add_many([packets[1][:-3]])
    assert isinstance(late[0], PacketTruncatedError)  # the size is known now


def test_index_message_is_a_snapshot() -> None:
    packets = packetize(random_code(34, 2, (4, 4)), 30)
    r = Reassembler()
    r.add(packets[0])
    before = r.index_message()
    r.add(packets[1])
    # 10 indices a packet: the second ends stage 1 (16 positions) and begins stage 2.
    assert before.received.sum() == 10 and r.index_message().received.sum() == 20


def test_bytes_for_stages_as_a_codec_eval_callable() -> None:
    code = random_code(35)
    count = functools.partial(pk.bytes_for_stages, packet_size_bytes=360)
    assert count(code, 2) == pk.bytes_for_stages((32, 48), 2) == 12 * 360
    assert pk.packets_for_stages(random_code(36, bits=7), 1, packet_size_bytes=70) == -(
        -1536 // pk.index_capacity(70, 7)
    )


# --------------------------------------------------------------------------------------------
# Interleaving
# --------------------------------------------------------------------------------------------


def largest_hole(code: ProgressiveCode, interleave: bool, lost: list[int]) -> int:
    """Size of the largest 4-connected hole that losing packets ``lost`` leaves in stage 0."""
    packets = packetize(code, 360, interleave=interleave)
    msg = reassemble([p for i, p in enumerate(packets) if i not in lost])
    hole = ~msg.received[0]
    seen = np.zeros_like(hole)
    largest = 0
    for start in zip(*np.nonzero(hole), strict=True):  # flood fill; test code, small images
        if seen[start]:
            continue
        stack, size = [start], 0
        seen[start] = True
        while stack:
            y, x = stack.pop()
            size += 1
            for q in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                inside = 0 <= q[0] < hole.shape[0] and 0 <= q[1] < hole.shape[1]
                if inside and hole[q] and not seen[q]:
                    seen[q] = True
                    stack.append(q)
        largest = max(largest, size)
    return largest


@pytest.mark.parametrize("latent", [(32, 48), (24, 24), (17, 31)])
def test_interleaving_scatters_the_holes_of_a_lost_packet(latent: tuple[int, int]) -> None:
    code = random_code(6, 2, latent)
    per_stage = pk.packets_per_stage(latent)
    for seq in range(per_stage - 1):  # every full packet of stage 0
        # Raster order: a lost packet is one band of 274 touching positions.
        assert largest_hole(code, False, [seq]) == 274
        # Interleaved: scattered holes; only the run that crosses the middle of the dither
        # order (where the checkerboard colour changes) joins a few into small clusters.
        assert largest_hole(code, True, [seq]) <= 5


def test_position_order_is_a_permutation() -> None:
    for shape in [(1, 1), (1, 7), (5, 3), (32, 48), (17, 64)]:
        order = pk.position_order(shape, interleave=True)
        assert sorted(order.tolist()) == list(range(shape[0] * shape[1]))


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def check_accepted(p: IndexPacket | BytesPacket) -> None:
    """What any packet the parser accepts must satisfy: no wrong or out-of-range indices."""
    assert p.to_bytes() == p.raw
    if isinstance(p, IndexPacket):
        assert p.indices.dtype == np.uint16 and len(p.indices) == p.num_indices >= 1
        assert int(p.indices.max()) < 1 << p.bits_per_index
        assert 0 <= p.stage < p.num_stages and 0 <= p.seq < p.total
        assert p.positions.max() < p.latent_shape[0] * p.latent_shape[1]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=500), size=st.none() | st.sampled_from([70, 360]))
def test_random_bytes_raise_only_documented_errors(data: bytes, size: int | None) -> None:
    try:
        check_accepted(parse_packet(data, size))  # only if the CRC matched by chance
    except PacketError:
        pass
    try:
        f = parse_fragment(data)
    except PacketError:
        pass
    else:
        assert f.index < f.count and f.payload == data[7:-2]


@settings(max_examples=400, deadline=None)
@given(
    nibble=st.integers(0, 15),
    body=st.binary(min_size=pk.MIN_PACKET_SIZE_BYTES - 5, max_size=120),
)
def test_random_header_with_valid_crc_only_documented_errors(nibble: int, body: bytes) -> None:
    # Version 1 with random kind/flags and random fields, sealed with a valid CRC, so the
    # checks after the CRC see arbitrary values.
    raw = reseal(bytes([0x10 | nibble]) + body)
    try:
        p = parse_packet(raw)
    except PacketError:
        return
    check_accepted(p)


@settings(max_examples=300, deadline=None)
@given(
    offset=st.integers(0, 12),
    value=st.integers(0, 255),
    bytes_kind=st.booleans(),
)
def test_mutated_header_with_valid_crc_only_documented_errors(
    offset: int, value: int, bytes_kind: bool
) -> None:
    if bytes_kind:
        raw = packetize_bytes(b"abc" * 100, 70, message_id=1)[2]
    else:
        raw = packetize(random_code(9, 3, (12, 10)), 70, interleave=True)[4]
    mutated = bytearray(raw[:-4])
    mutated[offset] = value
    try:
        p = parse_packet(reseal(bytes(mutated)))
    except PacketError:
        return
    check_accepted(p)


def bit_flip_trials(packets: list[bytes], trials: int, seed: int) -> tuple[int, int]:
    """Flip 1 to 3 distinct random bits of a packet per trial; count trials and rejections."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(packets), trials)
    nflips = rng.integers(1, 4, trials)
    u = rng.random((trials, 3))
    rejected = 0
    for t in range(trials):
        packet = packets[which[t]]
        nbits = len(packet) * 8
        bits = {int(v * nbits) for v in u[t, : nflips[t]]}
        while len(bits) < nflips[t]:  # rare collision: take the next free bit, deterministic
            bits.add((max(bits) + 1) % nbits)
        flipped = bytearray(packet)
        for bit in bits:
            flipped[bit >> 3] ^= 0x80 >> (bit & 7)
        try:
            parse_packet(flipped)
        except PacketCRCError:
            rejected += 1
    return trials, rejected


def test_bit_flips_always_rejected_100k_trials() -> None:
    packets = (
        packetize(random_code(10), 360, interleave=True)
        + packetize(random_code(11), 340)
        + packetize(random_code(12, 2, (8, 8)), 70)
        + packetize_bytes(bytes(range(256)) * 4, 360)
    )
    start = time.perf_counter()
    trials, rejected = bit_flip_trials(packets, 100_000, seed=2024)
    print(f"\nbit-flip trials: {rejected} of {trials} packets with 1-3 flipped bits rejected "
          f"by CRC-32C ({time.perf_counter() - start:.1f} s)")  # fmt: skip
    assert trials >= 100_000 and rejected == trials


@FAST
@given(data=st.data())
def test_bit_flips_property(data: st.DataObject) -> None:
    packet = packetize(random_code(13, 2, (6, 6)), 70, interleave=True)[1]
    bits = data.draw(st.sets(st.integers(0, len(packet) * 8 - 1), min_size=1, max_size=3))
    flipped = bytearray(packet)
    for bit in bits:
        flipped[bit >> 3] ^= 0x80 >> (bit & 7)
    with pytest.raises(PacketCRCError):
        parse_packet(flipped)


def test_every_1_to_3_bit_error_in_a_360_byte_packet_is_detected() -> None:
    # The CRC is linear: flipping a set of bits changes the check by the XOR of each bit's
    # syndrome. An error pattern escapes iff its syndromes XOR to zero, so checking singles,
    # pairs and pair-vs-single collisions covers all C(2880, 1..3) ~ 4.0e9 patterns.
    n = 360
    zero = bytes(n - 4)
    base = pk.crc32c(zero)
    syn = np.empty(n * 8, dtype=np.uint32)
    for bit in range((n - 4) * 8):
        body = bytearray(zero)
        body[bit >> 3] ^= 0x80 >> (bit & 7)
        syn[bit] = pk.crc32c(body) ^ base
    syn[(n - 4) * 8 :] = 1 << np.arange(31, -1, -1, dtype=np.uint32)  # bits of the trailer
    assert syn.all()  # every single flip is caught
    assert len(np.unique(syn)) == syn.size  # every pair is caught
    i, j = np.triu_indices(syn.size, 1)
    pairs = syn[i] ^ syn[j]
    assert not np.isin(pairs, syn).any()  # every triple is caught


def test_wrong_length_and_truncation_errors_name_the_sizes() -> None:
    raw = packetize(random_code(14, 1, (4, 4)), 70)[0]
    with pytest.raises(PacketLengthError, match=r"71 bytes, expected 70 \(1 bytes extra\)"):
        parse_packet(raw + b"\x00", 70)
    with pytest.raises(PacketTruncatedError, match=r"50 bytes, expected 70 \(20 bytes missing\)"):
        parse_packet(raw[:50], 70)
    with pytest.raises(PacketTruncatedError, match="5 bytes, shorter than any valid packet"):
        parse_packet(raw[:5])
    with pytest.raises(PacketLengthError, match="longer than any valid packet"):
        parse_packet(bytes(70000))
    assert issubclass(PacketTruncatedError, PacketLengthError)
    # Without an expected size, a cut packet fails its CRC (the trailer moved).
    with pytest.raises(PacketCRCError):
        parse_packet(raw[:50])
    r = Reassembler()
    r.add(raw)
    with pytest.raises(PacketTruncatedError, match="expected 70"):
        r.add(raw[:69])


def test_crc_error_names_the_trailer() -> None:
    raw = bytearray(packetize(random_code(15, 1, (4, 4)), 360)[0])
    raw[100] ^= 4
    with pytest.raises(PacketCRCError, match=r"CRC-32C mismatch: trailer at byte offset 356"):
        parse_packet(raw)


def test_version_error() -> None:
    raw = packetize(random_code(16, 1, (4, 4)), 70)[0]
    bad = reseal(bytes([0x30 | (raw[0] & 15)]) + raw[1:-4])
    with pytest.raises(PacketVersionError, match=r"format version 3 .* reads version 2$"):
        parse_packet(bad)
    # Version 1 began every stage in a new packet: its indices would land in the wrong places.
    old = reseal(bytes([0x10 | (raw[0] & 15)]) + raw[1:-4])
    with pytest.raises(PacketVersionError, match=r"version 1 .* encode the picture again"):
        parse_packet(old)
    frag = fragment(raw, 40)[0]
    with pytest.raises(PacketError):
        parse_packet(frag)  # a fragment is not a packet


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "field", "message"),
    [
        (3, ">H", 999, "seq", r"seq = 999 at byte offset 3 .*allowed: 0\.\.3\)"),
        (8, ">H", 0, "image_height_px", r"image_height_px = 0 at byte offset 8 .*1\.\.65535"),
        (10, ">H", 0, "image_width_px", r"image_width_px = 0 at byte offset 10"),
        (12, ">B", 0x34, "stage", r"stage = 3 at byte offset 12 .*seq 1 starts in stage 0"),
        (12, ">B", 0x00, "downsample_log2", r"downsample_log2 = 0 .*at most 262144"),
    ],
)
def test_field_errors_name_field_value_range_and_offset(
    offset: int, fmt: str, value: int, field: str, message: str
) -> None:
    code = random_code(17, 2, (60, 60))
    code = ProgressiveCode(code.indices, (960, 960), 10, 3)  # 3600 positions at 1/16
    raw = packetize(code, 3000)[1]  # 2386 indices per packet: 2 packets per stage
    with pytest.raises(PacketFieldError, match=message) as info:
        parse_packet(with_header(raw, offset, fmt, value))
    assert info.value.field == field and info.value.offset == offset


def test_field_error_for_a_message_over_65536_packets() -> None:
    raw = packetize(random_code(17, 16, (4, 4)), 19)[1]  # one index per packet
    # 60000 px high at 1/16 is a 3750 x 4 latent: 16 stages x 15000 packets.
    with pytest.raises(PacketFieldError, match=r"image_height_px = 60000 .*at most 65536 packets"):
        parse_packet(with_header(raw, 8, ">H", 60000))


def test_field_errors_of_padding_and_bytes_kind() -> None:
    raw = packetize(random_code(18, 1, (3, 3)), 70)[0]  # 9 indices, the rest is padding
    body = bytearray(raw[:-4])
    body[40] = 1
    with pytest.raises(PacketFieldError, match=r"padding = 0x01 at byte offset 40"):
        parse_packet(reseal(bytes(body)))
    body = bytearray(raw[:-4])
    body[13 + 11] |= 0x01  # 90 index bits end 2 bits into byte 24: its low 6 bits are padding
    with pytest.raises(PacketFieldError, match=r"padding .* at byte offset 24"):
        parse_packet(reseal(bytes(body)))

    raw = packetize_bytes(b"x" * 100, 70)[0]
    with pytest.raises(PacketFieldError, match=r"content_type = 99 at byte offset 9"):
        parse_packet(with_header(raw, 9, ">B", 99))
    with pytest.raises(PacketFieldError, match=r"reserved = 2 at byte offset 0"):
        parse_packet(with_header(raw, 0, ">B", raw[0] | 2))
    with pytest.raises(PacketFieldError, match=r"seq = 5 at byte offset 3 .*0\.\.1"):
        parse_packet(with_header(raw, 3, ">H", 5))
    with pytest.raises(PacketFieldError, match=r"file_size_bytes = 4294967295 at byte offset 5"):
        parse_packet(with_header(raw, 5, ">I", 0xFFFFFFFF))


def test_consistency_errors() -> None:
    code = random_code(19, 2, (4, 4))
    packets = packetize(code, 30, message_id=4)
    r = Reassembler()
    r.add(packets[0])
    other_model = with_header(packets[1], 5, ">H", 99)
    with pytest.raises(PacketConsistencyError, match=r"message 4, packet seq 1: model_id = 99 "
                       r"disagrees .* \(model_id = 3\)"):  # fmt: skip
        r.add(other_model)
    other_order = packetize(code, 30, message_id=4, interleave=True)[1]
    with pytest.raises(PacketConsistencyError, match="interleave = True"):
        r.add(other_order)
    other = ProgressiveCode(random_code(20, 2, (4, 4)).indices, code.image_size, 10, 3)
    conflicting = packetize(other, 30, message_id=4)[0]
    with pytest.raises(PacketConsistencyError, match=r"seq 0: payload"):
        r.add(conflicting)
    with pytest.raises(PacketConsistencyError, match="payload_kind = BYTES"):
        r.add(packetize_bytes(b"x", 30, message_id=4)[0])
    # Rejected packets were not kept: the message still reassembles correctly.
    for p in packets:
        r.add(p)
    np.testing.assert_array_equal(r.index_message().indices, code.indices)


def test_packetize_rejects_codes_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match=r"1\.\.16 stages"):
        packetize(random_code(21, 17, (2, 2)))
    odd = ProgressiveCode(np.zeros((2, 3, 3), np.uint16), (32, 48), 10, 1)
    with pytest.raises(ValueError, match=r"latent shape \(3, 3\) is not ceil"):
        packetize(odd)
    with pytest.raises(ValueError, match="message_id = 70000"):
        packetize(random_code(22, 1, (2, 2)), message_id=70000)
    with pytest.raises(ValueError, match="order"):
        packetize(random_code(22, 1, (2, 2)), order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="content_type"):
        packetize_bytes(b"", content_type="text/plain")
    with pytest.raises(ValueError, match="65536"):
        packetize_bytes(bytes(400_000), 19)


# --------------------------------------------------------------------------------------------
# Fragmentation
# --------------------------------------------------------------------------------------------


def test_fragmentation_round_trip_any_order_with_duplicates() -> None:
    code = random_code(23)
    packets = packetize(code, 360, message_id=11)
    frags = [f for p in packets for f in fragment(p, 70)]
    assert pk.fragment_count(360, 70) == 6 and len(frags) == 6 * len(packets)
    assert max(map(len, frags)) == 70
    rng = np.random.default_rng(23)
    order = rng.permutation(np.concatenate([np.arange(len(frags)), rng.integers(0, 180, 40)]))
    d = Defragmenter()
    out = [q for i in order if (q := d.add(frags[i])) is not None]
    assert len(out) == len(packets) and not d.missing()
    np.testing.assert_array_equal(reassemble(out).indices, code.indices)
    assert d.duplicates == 40
    air = pk.bytes_for_stages(code.latent_shape, 5, mtu_bytes=70)
    assert air == sum(map(len, frags))


def test_missing_fragment_loses_only_its_packet() -> None:
    packets = packetize(random_code(24), 360, message_id=12)
    d = Defragmenter()
    out = []
    for seq, p in enumerate(packets):
        for i, f in enumerate(fragment(p, 70)):
            if (seq, i) != (3, 2):
                q = d.add(f)
                if q is not None:
                    out.append(q)
    assert d.missing() == {(12, 3): [2]}
    msg = reassemble(out)
    assert msg.missing_seqs == [3]


def test_fragment_errors() -> None:
    frags = fragment(packetize_bytes(b"y" * 200, 100)[0], 30)
    with pytest.raises(PacketTruncatedError, match="fragment is 4 bytes"):
        parse_fragment(frags[0][:4])
    bad = bytearray(frags[1])
    bad[9] ^= 1
    with pytest.raises(PacketCRCError, match="fragment CRC-16 mismatch: trailer at byte offset 28"):
        parse_fragment(bad)

    def reseal16(body: bytes) -> bytes:
        return body + pk.crc16_ccitt_false(body).to_bytes(2, "big")

    with pytest.raises(PacketVersionError, match="byte 0 is 0x11"):
        parse_fragment(reseal16(b"\x11" + frags[0][1:-2]))
    with pytest.raises(PacketFieldError, match="fragment_index = 9 at byte offset 5"):
        parse_fragment(reseal16(frags[0][:5] + b"\x09" + frags[0][6:-2]))
    with pytest.raises(PacketFieldError, match="fragment_count = 0 at byte offset 6"):
        parse_fragment(reseal16(frags[0][:5] + b"\x00\x00" + frags[0][7:-2]))
    d = Defragmenter()
    d.add(frags[0])
    with pytest.raises(PacketConsistencyError, match="fragment_count = 9"):
        d.add(reseal16(frags[1][:5] + b"\x01\x09" + frags[1][7:-2]))
    with pytest.raises(PacketConsistencyError, match="fragment 0 payload"):
        d.add(reseal16(frags[0][:-3] + b"z"))
    with pytest.raises(ValueError, match="mtu_bytes = 9"):
        pk.fragment_count(360, 9)


def test_defragmenter_bounds_pending_packets() -> None:
    packets = packetize_bytes(bytes(3000), 100, message_id=1)
    d = Defragmenter(max_pending=4)
    for p in packets:
        d.add(fragment(p, 40)[0])  # first fragments only: every packet stays incomplete
    assert len(d.missing()) == 4 and d.evicted == len(packets) - 4


# --------------------------------------------------------------------------------------------
# Bit packing
# --------------------------------------------------------------------------------------------


@FAST
@given(bits=st.integers(1, 16), data=st.data())
def test_pack_unpack_match_a_bit_string(bits: int, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=300))
    text = "".join(format(v, f"0{bits}b") for v in values)
    text += "0" * (-len(text) % 8)
    want = int(text, 2).to_bytes(len(text) // 8, "big") if text else b""
    packed = pk.pack_indices(np.array(values, dtype=np.uint16), bits)
    assert packed == want
    assert pk.unpack_indices(packed, len(values), bits).tolist() == values


def test_combinations_of_order_and_interleave_keep_stage_prefix_clean() -> None:
    code = random_code(25, 3, (10, 10))
    for order, interleave in itertools.product(pk.ORDERS, (False, True)):
        packets = packetize(code, 70, order=order, interleave=interleave)
        for raw in packets:
            p = parse_packet(raw)
            assert p.num_indices <= pk.index_capacity(70)  # one stage per packet, always
        if order == "stage-major":
            k = pk.packets_for_stages((10, 10), 2, packet_size_bytes=70)
            assert reassemble(packets[:k]).complete_stages == 2


def test_docstring_examples_run() -> None:
    import doctest
    import importlib
    import pkgutil

    # The package and every one of its modules (one concern each) keep runnable examples.
    modules = [pk] + [
        importlib.import_module(f"{pk.__name__}.{info.name}")
        for info in pkgutil.iter_modules(pk.__path__)
    ]
    failed = attempted = 0
    for module in modules:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0, f"{module.__name__} has no docstring example"
        failed += result.failed
        attempted += result.attempted
    assert failed == 0 and attempted >= 40


# --------------------------------------------------------------------------------------------
# The package's layout: config, transmit plan, packet files, old import paths, layering
# --------------------------------------------------------------------------------------------


def test_packets_config_validates_against_the_format() -> None:
    from satlink.config import ScenarioError

    cfg = pk.PacketsConfig()
    assert cfg.size_bytes == pk.DEFAULT_PACKET_SIZE_BYTES == 360
    assert pk.PacketsConfig(size_bytes=360, fragment_bytes=70).wire_bytes == 70
    with pytest.raises(ScenarioError, match=r"packets\.size_bytes = 18 is out of range"):
        pk.PacketsConfig(size_bytes=pk.MIN_PACKET_SIZE_BYTES - 1)
    with pytest.raises(ScenarioError, match=r"packets\.fragment_bytes = 10: .*at most 255"):
        pk.PacketsConfig(size_bytes=2560, fragment_bytes=10)
    with pytest.raises(ScenarioError, match=r"packets\.order = 'random': allowed values"):
        pk.PacketsConfig(order="random")


def test_plan_transmission_fragments_only_under_a_message_cap() -> None:
    packets = packetize(random_code(1, stages=2, latent=(8, 8)), 60)  # 2 packets per stage
    n = len(packets)
    flags = [i % 2 == 0 for i in range(n)]
    plan = pk.plan_transmission(packets, pk.PacketsConfig(size_bytes=60), flags)
    assert plan.messages == packets and plan.packet_of_message == list(range(n))
    assert plan.reliable == flags and plan.packet_count == n == 4

    class Holder:  # a scenario, as far as the plan is concerned: it has a [packets] table
        packets = pk.PacketsConfig(size_bytes=60, fragment_bytes=30)

    plan = pk.plan_transmission(packets, Holder(), flags)
    per_packet = pk.fragment_count(60, 30)
    assert len(plan.messages) == n * per_packet and plan.packet_count == n
    assert plan.packet_of_message == [i for i in range(n) for _ in range(per_packet)]
    assert plan.reliable == [flags[i] for i in range(n) for _ in range(per_packet)]
    d = Defragmenter()
    assert [p for p in map(d.add, plan.messages) if p is not None] == packets


def test_encode_to_files_writes_one_numbered_file_per_packet(tmp_path) -> None:
    code = random_code(2, stages=2, latent=(4, 4))
    paths = pk.encode_to_files(code, tmp_path / "p", packet_size_bytes=30, message_id=5)
    packets = packetize(code, 30, message_id=5)
    assert [p.name for p in paths] == [f"packet_{i:05d}.bin" for i in range(len(packets))]
    assert [p.read_bytes() for p in sorted((tmp_path / "p").iterdir())] == packets


def test_moved_names_stay_importable_from_their_old_modules() -> None:
    import satlink.receiver
    import satlink.replay
    import satlink.scenario

    assert satlink.scenario.PacketsConfig is pk.PacketsConfig
    assert satlink.replay.TransmitPlan is pk.TransmitPlan
    assert satlink.replay.plan_transmission is pk.plan_transmission
    assert satlink.receiver.encode_to_files is pk.encode_to_files
    assert satlink.receiver.PACKET_FILE_PATTERN == pk.PACKET_FILE_PATTERN
    assert set(pk.__all__) <= set(dir(pk))


def test_packets_package_imports_no_higher_layer() -> None:
    import ast
    import pathlib

    allowed = ("satlink.packets", "satlink.config", "codec.code")
    for path in pathlib.Path(pk.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith(("satlink", "codec")):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def test_no_satlink_module_imports_a_private_name_of_another() -> None:
    import ast
    import pathlib

    root = pathlib.Path(pk.__file__).parents[1]
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("satlink", "codec")
            ):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(root)} imports {private} from {node.module}"
