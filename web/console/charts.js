// Small line charts drawn as SVG, no library.

const SVG = 'http://www.w3.org/2000/svg';
const W = 360;
const H = 150;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A readable number: 0, 0.25, 12, 1.2k. */
export function fmt(value, unit = '') {
  if (value === undefined || Number.isNaN(value)) return '–';
  if (unit === 'ms') {
    return value >= 100 ? `${value.toFixed(0)} ms` : value >= 1 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`;
  }
  const n = Math.abs(value) >= 1000 ? `${(value / 1000).toFixed(1)}k` : value >= 10 ? value.toFixed(0) : value.toFixed(value === 0 ? 0 : 2);
  return unit ? `${n} ${unit}` : n;
}

/**
 * Draws `series` (`[{ name, color, points: [{ t, v }] }]`, t in ms) over
 * the last `windowMs` into `container`, replacing what was there.
 */
export function lineChart(container, { series, unit = '', windowMs = 120_000, now = Date.now() }) {
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img' });
  const x0 = now - windowMs;
  const values = series.flatMap((s) => s.points.filter((p) => p.t >= x0 && p.v !== undefined).map((p) => p.v));
  const top = niceCeiling(Math.max(0, ...values));
  const x = (t) => PAD.left + ((t - x0) / windowMs) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);

  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    svg.append(el('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(el('text', { x: PAD.left - 4, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmt(v, unit)));
  }
  svg.append(el('text', { x: PAD.left, y: H - 6, class: 'tick' }, `−${Math.round(windowMs / 1000)} s`));
  svg.append(el('text', { x: W - PAD.right, y: H - 6, class: 'tick', 'text-anchor': 'end' }, 'now'));

  for (const s of series) {
    const pts = s.points.filter((p) => p.t >= x0 && p.v !== undefined);
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    svg.append(el('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'data-series': s.name }));
    const last = pts[pts.length - 1];
    svg.append(el('circle', { cx: x(last.t), cy: y(last.v), r: 2.5, fill: s.color }));
  }
  container.replaceChildren(svg);

  const legend = document.createElement('div');
  legend.className = 'legend';
  for (const s of series) {
    const last = [...s.points].reverse().find((p) => p.v !== undefined);
    const item = document.createElement('span');
    item.innerHTML = '<i></i>';
    item.firstChild.style.background = s.color;
    item.append(`${s.name} ${fmt(last?.v, unit)}`);
    legend.append(item);
  }
  container.append(legend);
}

function niceCeiling(max) {
  if (max <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) {
    if (step * magnitude >= max) return step * magnitude;
  }
  return 10 * magnitude;
}
