"""The receiver: verdicts (accept, duplicate, corrupt, reject), a preview after every accepted
packet, holes, fragments, classical files and the decode cache."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import codec
from codec.classical import fit_classical
from codec.metrics import ms_ssim
from satlink.packets import byte_capacity, fragment, packetize, packetize_bytes
from satlink.receiver import BoundedLRU, DecodeCache, Receiver

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> codec.Codec:
    return codec.default_codec()


@pytest.fixture(scope="module")
def code(model, small_image):
    return model.encode(small_image)


def test_receiver_counts_corrupt_and_duplicate(small_image, model, code):
    packets = packetize(code, 360, message_id=4)
    rx = Receiver(model, small_image)
    bad = bytearray(packets[0])
    bad[40] ^= 0x10
    arrivals = [
        rx.receive(bytes(bad), 1.0),
        rx.receive(packets[0], 2.0),
        rx.receive(packets[0], 3.0),
        rx.receive(b"short", 4.0),
    ]
    assert [a.verdict for a in arrivals] == ["corrupted", "accepted", "duplicate", "rejected"]
    assert "CRC" in arrivals[0].reason or "crc" in arrivals[0].reason.lower()
    assert arrivals[2].packet_seq == 0 and arrivals[2].preview is None
    assert len(rx.previews) == 1 and arrivals[1].preview is rx.previews[0]


def test_a_preview_after_every_accepted_packet_and_it_gets_better(small_image, model, code):
    packets = packetize(code, 360, message_id=1)
    rx = Receiver(model, small_image)
    for i, p in enumerate(packets):
        a = rx.receive(p, 60.0 * i)
        assert a.verdict == "accepted" and a.preview is not None
        assert a.preview.number == i + 1 and a.preview.t_arrival_s == 60.0 * i
        assert set(a.preview.scores) == {"psnr_db", "ms_ssim"}
    got = [p.indices_received for p in rx.previews]
    assert got == sorted(got) and got[-1] == code.indices.size
    assert rx.previews[-1].stages_complete == code.num_stages
    # the last preview is the codec's full decode, and the quality only rises in stage order
    np.testing.assert_array_equal(rx.previews[-1].image, model.decode(code))
    ms = [p.scores["ms_ssim"] for p in rx.previews]
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(ms)), ms


def test_holes_decode_what_arrived(small_image, model, code):
    packets = packetize(code, 70, message_id=2)  # 42 indices a packet, 64 a stage
    rx = Receiver(model, small_image)
    hole = 2  # stage 2's positions 20-61 never arrive
    for i, p in enumerate(packets):
        if i != hole:
            rx.receive(p, float(i))
    last = rx.previews[-1]
    assert len(rx.previews) == len(packets) - 1
    assert last.indices_received < last.indices_total
    assert last.stages_complete == 1  # the stages after the hole are not whole either
    msg = rx.reassembler.index_message(2)
    assert not msg.received.all() and hole in msg.missing_seqs
    np.testing.assert_array_equal(last.image, model.decode(msg.code, msg.received))
    assert last.scores["ms_ssim"] < ms_ssim(small_image, model.decode(code))


def test_receiver_fragment_crc(small_image, model, code):
    frags = fragment(packetize(code, 360)[0], 70)
    rx = Receiver(model, small_image, fragmented=True)
    bad = bytearray(frags[0])
    bad[-3] ^= 1
    assert rx.receive(bytes(bad), 0.0).verdict == "corrupted"
    out = [rx.receive(f, float(i)).verdict for i, f in enumerate(frags)]
    assert out == ["fragment"] * (len(frags) - 1) + ["accepted"]


def test_classical_file_shows_only_when_whole(small_image, model):
    fit = fit_classical(small_image, "jpeg", 3 * byte_capacity(360))
    assert not fit.miss
    packets = packetize_bytes(fit.data, 360, message_id=3, content_type="image/jpeg")
    assert len(packets) > 1
    rx = Receiver(model, small_image)
    for p in packets[:-1]:
        a = rx.receive(p, 1.0)
        assert a.verdict == "accepted" and a.preview is None
    a = rx.receive(packets[-1], 2.0)
    assert a.preview is not None and len(rx.previews) == 1
    # the receiver decodes with the classical module's decoder, so it scores what the fit did
    assert a.preview.scores["ms_ssim"] == pytest.approx(fit.ms_ssim, abs=1e-9)


def test_no_reference_means_no_scores(model, code):
    rx = Receiver(model)
    a = rx.receive(packetize(code, 360)[0], 0.0)
    assert a.verdict == "accepted" and a.preview.scores == {}


def test_decode_cache_hits_on_repeated_masks(small_image, model, code):
    cache = DecodeCache(max_entries=4)
    rx = Receiver(model, small_image, cache=cache)
    a = rx.render(code, code.stage_mask(1))
    b = rx.render(code, code.stage_mask(1))
    assert cache.hits == 1 and cache.misses == 1
    assert a[0] is b[0]
    for k in range(2, 6):
        rx.render(code, code.stage_mask(k))
    assert len(cache) == 4  # bounded


def test_bounded_lru_forgets_the_least_recently_used():
    lru = BoundedLRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
    assert lru.remember("d", lambda: 4) == 4 and len(lru) == 2
    assert (lru.hits, lru.misses) == (3, 2)
