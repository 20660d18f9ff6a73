// The overview's arithmetic on the Prometheus text (web/console/prom.js).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { mean, parse, quantile, rate, total } from '../prom.js';

const scrape = (granted, buckets, sum) => `
# HELP streamguard_decisions_total Decisions
# TYPE streamguard_decisions_total counter
streamguard_decisions_total{outcome="granted"} ${granted}
streamguard_decisions_total{outcome="denied"} 4
streamguard_store_errors_total{op="start",kind="timeout"} 2
streamguard_store_errors_total{op="view",kind="timeout"} 1
odd_label{path="a\\"b\\\\c"} 1
${buckets.map(([le, n]) => `streamguard_store_call_duration_seconds_bucket{op="start",le="${le}"} ${n}`).join('\n')}
streamguard_store_call_duration_seconds_sum{op="start"} ${sum}
streamguard_store_call_duration_seconds_count{op="start"} ${buckets.at(-1)[1]}
`;

test('parses samples, labels and escapes', () => {
  const samples = parse(scrape(10, [['0.001', 0], ['+Inf', 0]], 0));
  assert.equal(total(samples, 'streamguard_decisions_total', { outcome: 'granted' }), 10);
  assert.equal(total(samples, 'streamguard_store_errors_total', { kind: 'timeout' }), 3);
  assert.equal(samples.find((s) => s.name === 'odd_label').labels.path, 'a"b\\c');
});

test('rates are per second between two scrapes, and 0 after a restart', () => {
  const a = parse(scrape(10, [['+Inf', 0]], 0));
  const b = parse(scrape(40, [['+Inf', 0]], 0));
  assert.equal(rate(a, b, 'streamguard_decisions_total', { outcome: 'granted' }, 3), 10);
  assert.equal(rate(a, b, 'streamguard_decisions_total', { outcome: 'denied' }, 3), 0);
  assert.equal(rate(b, a, 'streamguard_decisions_total', { outcome: 'granted' }, 3), 0);
});

test('quantiles and means come from what was observed between the scrapes', () => {
  const name = 'streamguard_store_call_duration_seconds';
  // Before: 100 fast calls. Between: 100 more, 90 under 1 ms and 10 between 1 and 2 ms.
  const a = parse(scrape(0, [['0.001', 100], ['0.002', 100], ['+Inf', 100]], 0.05));
  const b = parse(scrape(0, [['0.001', 190], ['0.002', 200], ['+Inf', 200]], 0.15));
  assert.equal(quantile(a, b, name, 0.5), 0.001 * (50 / 90));
  assert.ok(Math.abs(quantile(a, b, name, 0.99) - 0.0019) < 1e-12);
  assert.ok(Math.abs(mean(a, b, name) - 0.001) < 1e-12);
  assert.equal(quantile(b, b, name, 0.99), undefined, 'nothing observed');
  assert.equal(mean(b, b, name), undefined);
});
