"""Erasure coding across packets and fragments (issue 14): recovery from any large-enough
subset, repairs checked like any packet, unequal protection, placement, old readers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.code import ProgressiveCode
from satlink.config import ScenarioError
from satlink.packets import (
    MAX_BLOCK_SOURCES,
    Defragmenter,
    FecConfig,
    PacketConsistencyError,
    PacketCRCError,
    PacketFieldError,
    PacketsConfig,
    Reassembler,
    RepairPacket,
    block_of,
    fragment,
    packetize,
    packetize_bytes,
    parse_fragment,
    parse_packet,
    payload_efficiency,
    plan_transmission,
    protect,
    reassemble,
    reassemble_bytes,
    repair_packets,
)


def code_of(seed: int, stages: int, latent: tuple[int, int], bits: int = 10) -> ProgressiveCode:
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, 1 << bits, (stages, *latent), dtype=np.uint16)
    return ProgressiveCode(indices, (latent[0] * 16, latent[1] * 16), bits, 7)


def rs(*ratios: float, placement: str = "after-block") -> FecConfig:
    return FecConfig("reed-solomon", tuple(ratios), placement)


def blocks_of(sent: list[bytes]) -> dict[tuple[int, int], list[int]]:
    """Send positions of every packet (source or repair) per (stage, block)."""
    out: dict[tuple[int, int], list[int]] = {}
    for i, raw in enumerate(sent):
        p = parse_packet(raw)
        key = (p.stage, p.block) if isinstance(p, RepairPacket) else block_of(p)
        out.setdefault(key, []).append(i)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    stages=st.integers(1, 5),
    latent=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    size=st.sampled_from([24, 40, 70, 360]),
    ratios=st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0]), min_size=5, max_size=5),
    order=st.sampled_from(["stage-major", "position-major"]),
    interleave=st.booleans(),
    data=st.data(),
)
def test_any_large_enough_subset_recovers_the_source(
    seed, stages, latent, size, ratios, order, interleave, data
) -> None:
    code = code_of(seed, stages, latent)
    sources = packetize(code, size, message_id=9, order=order, interleave=interleave)
    sent = protect(sources, rs(*ratios)).packets
    kept: set[int] = set()
    recoverable = set()
    for key, members in blocks_of(sent).items():
        k = sum(not isinstance(parse_packet(sent[i]), RepairPacket) for i in members)
        take = data.draw(st.integers(0, len(members)), label=f"keep of {key}")
        chosen = data.draw(st.permutations(members), label=f"order of {key}")[:take]
        kept.update(chosen)
        if take >= k:
            recoverable.add(key)
    arrived = [sent[i] for i in data.draw(st.permutations(sorted(kept)))]
    r = Reassembler()
    for raw in arrived:
        r.add(raw)
    if not r.message_ids:  # only repairs of too-small blocks arrived: nothing to show
        return
    msg = r.index_message()
    got = msg.received
    # Every index that arrived or was rebuilt is exact; a recoverable block is whole.
    assert (msg.indices[got] == code.indices[got]).all()
    for raw in sources:
        p = parse_packet(raw)
        if block_of(p) in recoverable:
            assert got.reshape(got.shape[0], -1)[p.stages, p.positions].all()


@settings(max_examples=40, deadline=None)
@given(
    size_bytes=st.integers(0, 6000),
    ratio=st.sampled_from([0.1, 0.5, 1.0]),
    packet=st.sampled_from([20, 70, 360]),
    data=st.data(),
)
def test_file_messages_recover_from_any_k_packets(size_bytes, ratio, packet, data) -> None:
    blob = np.random.default_rng(size_bytes).integers(0, 256, size_bytes, np.uint8).tobytes()
    sources = packetize_bytes(blob, packet, message_id=3, content_type="image/avif")
    from satlink.packets.blocks import SHARES, block_bounds, repair_count

    bounds = block_bounds(len(sources))
    largest = max(b - a for a, b in itertools.pairwise(bounds))
    if largest + repair_count(ratio, largest) > SHARES - 1:
        # Past the 8-bit share number (e.g. 128 sources at ratio 1.0): refused by name.
        with pytest.raises(ValueError, match="a block holds at most"):
            protect(sources, rs(ratio))
        return
    sent = protect(sources, rs(ratio)).packets
    groups = blocks_of(sent)
    keep = []
    for members in groups.values():
        k = sum(not isinstance(parse_packet(sent[i]), RepairPacket) for i in members)
        keep += data.draw(st.permutations(members))[:k]  # exactly k of each block
    msg = reassemble_bytes([sent[i] for i in keep]) if keep else None
    if msg is not None and msg.total_packets:
        assert msg.data == blob


def test_a_block_past_the_share_number_is_refused_by_name() -> None:
    # 763 bytes in 20-byte packets: one block of 128 sources, and ratio 1.0 would need 128
    # repairs where the 8-bit share number leaves room for 127 (found by hypothesis).
    sources = packetize_bytes(bytes(763), 20, message_id=3, content_type="image/avif")
    assert len(sources) == 128
    with pytest.raises(ValueError, match=r"128 sources with ratio 1\.0 need 128 repairs"):
        protect(sources, rs(1.0))
    assert protect(sources, rs(0.5)).repair_count == 64


def test_fec_off_changes_nothing_and_source_packets_are_unchanged() -> None:
    code = code_of(1, 5, (32, 48))
    sources = packetize(code, 360, message_id=4)
    off = protect(sources, FecConfig())
    assert off.packets == sources and not any(off.is_repair)
    plan = plan_transmission(sources, PacketsConfig(), [True] * len(sources))
    assert plan.messages == sources and plan.repair_count == 0
    on = protect(sources, rs(1.0, 0.1, 0.1, 0.1, 0.1))
    assert [p for p, rep in zip(on.packets, on.is_repair, strict=True) if not rep] == sources
    assert payload_efficiency(360, 10) >= 0.95  # source packets: today's layout


def test_unequal_protection_counts_and_placement() -> None:
    code = code_of(2, 5, (32, 48))  # 29 packets at 360 bytes; 6, 6, 5, 6, 6 start stages 1-5
    sources = packetize(code, 360, message_id=4)
    after = protect(sources, rs(1.0, 0.1, 0.1, 0.1, 0.1))
    stages = [
        parse_packet(p).stage for p, r in zip(after.packets, after.is_repair, strict=True) if r
    ]
    assert stages == [0] * 6 + [1, 2, 3, 4]  # ceil(ratio * 6) per stage
    # after-block: stage 1's repairs follow its 6 sources, before stage 2
    assert after.is_repair[:13] == [False] * 6 + [True] * 6 + [False]
    end = protect(sources, rs(1.0, 0.1, 0.1, 0.1, 0.1, placement="end"))
    assert end.is_repair == [False] * 29 + [True] * 10
    spread = protect(sources, rs(1.0, 0.0, 0.0, 0.0, 0.0, placement="spread"))
    where = [i for i, r in enumerate(spread.is_repair) if r]
    assert where[0] > 6 and where[-1] < len(spread.packets) - 1 and len(where) == 6
    assert np.diff(where).min() >= 3  # evenly spread, not bunched


def test_burst_that_takes_a_whole_block_is_repaired_when_repairs_are_spread() -> None:
    code = code_of(3, 5, (32, 48))
    sources = packetize(code, 360, message_id=4)
    sent = protect(sources, rs(1.0, 0.0, 0.0, 0.0, 0.0, placement="spread")).packets
    burst = set(range(0, 8))  # stage 1's six sources and the next two packets
    msg = reassemble([p for i, p in enumerate(sent) if i not in burst])
    assert msg.received[0].all()


def test_a_corrupted_repair_packet_is_rejected_by_its_crc() -> None:
    sources = packetize(code_of(4, 2, (8, 8)), 70, message_id=2)
    rep = repair_packets(sources, [1.0, 1.0])[0][2]
    bad = bytearray(rep)
    bad[30] ^= 0x10
    with pytest.raises(PacketCRCError):
        parse_packet(bytes(bad))
    r = Reassembler()
    results = r.add_many([bytes(bad), *sources[1:]])
    assert isinstance(results[0], PacketCRCError)
    assert r.recovered == [] and 0 in r.index_message().missing_seqs


def test_repair_packets_are_checked_and_placed_on_their_own() -> None:
    code = code_of(5, 3, (8, 8))
    sources = packetize(code, 70, message_id=11, interleave=True)
    _, _, raw = repair_packets(sources, [0.5, 0.5, 0.5])[0]
    p = parse_packet(raw)
    assert isinstance(p, RepairPacket) and p.to_bytes() == raw
    assert (p.stage, p.block, p.share, p.block_sources) == (0, 0, 2, 2)
    assert p.source_seqs == (0, 1) and (raw[0] >> 2) & 3 == 2  # kind 2
    assert raw[5:12] == sources[0][5:12]  # the protected message's geometry
    # share below k: a source number, not a repair
    low = raw[:3] + (1).to_bytes(2, "big") + raw[5:-4]
    with pytest.raises(PacketFieldError, match="repair share = 1 at byte offset 4"):
        parse_packet(low + code_crc(low))
    far = raw[:3] + ((3 << 8) | 2).to_bytes(2, "big") + raw[5:-4]
    with pytest.raises(PacketFieldError, match="repair block = 3"):
        parse_packet(far + code_crc(far))


def code_crc(body: bytes) -> bytes:
    from satlink.packets import crc32c

    return crc32c(body).to_bytes(4, "big")


def test_a_repair_of_another_geometry_is_inconsistent() -> None:
    a = packetize(code_of(6, 2, (8, 8)), 70, message_id=5)
    b_code = ProgressiveCode(code_of(6, 2, (8, 8)).indices, (120, 128), 10, 7)
    b_rep = repair_packets(packetize(b_code, 70, message_id=5), [1.0, 1.0])[0][2]
    r = Reassembler()
    r.add(a[0])
    with pytest.raises(PacketConsistencyError, match="repair header"):
        r.add(b_rep)


def test_repair_arriving_first_and_duplicates() -> None:
    code = code_of(7, 1, (4, 4))  # one packet per stage at 70 bytes
    sources = packetize(code, 70, message_id=8)
    rep = repair_packets(sources, [1.0])[0][2]
    r = Reassembler()
    assert r.add(rep) is True and r.last_recovered and r.recovered == [(8, 0)]
    assert r.add(rep) is False and r.add(sources[0]) is False  # both already known
    assert r.index_message().complete


def test_blocks_split_large_stages() -> None:
    # 19-byte packets with 16-bit indices carry one index: a 16 x 20 latent is 320 packets
    code = code_of(8, 1, (16, 20), bits=16)
    sources = packetize(code, 19, message_id=1)
    keys = {block_of(parse_packet(p)) for p in sources}
    assert keys == {(0, 0), (0, 1), (0, 2)} and len(sources) // 3 <= MAX_BLOCK_SOURCES
    sent = protect(sources, rs(0.1)).packets
    lost = {0, 150, 300}
    assert reassemble([p for i, p in enumerate(sent) if i not in lost]).complete


def test_too_many_repairs_for_a_block_is_an_error() -> None:
    sources = packetize(code_of(9, 1, (16, 16), bits=16), 19)  # 256 packets: 2 blocks of 128
    with pytest.raises(ValueError, match="8-bit share number"):
        protect(sources, rs(1.0))


# -- fragments -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(40, 400),
    mtu=st.integers(12, 80),
    ratio=st.sampled_from([0.2, 0.5, 1.0]),
    known_size=st.booleans(),
    data=st.data(),
)
def test_any_k_fragments_rejoin_the_packet(size, mtu, ratio, known_size, data) -> None:
    packet = packetize_bytes(bytes(range(256)) * 2, size, message_id=3)[0]
    count = -(-size // (mtu - 9))
    if count > 255:
        return  # fragment() refuses any ratio: the count itself is an 8-bit field
    if count + math.ceil(ratio * count - 1e-9) > 255:
        with pytest.raises(ValueError, match="repair fragments exceed 255"):
            fragment(packet, mtu, repair_ratio=ratio)
        return
    frags = fragment(packet, mtu, repair_ratio=ratio)
    k = parse_fragment(frags[0]).count
    assert len(frags) == k + math.ceil(ratio * k - 1e-9)
    keep = data.draw(st.permutations(range(len(frags))))[:k]
    d = Defragmenter(packet_size_bytes=size if known_size else None)
    out = [d.add(frags[i]) for i in keep]
    assert out[-1] == packet and all(o is None for o in out[:-1])


def test_fragment_markers_and_old_format() -> None:
    packet = packetize_bytes(bytes(500), 360, message_id=3)[0]
    plain = fragment(packet, 70)
    assert fragment(packet, 70, repair_ratio=0.5)[: len(plain)] == plain  # sources unchanged
    rep = fragment(packet, 70, repair_ratio=0.5)[len(plain) :]
    assert {f[0] for f in plain} == {0xF1} and {f[0] for f in rep} == {0xF2}
    assert all(parse_fragment(f).is_repair for f in rep)
    # fragments of a repair packet carry marker bit 2: their key never meets a source's
    sources = packetize_bytes(bytes(900), 360, message_id=3)
    rp = repair_packets(sources, 1.0)[0][2]
    assert {f[0] for f in fragment(rp, 70, repair_ratio=0.2)} == {0xF5, 0xF6}
    d = Defragmenter()
    assert [d.add(f) for f in fragment(rp, 70)][-1] == rp
    assert [d.add(f) for f in fragment(sources[1], 70)][-1] == sources[1]


def test_plan_with_fragment_repair_and_one_lost_fragment() -> None:
    sources = packetize(code_of(10, 2, (8, 8)), 360, message_id=6)
    cfg = PacketsConfig(size_bytes=360, fragment_bytes=70)
    fec = FecConfig(fragment_repair_ratio=0.2)
    plan = plan_transmission(sources, cfg, [True] * len(sources), fec=fec)
    assert len(plan.messages) == len(sources) * (6 + 2)
    d = Defragmenter(packet_size_bytes=360)
    got = [d.add(m) for i, m in enumerate(plan.messages) if i % 8 != 3]  # one lost per packet
    assert [g for g in got if g is not None] == sources


# -- the scenario's [fec] table --------------------------------------------------------------


def test_fec_config_checks_name_the_key() -> None:
    with pytest.raises(ScenarioError, match=r"fec\.scheme"):
        FecConfig("raptor")
    with pytest.raises(ScenarioError, match="repair_ratio_per_stage is empty"):
        FecConfig("reed-solomon")
    with pytest.raises(ScenarioError, match=r"repair_ratio_per_stage\[1\]"):
        FecConfig("reed-solomon", (0.5, -1.0))
    with pytest.raises(ScenarioError, match=r"fec\.placement"):
        FecConfig("reed-solomon", (0.5,), "middle")
    assert FecConfig("reed-solomon", (0.3, 0.1)).file_ratio() == 0.3


def test_too_few_ratios_for_the_stages() -> None:
    with pytest.raises(ValueError, match="has 2 entries; the message has 5 stages"):
        protect(packetize(code_of(11, 5, (4, 4)), 70), rs(0.5, 0.5))


# -- the receiver: previews from repairs, message identity -------------------------------------


def test_receiver_previews_when_a_repair_completes_a_block(tiny, small_image) -> None:
    from satlink.receiver import Receiver

    # 8x8 latent, 2 stages, 4-bit indices: 66 a 50-byte packet, so packet 0 holds stage 1 and the
    # first 2 indices of stage 2, packet 1 the rest.
    code = tiny.encode(small_image)
    sent = protect(packetize(code, 50, message_id=3), rs(1.0, 0.0, 0.0, 0.0, 0.0)).packets
    assert (sent[1][0] >> 2) & 3 == 2  # stage 1's repair follows its source
    rx = Receiver(tiny, small_image, packet_size_bytes=50)
    got = rx.receive(sent[1], 1.0)  # the source of stage 1 was lost; its repair arrives
    assert got.verdict == "accepted" and got.reason == "rebuilt seq 0" and got.packet_seq == 0
    assert got.preview is not None and got.preview.stages_complete == 1
    assert got.preview.indices_received == 66
    assert rx.receive(sent[0], 2.0).verdict == "duplicate"  # the late source adds nothing
    nothing = protect(packetize(code, 50, message_id=3), rs(2.0, 0, 0, 0, 0)).packets[1]
    rx2 = Receiver(tiny, small_image, packet_size_bytes=50)
    rx2.receive(sent[2], 1.0)
    assert rx2.receive(nothing, 2.0).preview is not None  # k = 1: any one share rebuilds


def test_receiver_never_blends_two_pictures(tiny, small_image) -> None:
    from satlink.receiver import Receiver

    a = packetize(tiny.encode(small_image), 50, message_id=1)  # 2 packets each
    b = packetize(tiny.encode(small_image[::-1].copy()), 50, message_id=2)
    rx = Receiver(tiny, small_image, packet_size_bytes=50)
    assert rx.receive(a[0], 1.0).verdict == "accepted"
    other = rx.receive(b[1], 2.0)
    assert other.verdict == "rejected" and "another picture" in other.reason
    assert rx.reassembler.message_ids == [1]


def test_encode_derives_distinct_message_ids_and_decode_refuses_a_mix(
    tmp_path, tiny, small_image, capsys
) -> None:
    from satlink.cli import main
    from satlink.packets import content_message_id, encode_to_files
    from satlink.receiver import decode_files

    one, two = tiny.encode(small_image), tiny.encode(small_image[:, ::-1].copy())
    assert content_message_id(one) != content_message_id(two)
    pa = encode_to_files(one, tmp_path / "a", packet_size_bytes=50)
    pb = encode_to_files(two, tmp_path / "b", packet_size_bytes=50)
    assert parse_packet(pa[0].read_bytes()).message_id == content_message_id(one)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    assert len(pa) == len(pb) == 2  # the tiny codec: 128 indices, 66 a 50-byte packet
    for p in pa[:1] + pb[1:]:  # packet 0 of one picture, packet 1 of the other: same size
        (mixed / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out.png"
    with pytest.raises(ValueError, match=r"mixes 2 pictures \(message \d+: packet_00000.bin"):
        decode_files(mixed, out, tiny)
    assert not out.exists()
    assert main(["decode", str(mixed), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing written" in err and not out.exists()
    reports = decode_files(mixed, out, tiny, split=True)
    assert [r.out_path.exists() for r in reports] == [True, True]
    assert sorted(len(r.accepted) for r in reports) == [1, 1]


def test_source_packets_are_byte_identical_to_those_before_fec() -> None:
    # Digest of packets and fragments as format version 2 writes them (one index stream over
    # the stages; version 1's digest, from before issue 14 at commit 53ae5b4, was 601246cb...):
    # every layout, order, interleave and size below, FEC off.
    import hashlib

    h = hashlib.sha256()
    rng = np.random.default_rng(0)
    for shape, img in [
        ((5, 32, 48), (512, 768)),
        ((5, 16, 16), (256, 256)),
        ((3, 7, 9), (100, 130)),
    ]:
        code = ProgressiveCode(rng.integers(0, 1024, shape, dtype=np.uint16), img, 10, 7)
        for size in (360, 340, 70):
            for order in ("stage-major", "position-major"):
                for il in (False, True):
                    for p in packetize(code, size, message_id=42, order=order, interleave=il):
                        h.update(p)
            for f in fragment(packetize(code, 360, message_id=3)[0], 70):
                h.update(f)
    for p in packetize_bytes(bytes(range(256)) * 9, 360, message_id=5, content_type="image/avif"):
        h.update(p)
    assert h.hexdigest() == "0c59079a245a04880c2bcdbdb06db2560c007c6dde47fa2cf76eecf09c1bec13"
