// Script of a replay's report.html, inlined into the page by satlink.report.replay_files.
// It reads DATA (page_data in replay_files.py): previews (src, time, scores, the triggering
// transmission, a coverage map), latent (shape and stages of the coverage maps), events and the
// time unit. The slider (#slider) picks a preview; the image (#preview, data-number = preview
// number), caption (#caption), missing-region overlay (#overlay), chart cursor and the
// highlighted trace row follow. No library, no network.
const P = DATA.previews, L = DATA.latent;
const slider = document.getElementById('slider');
const img = document.getElementById('preview');
const caption = document.getElementById('caption');
const overlay = document.getElementById('overlay');
const showMissing = document.getElementById('show-missing');
const fmt = (v, d) => (v === null || v === undefined) ? '–' : Number(v).toFixed(d);
const tfmt = (s) => (s === null || s === undefined) ? '–'
  : (s / DATA.time_unit_s).toFixed(DATA.time_unit === 's' ? 1 : 2) + ' ' + DATA.time_unit;

function decodeMap(b64) {
  const raw = atob(b64), out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function drawOverlay(p) {
  const ctx = overlay.getContext('2d');
  if (!L || !p.coverage || !showMissing.checked) {
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    return;
  }
  overlay.width = L.w; overlay.height = L.h;
  const cov = decodeMap(p.coverage), im = ctx.createImageData(L.w, L.h);
  for (let i = 0; i < cov.length; i++) {
    const k = 4 * i;
    if (cov[i] === 0) { im.data[k] = 214; im.data[k + 1] = 39; im.data[k + 2] = 40; im.data[k + 3] = 130; }
    else if (cov[i] < L.stages) { im.data[k] = 255; im.data[k + 1] = 180; im.data[k + 2] = 0;
      im.data[k + 3] = Math.round(90 * (1 - cov[i] / L.stages)); }
  }
  ctx.putImageData(im, 0, 0);
}

let highlighted = null;
function show(i) {
  if (!P.length) return;
  const p = P[i];
  img.src = p.src;
  img.dataset.number = String(p.number);
  const tr = p.trigger || {};
  const fate = tr.outcome ? `${tr.outcome}, attempt ${tr.attempt}, receiver: ${tr.rx_verdict}` : '';
  caption.innerHTML =
    `<b>Preview ${p.number} of ${P.length}</b> · packet ${p.seq} · t = ${tfmt(p.t_arrival_s)}<br>` +
    `PSNR ${fmt(p.psnr_db, 2)} dB · MS-SSIM ${fmt(p.ms_ssim, 4)} · ` +
    `indices ${p.indices_received} / ${p.indices_total} · stages complete ${p.stages_complete}<br>` +
    `<span class="muted">triggered by wire message ${tr.wire_seq} (${fate})</span>`;
  drawOverlay(p);
  const cursor = document.getElementById('cursor');
  if (cursor && chart) {
    const x = chart.x(p.t_arrival_s);
    cursor.setAttribute('x1', x); cursor.setAttribute('x2', x);
  }
  if (highlighted) highlighted.classList.remove('hl');
  highlighted = document.getElementById('row-' + tr.event);
  if (highlighted) highlighted.classList.add('hl');
}

const SVGNS = 'http://www.w3.org/2000/svg';
function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

let chart = null;
function drawChart() {
  const svg = document.getElementById('chart');
  if (!svg || !P.length) return;
  const W = 640, H = 240, m = {l: 46, r: 34, t: 10, b: 34};
  const tMax = Math.max(DATA.t_max_s, 1e-9);
  const x = (t) => m.l + (W - m.l - m.r) * (t / tMax);
  const y = (v) => m.t + (H - m.t - m.b) * (1 - v);
  chart = {x: x};
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  el('rect', {x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: 'none', stroke: '#bbb'}, svg);
  for (const lv of DATA.thresholds) {
    el('line', {x1: m.l, x2: W - m.r, y1: y(lv), y2: y(lv), stroke: '#d62728', 'stroke-dasharray': '4 3', 'stroke-width': 0.8}, svg);
    el('text', {x: m.l + 3, y: y(lv) - 2, 'font-size': 9, fill: '#d62728'}, svg).textContent = 'MS-SSIM ' + lv;
  }
  let d = `M ${x(0)} ${y(DATA.floor_ms_ssim)}`;
  for (const p of P) d += ` H ${x(p.t_arrival_s)} V ${y(p.ms_ssim === null ? 0 : p.ms_ssim)}`;
  d += ` H ${x(tMax)}`;
  el('path', {d: d, fill: 'none', stroke: '#d62728', 'stroke-width': 1.6}, svg);
  const colours = DATA.outcome_colours;
  for (const ev of DATA.events) {
    if (ev.t_s === null) continue;
    el('line', {x1: x(ev.t_s), x2: x(ev.t_s), y1: H - m.b, y2: H - m.b - 10, stroke: colours[ev.outcome] || '#000', 'stroke-width': 2}, svg)
      .appendChild(document.createElementNS(SVGNS, 'title')).textContent = ev.outcome;
  }
  for (let k = 0; k <= 4; k++) {
    const t = tMax * k / 4;
    el('text', {x: x(t), y: H - m.b + 14, 'font-size': 10, 'text-anchor': 'middle'}, svg).textContent = tfmt(t);
    el('text', {x: m.l - 4, y: y(k / 4) + 3, 'font-size': 10, 'text-anchor': 'end'}, svg).textContent = (k / 4).toFixed(2);
  }
  el('text', {x: (W + m.l) / 2, y: H - 4, 'font-size': 10, 'text-anchor': 'middle'}, svg).textContent =
    `time since the start (${DATA.time_unit}); ticks at the foot: lost / corrupted / retransmitted`;
  el('line', {id: 'cursor', x1: x(0), x2: x(0), y1: m.t, y2: H - m.b, stroke: '#000', 'stroke-width': 1}, svg);
}

if (P.length) {
  slider.max = String(P.length - 1);
  slider.addEventListener('input', () => show(Number(slider.value)));
  showMissing.addEventListener('change', () => show(Number(slider.value)));
  drawChart();
  show(0);
} else {
  slider.disabled = true;
  caption.textContent = 'No picture arrived: nothing to show.';
}
