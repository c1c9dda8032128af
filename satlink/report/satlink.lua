-- Wireshark / tshark dissector for satlink packet traces (packets.pcap, link type DLT_USER0 = 147).
--
--   tshark -X lua_script:$(satlink dissector) -r replay-out/packets.pcap
--   wireshark -X lua_script:$(satlink dissector) replay-out/packets.pcap
--
-- Each frame: a 40-byte trace header written by the simulator (satlink/report/pcap.py), then the
-- message as it went on the wire (or, for a damaged copy, as it arrived): a satlink packet
-- (docs/PACKET_FORMAT.md: byte 0, index or bytes header, payload, CRC-32C) or a fragment
-- (marker 0xF1, CRC-16/CCITT-FALSE). The CRC is recomputed and compared with the trailer.
-- Filter fields: satlink.trace.*, satlink.*, e.g. `satlink.crc.status == "bad"`.
-- Works with Lua 5.2 (bit32) and 5.3+ (native operators).

local band, bxor, rshift, lshift
if bit32 then
  band, bxor, rshift, lshift = bit32.band, bit32.bxor, bit32.rshift, bit32.lshift
else
  band = load("return function(a, b) return a & b end")()
  bxor = load("return function(a, b) return a ~ b end")()
  rshift = load("return function(a, n) return (a & 0xFFFFFFFF) >> n end")()
  lshift = load("return function(a, n) return (a << n) & 0xFFFFFFFF end")()
end

local OUTCOMES = { [0] = "delivered", "lost", "corrupted", "retransmitted", "dropped-queue",
  "dropped-visibility", "waited-for-visibility", "abandoned" }
local VERDICTS = { [0] = "none", "accepted", "duplicate", "corrupted", "rejected", "fragment" }
local KINDS = { [0] = "RVQ indices", [1] = "file bytes", [2] = "repair over RVQ indices",
  [3] = "repair over file bytes" }
local ORDERS = { [0] = "stage-major", [1] = "position-major" }
local CONTENT = { [0] = "application/octet-stream", "image/avif", "image/jpeg", "image/png",
  "image/webp", "image/jxl", "image/heic" }

-- CRC-32C (Castagnoli, reflected 0x82F63B78, init and xorout 0xFFFFFFFF), stored big-endian
local CRC32C = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if band(c, 1) == 1 then c = bxor(rshift(c, 1), 0x82F63B78) else c = rshift(c, 1) end
  end
  CRC32C[i] = c
end
local function crc32c(tvb, offset, len)
  local crc = 0xFFFFFFFF
  local bytes = tvb:range(offset, len):bytes()
  for i = 0, len - 1 do
    crc = bxor(CRC32C[band(bxor(crc, bytes:get_index(i)), 0xFF)], rshift(crc, 8))
  end
  return bxor(crc, 0xFFFFFFFF)
end

-- CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected), for fragments
local function crc16(tvb, offset, len)
  local crc = 0xFFFF
  local bytes = tvb:range(offset, len):bytes()
  for i = 0, len - 1 do
    crc = bxor(crc, lshift(bytes:get_index(i), 8))
    for _ = 1, 8 do
      if band(crc, 0x8000) ~= 0 then crc = band(bxor(lshift(crc, 1), 0x1021), 0xFFFF)
      else crc = band(lshift(crc, 1), 0xFFFF) end
    end
  end
  return crc
end

local p = Proto("satlink", "satlink picture transfer")
local f = {
  -- trace header (what the simulator knows about the transmission)
  t_version = ProtoField.uint8("satlink.trace.version", "Trace header version"),
  t_outcome = ProtoField.uint8("satlink.trace.outcome", "Outcome", base.DEC, OUTCOMES),
  t_flags = ProtoField.uint8("satlink.trace.flags", "Flags", base.HEX),
  t_reliable = ProtoField.bool("satlink.trace.reliable", "Reliable (ARQ)", 8, nil, 0x01),
  t_arrived = ProtoField.bool("satlink.trace.arrived", "Arrived", 8, nil, 0x02),
  t_fragment = ProtoField.bool("satlink.trace.fragment", "Fragment", 8, nil, 0x04),
  t_damaged = ProtoField.bool("satlink.trace.damaged", "Bytes as received (damaged)", 8, nil, 0x08),
  t_attempt = ProtoField.uint8("satlink.trace.attempt", "Attempt"),
  t_wire_seq = ProtoField.uint32("satlink.trace.wire_seq", "Wire sequence number"),
  t_packet_seq = ProtoField.uint32("satlink.trace.packet_seq", "Packet sequence number"),
  t_flips = ProtoField.uint32("satlink.trace.bits_flipped", "Bits flipped by the channel"),
  t_tx = ProtoField.double("satlink.trace.t_tx_start_s", "Transmission start (s)"),
  t_arr = ProtoField.double("satlink.trace.t_arrival_s", "Arrival (s, NaN = none)"),
  t_el = ProtoField.float("satlink.trace.elevation_deg", "Elevation (deg)"),
  t_verdict = ProtoField.uint8("satlink.trace.rx_verdict", "Receiver verdict", base.DEC, VERDICTS),
  t_preview = ProtoField.uint16("satlink.trace.preview", "Preview made (0 = none)"),
  -- the packet
  version = ProtoField.uint8("satlink.version", "Format version", base.DEC, nil, 0xF0),
  kind = ProtoField.uint8("satlink.payload_kind", "Payload kind", base.DEC, KINDS, 0x0C),
  order = ProtoField.uint8("satlink.order", "Order", base.DEC, ORDERS, 0x02),
  interleave = ProtoField.uint8("satlink.interleave", "Interleave", base.DEC, nil, 0x01),
  message_id = ProtoField.uint16("satlink.message_id", "Message id"),
  seq = ProtoField.uint16("satlink.seq", "Sequence number"),
  model_id = ProtoField.uint16("satlink.model_id", "Model id"),
  stages = ProtoField.uint8("satlink.num_stages", "Stages"),
  bits = ProtoField.uint8("satlink.bits_per_index", "Bits per index"),
  height = ProtoField.uint16("satlink.image_height_px", "Image height (px)"),
  width = ProtoField.uint16("satlink.image_width_px", "Image width (px)"),
  stage = ProtoField.uint8("satlink.stage", "Stage of the first index"),
  downsample = ProtoField.uint8("satlink.downsample_log2", "Downsample (log2)"),
  file_size = ProtoField.uint32("satlink.file_size_bytes", "File size (bytes)"),
  content_type = ProtoField.uint8("satlink.content_type", "Content type", base.DEC, CONTENT),
  payload = ProtoField.bytes("satlink.payload", "Payload"),
  crc = ProtoField.uint32("satlink.crc", "CRC-32C", base.HEX),
  crc16 = ProtoField.uint16("satlink.crc16", "CRC-16/CCITT-FALSE", base.HEX),
  crc_calc = ProtoField.uint32("satlink.crc.computed", "Computed CRC", base.HEX),
  crc_status = ProtoField.string("satlink.crc.status", "CRC status"),
  crc_good = ProtoField.bool("satlink.crc.good", "CRC good"),
  frag_index = ProtoField.uint8("satlink.fragment_index", "Fragment index"),
  frag_count = ProtoField.uint8("satlink.fragment_count", "Fragment count"),
}
p.fields = {}
for _, field in pairs(f) do table.insert(p.fields, field) end
local e_crc = ProtoExpert.new("satlink.crc.bad.expert", "CRC mismatch: corrupted packet",
  expert.group.CHECKSUM, expert.severity.WARN)
local e_short = ProtoExpert.new("satlink.short.expert", "Frame too short for a satlink packet",
  expert.group.MALFORMED, expert.severity.ERROR)
p.experts = { e_crc, e_short }

local TRACE_LEN = 40

local function add_crc(tree, tvb, stored_range, stored, computed, field)
  local good = stored == computed
  tree:add(field, stored_range)
  tree:add(f.crc_calc, computed):set_generated()
  tree:add(f.crc_status, good and "good" or "bad"):set_generated()
  local item = tree:add(f.crc_good, good):set_generated()
  if not good then item:add_proto_expert_info(e_crc) end
  return good
end

local function dissect_packet(tvb, tree)
  local n = tvb:len()
  local b0 = tvb(0, 1):uint()
  local version = rshift(b0, 4)
  if version == 15 then -- a fragment
    if n < 10 then tree:add_proto_expert_info(e_short); return nil, "short fragment" end
    tree:add(f.message_id, tvb(1, 2))
    tree:add(f.seq, tvb(3, 2))
    tree:add(f.frag_index, tvb(5, 1))
    tree:add(f.frag_count, tvb(6, 1))
    tree:add(f.payload, tvb(7, n - 9))
    local good = add_crc(tree, tvb, tvb(n - 2, 2), tvb(n - 2, 2):uint(), crc16(tvb, 0, n - 2), f.crc16)
    return good, string.format("fragment %d/%d of seq %d", tvb(5, 1):uint() + 1, tvb(6, 1):uint(),
      tvb(3, 2):uint()), tvb(3, 2):uint()
  end
  if n < 19 then tree:add_proto_expert_info(e_short); return nil, "short packet" end
  tree:add(f.version, tvb(0, 1))
  tree:add(f.kind, tvb(0, 1))
  tree:add(f.order, tvb(0, 1))
  tree:add(f.interleave, tvb(0, 1))
  tree:add(f.message_id, tvb(1, 2))
  tree:add(f.seq, tvb(3, 2))
  local kind = band(rshift(b0, 2), 3)
  local what
  -- A repair packet (kind 2 or 3) has its source kind's header; its seq holds block and share.
  if kind == 1 or kind == 3 then
    tree:add(f.file_size, tvb(5, 4))
    tree:add(f.content_type, tvb(9, 1))
    tree:add(f.payload, tvb(10, n - 14))
    what = CONTENT[tvb(9, 1):uint()] or "unknown content"
  else
    tree:add(f.model_id, tvb(5, 2))
    local sb = tvb(7, 1):uint()
    tree:add(f.stages, tvb(7, 1), rshift(sb, 4) + 1)
    tree:add(f.bits, tvb(7, 1), band(sb, 15) + 1)
    tree:add(f.height, tvb(8, 2))
    tree:add(f.width, tvb(10, 2))
    local sd = tvb(12, 1):uint()
    tree:add(f.stage, tvb(12, 1), rshift(sd, 4))
    tree:add(f.downsample, tvb(12, 1), band(sd, 15))
    tree:add(f.payload, tvb(13, n - 17))
    what = string.format("from stage %d", rshift(sd, 4))
  end
  if kind >= 2 then what = "repair, " .. what end
  local good = add_crc(tree, tvb, tvb(n - 4, 4), tvb(n - 4, 4):uint(), crc32c(tvb, 0, n - 4), f.crc)
  return good, what, tvb(3, 2):uint()
end

function p.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "SATLINK"
  local root = tree:add(p, tvb(), "satlink")
  if tvb:len() < TRACE_LEN + 1 then
    root:add_proto_expert_info(e_short)
    return
  end
  local th = root:add(p, tvb(0, TRACE_LEN), "Trace header (simulator)")
  th:add(f.t_version, tvb(0, 1))
  th:add(f.t_outcome, tvb(1, 1))
  local flags = th:add(f.t_flags, tvb(2, 1))
  flags:add(f.t_reliable, tvb(2, 1))
  flags:add(f.t_arrived, tvb(2, 1))
  flags:add(f.t_fragment, tvb(2, 1))
  flags:add(f.t_damaged, tvb(2, 1))
  th:add(f.t_attempt, tvb(3, 1))
  th:add(f.t_wire_seq, tvb(4, 4))
  th:add(f.t_packet_seq, tvb(8, 4))
  th:add(f.t_flips, tvb(12, 4))
  th:add(f.t_tx, tvb(16, 8))
  th:add(f.t_arr, tvb(24, 8))
  th:add(f.t_el, tvb(32, 4))
  th:add(f.t_verdict, tvb(36, 1))
  th:add(f.t_preview, tvb(38, 2))
  local pkt = tvb(TRACE_LEN):tvb()
  local pt = root:add(p, tvb(TRACE_LEN), "Packet")
  local good, what, seq = dissect_packet(pkt, pt)
  local outcome = OUTCOMES[tvb(1, 1):uint()] or "?"
  local crc = (good == nil and "CRC n/a") or (good and "CRC good") or "CRC BAD"
  pinfo.cols.info = string.format("seq %s %s, wire %d attempt %d, %s, %s",
    tostring(seq or "?"), what or "", tvb(4, 4):uint(), tvb(3, 1):uint(), outcome, crc)
end

local encaps = wtap_encaps or wtap
DissectorTable.get("wtap_encap"):add(encaps and encaps.USER0 or 45, p)
