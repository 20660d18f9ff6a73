// Reads the Prometheus text format and turns two scrapes into rates.

/** Parses exposition text into `[{ name, labels, value }]` (comments skipped). */
export function parse(text) {
  const samples = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    const body = match[3] ?? '';
    for (const pair of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

/** Sum of the samples named `name` whose labels include `where`. */
export function total(samples, name, where = {}) {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** Per-second increase of a counter between two scrapes `dt` seconds apart (0 after a restart). */
export function rate(before, after, name, where, dt) {
  const increase = total(after, name, where) - total(before, name, where);
  return dt > 0 && increase > 0 ? increase / dt : 0;
}

/**
 * The `q` quantile (0..1) of what a histogram observed between two scrapes,
 * in its unit, by linear interpolation inside the bucket; undefined when
 * nothing was observed.
 */
export function quantile(before, after, name, q) {
  const buckets = new Map();
  const add = (samples, sign) => {
    for (const s of samples) {
      if (s.name !== `${name}_bucket`) continue;
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + sign * s.value);
    }
  };
  add(after, 1);
  add(before, -1);
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const count = buckets.get(Infinity) ?? 0;
  if (count <= 0) return undefined;
  const rank = q * count;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const cumulative = buckets.get(le);
    if (cumulative >= rank) {
      if (le === Infinity) return lower;
      const inBucket = cumulative - below;
      return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
    }
    lower = le;
    below = cumulative;
  }
  return lower;
}

/** Mean of a histogram's observations between two scrapes, or undefined. */
export function mean(before, after, name) {
  const count = total(after, `${name}_count`) - total(before, `${name}_count`);
  const sum = total(after, `${name}_sum`) - total(before, `${name}_sum`);
  return count > 0 ? sum / count : undefined;
}
