"""packets.pcap and the shipped Wireshark dissector: one frame per transmission with its time;
tshark (when installed) lists every transmission with its sequence number and CRC status."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from satlink import report
from satlink.cli import main
from satlink.packets import PacketCRCError, fragment, packetize_bytes, parse_packet

FIELDS = (
    "satlink.trace.wire_seq",
    "satlink.seq",
    "satlink.trace.attempt",
    "satlink.trace.outcome",
    "satlink.crc.status",
)


@pytest.fixture(scope="module")
def noisy(noisy_replay):
    out, result = noisy_replay
    assert result.transmission.received_bytes, "the fixture needs at least one damaged copy"
    return out, result


def _on_air(rows):
    return [r for r in rows if r["t_tx_start_s"] >= 0 and r["t_tx_end_s"] >= 0]  # NaN: no


def test_one_frame_per_transmission_with_its_time_and_bytes(noisy):
    out, result = noisy
    frames = report.read_pcap(out / "packets.pcap")
    on_air = _on_air(result.rows)
    assert len(frames) == len(on_air) > len(result.previews)
    damaged = 0
    for (t, frame), row in zip(frames, on_air, strict=True):
        assert t == pytest.approx(row["t_tx_start_s"], abs=1e-6)
        header = report.pcap.TRACE_HEADER.unpack_from(frame)
        assert header[4] == row["seq"] and header[3] == row["attempt"]
        sent = result.transmission.plan.messages[row["seq"]]
        if header[2] & 0b1000:  # bytes as received, changed on the way
            damaged += 1
            with pytest.raises(PacketCRCError):
                parse_packet(frame[40:])
        else:
            assert frame[40:] == sent
    assert damaged == len(result.transmission.received_bytes)


def _tshark():
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark not installed (Debian: apt-get install tshark; .ci/run does it)")
    return path


def _dissect(pcap, *fields: str) -> list[list[str]]:
    cmd = [_tshark(), "-X", f"lua_script:{report.dissector_path()}", "-r", str(pcap), "-T"]
    cmd += ["fields", *(a for f in fields for a in ("-e", f))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    assert "Lua: Error" not in done.stderr, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_tshark_lists_every_transmission_with_seq_and_crc_status(noisy):
    out, result = noisy
    lines = _dissect(out / "packets.pcap", *FIELDS)
    on_air = _on_air(result.rows)
    assert len(lines) == len(on_air)
    damaged = {key[0] for key in result.transmission.received_bytes}
    statuses = []
    for (wire, seq, attempt, outcome, crc), row in zip(lines, on_air, strict=True):
        assert int(wire) == row["seq"] and int(attempt) == row["attempt"]
        assert int(seq) == row["packet_seq"]  # whole packets here: the header's seq
        assert int(outcome) == report.pcap.OUTCOMES.index(row["outcome"])
        arrived_damaged = (row["seq"], row["t_arrival_s"]) in result.transmission.received_bytes
        assert crc == ("bad" if arrived_damaged else "good"), (row, crc)
        statuses.append(crc)
    assert "bad" in statuses and "good" in statuses and damaged
    # the summary line names seq and CRC status too
    info = subprocess.run(
        [_tshark(), "-X", f"lua_script:{report.dissector_path()}", "-r", str(out / "packets.pcap")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "CRC BAD" in info and "CRC good" in info and "seq 0 " in info


def test_dissector_reads_fragments_and_file_packets(tmp_path):
    packets = packetize_bytes(bytes(range(256)) * 3, 120, message_id=7, content_type="image/jpeg")
    messages = [f for p in packets for f in fragment(p, 50)]
    broken = bytearray(messages[1])
    broken[9] ^= 0x10
    rows = [
        {"seq": i, "attempt": 0, "outcome": "delivered", "t_tx_start_s": float(i),
         "t_tx_end_s": i + 0.1, "t_arrival_s": i + 0.5, "packet_seq": i // 3}
        for i in range(len(messages))
    ]  # fmt: skip
    received = {(1, 1.5): bytes(broken)}
    n = report.write_pcap(tmp_path / "f.pcap", rows, messages, received, fragments=True)
    assert n == len(messages)
    lines = _dissect(tmp_path / "f.pcap", "satlink.message_id", "satlink.crc.status")
    assert [line[1] for line in lines] == ["good", "bad"] + ["good"] * (len(messages) - 2)
    assert all(line[0] == "7" for line in lines)
    whole = [{**r, "packet_seq": r["seq"]} for r in rows[: len(packets)]]
    report.write_pcap(tmp_path / "p.pcap", whole, packets)
    lines = _dissect(tmp_path / "p.pcap", "satlink.content_type", "satlink.file_size_bytes",
                     "satlink.crc.status")  # fmt: skip
    assert lines == [["2", "768", "good"]] * len(packets)


def test_dissector_command_prints_the_shipped_file(capsys):
    assert main(["dissector"]) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(report.dissector_path())
    assert "DissectorTable" in open(path).read()


def test_dissector_names_every_outcome_and_verdict():
    """The Lua tables must follow satlink.channel.OUTCOMES and satlink.receiver.VERDICTS."""
    from satlink.channel import OUTCOMES
    from satlink.receiver import VERDICTS

    lua = report.dissector_path().read_text()
    outcomes = lua.split("local OUTCOMES = {", 1)[1].split("}", 1)[0]
    assert re.findall(r'"([a-z-]+)"', outcomes) == list(OUTCOMES)
    verdicts = lua.split("local VERDICTS = {", 1)[1].split("}", 1)[0]
    assert re.findall(r'"([a-z-]+)"', verdicts) == ["none", *VERDICTS]
