// Line charts drawn as inline SVG from the API's samples (?msg_rates_age=&msg_rates_incr=).
import { h, num } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const H = 170, L = 48, R = 8, T = 8, B = 22;
// Chart ranges offered (seconds of history, sample spacing), as in RabbitMQ's chart menu; the
// basic rates mode keeps an hour of samples.
const RANGES = [[60, 5, 'Last minute'], [600, 5, 'Last ten minutes'], [3600, 60, 'Last hour']];

function range() {
  const age = Number(localStorage.getItem('warren.chartRange')) || 600;
  return RANGES.find((r) => r[0] === age) || RANGES[1];
}

/** Query string asking for chart samples on message rates and queue lengths over the chosen range. */
export function samples() {
  const [age, incr] = range();
  return `msg_rates_age=${age}&msg_rates_incr=${incr}&lengths_age=${age}&lengths_incr=${incr}`;
}

/** A chooser of the charts' time range; onChange re-fetches the page's data. */
export function rangeSelect(onChange) {
  const sel = h('select', { 'aria-label': 'Chart range', class: 'range' }, RANGES.map(([age, , label]) => h('option', { value: age, selected: age === range()[0] }, label)));
  sel.addEventListener('change', () => { localStorage.setItem('warren.chartRange', sel.value); onChange(); });
  return h('label', { class: 'inline range-label' }, 'Charts: ', sel);
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of kids) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Counter samples (newest first) to per-second rates, oldest first: [[t, rate]]. */
export function ratePoints(details) {
  const sm = (details && details.samples) || [];
  const out = [];
  for (let i = sm.length - 1; i > 0; i--) {
    const a = sm[i], b = sm[i - 1];
    const dt = (b.timestamp - a.timestamp) / 1000;
    if (dt > 0) out.push([b.timestamp, Math.max(0, (b.sample - a.sample) / dt)]);
  }
  return out;
}

/** Gauge samples (newest first) to points oldest first. */
export function gaugePoints(details) {
  const sm = (details && details.samples) || [];
  return sm.slice().reverse().map((x) => [x.timestamp, x.sample]);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function compact(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(2)}k`;
  return num(Math.round(v * 100) / 100);
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/**
 * series: [{label, color, points, current}] -> a figure with an SVG chart and a legend that names each
 * series with its current value (so the numbers are readable without the picture).
 */
export function lineChart(title, series, unit = '') {
  const all = series.flatMap((x) => x.points);
  const fig = h('figure', { class: 'chart', 'aria-label': title });
  const legend = h('ul', { class: 'legend' }, series.map((x) => h('li', null,
    h('span', { class: 'swatch', style: `background:${x.color}` }), ' ', x.label, ': ',
    h('strong', null, x.current ?? ''))));
  if (!series.some((x) => x.points.length >= 2)) {
    fig.append(h('figcaption', null, title), h('div', { class: 'chart-empty' }, 'Collecting samples\u2026'), legend);
    return fig;
  }
  // A narrower drawing on a phone keeps the axis labels readable once scaled to the screen.
  const W = Math.max(320, Math.min(600, window.innerWidth - 40));
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const max = niceMax(Math.max(...all.map((p) => p[1])));
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart-svg' });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, compact(v) + unit));
  }
  svg.append(s('text', { x: L, y: H - 6, class: 'tick' }, clock(t0)));
  svg.append(s('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'tick' }, clock(t1)));
  for (const ser of series) {
    if (ser.points.length < 2) continue;
    const d = ser.points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    svg.append(s('path', { d, fill: 'none', stroke: ser.color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
  }
  fig.append(h('figcaption', null, title), svg, legend);
  return fig;
}

export const COLORS = ['#2f7ed8', '#e07b00', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

/** A rate chart for the given message_stats keys: [[key, label]]. */
export function rateChart(title, stats, keys) {
  const ms = stats || {};
  return lineChart(title, keys.map(([k, label], i) => {
    const d = ms[`${k}_details`];
    const r = d && typeof d.rate === 'number' ? d.rate : 0;
    return { label, color: COLORS[i % COLORS.length], points: ratePoints(d), current: `${r >= 100 ? Math.round(r) : r.toFixed(1)}/s` };
  }), '/s');
}

/** A chart of queued messages (ready, unacked, total) from an object with *_details samples. */
export function lengthChart(title, obj) {
  const keys = [['messages_ready', 'Ready'], ['messages_unacknowledged', 'Unacked'], ['messages', 'Total']];
  return lineChart(title, keys.map(([k, label], i) => ({
    label, color: COLORS[i], points: gaugePoints(obj && obj[`${k}_details`]), current: num(obj && obj[k] != null ? obj[k] : 0),
  })));
}
