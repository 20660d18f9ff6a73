// The console in a real browser (Debian's chromium, driven by
// playwright-core) against the real streamguard binary. Screenshots go to
// ./screenshots (gitignored).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { ADMIN_TOKEN, startServer } from '../../../clients/js/test/harness.js';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const shots = path.join(path.dirname(fileURLToPath(import.meta.url)), 'screenshots');

let server;
let browser;
let page;
const user = `carol-${process.pid}`;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing; install it with: apt-get install -y chromium`);
  }
  mkdirSync(shots, { recursive: true });
  // 12 s leases: streams the test makes through the API (which never
  // heartbeat) stay live for the whole test; players heartbeat every 4 s.
  server = await startServer(['--lease-ttl', '12s', '--default-limit', '3']);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.on('pageerror', (error) => console.error('page error:', error));
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

test('signs in with the admin token only', async () => {
  await page.goto(`${server.base}/console`);
  assert.equal(new URL(page.url()).pathname, '/console/');
  await page.locator('#login').waitFor();
  assert.equal(await page.isVisible('#nav'), false, 'no navigation before signing in');
  assert.equal(await page.isVisible('#overview'), false);
  await page.fill('#token', 'not-the-token');
  await page.click('#login-form button');
  await page.locator('#login-error', { hasText: 'not the admin token' }).waitFor();
  await shot('1-login-refused.png');
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#login-form button');
  await page.locator('#overview').waitFor();
  assert.equal(await page.isVisible('#nav'), true);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('streamguard.adminToken')), ADMIN_TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'the token is not kept beyond the session');
});

test('looks up an account: limit, source and live streams with countdowns', async () => {
  for (const [device, content] of [['tv', 'movie-42'], ['phone', 'series-7']]) {
    const response = await server.as(user, 'POST', '/streams', { device_id: device, content_id: content });
    assert.equal(response.status, 201);
  }
  await page.click('#nav a[data-view="accounts"]');
  await page.fill('#user', user);
  await page.click('#lookup-form button');
  await page.locator('#streams tbody tr').nth(1).waitFor();
  assert.equal(await page.textContent('#limit-value'), '3');
  assert.equal(await page.textContent('#limit-source'), 'default');
  assert.equal(await page.textContent('#active-count'), '2 of 3 in use');
  const rows = await page.$$eval('#streams tbody tr', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
  );
  assert.deepEqual(rows.map((r) => [r[1], r[2]]).sort(), [['phone', 'series-7'], ['tv', 'movie-42']]);
  const countdown = () => page.textContent('#streams tbody tr .countdown');
  const first = Number.parseFloat(await countdown());
  assert.ok(first > 5 && first <= 12, `countdown ${first}`);
  await page.waitForTimeout(1200);
  const later = Number.parseFloat(await countdown());
  assert.ok(later < first, `the countdown runs (${first} → ${later})`);
  await shot('2-account.png');
});

test('revokes a stream and sees it go', async () => {
  const tvRow = page.locator('#streams tbody tr', { hasText: 'tv' });
  const id = await tvRow.getAttribute('data-stream');
  await tvRow.locator('button', { hasText: 'Revoke' }).click();
  await page.locator(`#streams tbody tr[data-stream="${id}"]`).waitFor({ state: 'detached' });
  assert.equal(await page.locator('#streams tbody tr').count(), 1);
  assert.equal(await page.textContent('#active-count'), '1 of 3 in use');
  const heartbeat = await server.as(user, 'POST', `/streams/${id}/heartbeat`);
  assert.equal(heartbeat.status, 410);
  assert.equal((await heartbeat.json()).reason, 'revoked');
});

test('sets and clears the limit', async () => {
  await page.fill('#limit-input', '5');
  await page.click('#limit-form button[type="submit"]');
  await page.locator('#limit-source', { hasText: 'override' }).waitFor();
  assert.equal(await page.textContent('#limit-value'), '5');
  const stored = await (await server.admin('GET', `/admin/users/${user}/limit`)).json();
  assert.deepEqual(stored, { user_id: user, limit: 5, source: 'override' });
  await shot('3-limit-set.png');
  await page.click('#limit-clear');
  await page.locator('#limit-source', { hasText: 'default' }).waitFor();
  assert.equal(await page.textContent('#limit-value'), '3');
});

test('a change that gets no answer is shown to the operator', async () => {
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  // The network drops the revoke: nothing reaches the service.
  await page.route('**/admin/users/*/streams/*', (route) => route.abort('connectionreset'));
  try {
    const row = page.locator('#streams tbody tr').first();
    await row.locator('button', { hasText: 'Revoke' }).click();
    await page.locator('#account-error', { hasText: 'did not answer' }).waitFor();
  } finally {
    await page.unroute('**/admin/users/*/streams/*');
  }
  assert.deepEqual(errors, [], 'no unhandled error in the page');
  assert.equal(await page.locator('#streams tbody tr').count(), 1, 'the stream is still listed');
});

test('the overview draws decision, latency and error charts from the metrics', async () => {
  // Traffic for the charts: grants, one denial, heartbeats.
  const busy = `busy-${process.pid}`;
  const ids = [];
  for (const device of ['a', 'b', 'c', 'd']) {
    const response = await server.as(busy, 'POST', '/streams', { device_id: device });
    if (response.status === 201) ids.push((await response.json()).stream.id);
  }
  await page.click('#nav a[data-view="overview"]');
  // Two scrapes make the first point; keep traffic going meanwhile.
  for (let i = 0; i < 8; i++) {
    for (const id of ids) await server.as(busy, 'POST', `/streams/${id}/heartbeat`);
    await server.as(busy, 'POST', '/streams', { device_id: `extra-${i}` });
    await page.waitForTimeout(900);
  }
  await page.locator('#chart-decisions path[data-series="granted"]').waitFor();
  for (const chart of ['#chart-decisions', '#chart-latency', '#chart-errors', '#chart-renewals']) {
    assert.ok((await page.locator(`${chart} svg path`).count()) >= 1, `${chart} has lines`);
  }
  const legend = await page.textContent('#chart-decisions .legend');
  assert.match(legend, /granted/);
  assert.match(legend, /denied [0-9.]+ \/s/);
  assert.match(await page.textContent('#chart-latency .legend'), /p99 [0-9.]+ ms/);
  await shot('4-overview.png');
});

test('the demo page shows the limit and "stop playback on the TV" with the SDK', async () => {
  const demo = `demo-${process.pid}`;
  await page.goto(`${server.base}/console/demo.html`);
  await page.fill('#account', demo);
  await page.fill('#count', '4');
  await page.fill('#limit', '2');
  await page.click('#setup button[type="submit"]');
  await page.locator('#setup-note', { hasText: 'set to 2' }).waitFor();
  await page.click('#play-all');
  const player = (device) => page.locator(`.player[data-device="${device}"]`);
  await player('laptop').locator('.offer button').first().waitFor();
  const states = await page.$$eval('.player', (cards) => cards.map((c) => [c.dataset.device, c.dataset.state]));
  assert.deepEqual(states, [['tv', 'playing'], ['phone', 'playing'], ['tablet', 'refused'], ['laptop', 'refused']]);
  await shot('5-demo-limit.png');

  // The tablet takes the TV's slot; the TV's player learns it at its next heartbeat.
  await player('tablet').locator('.offer button', { hasText: 'tv' }).click();
  await page.locator('.player[data-device="tablet"][data-state="playing"]').waitFor();
  await page.locator('.player[data-device="tv"][data-state="ended"]').waitFor({ timeout: 8_000 });
  assert.match(await player('tv').locator('.screen').textContent(), /evicted/);
  const live = await (await server.admin('GET', `/admin/users/${demo}/streams`)).json();
  assert.deepEqual(live.streams.map((s) => s.device_id).sort(), ['phone', 'tablet']);
  await shot('6-demo-terminate.png');

  // Leaving the page stops its players (keepalive DELETE on pagehide).
  await page.goto('about:blank');
  const deadline = Date.now() + 5_000;
  let active;
  do {
    active = (await (await server.admin('GET', `/admin/users/${demo}/streams`)).json()).active;
    if (active === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  } while (Date.now() < deadline);
  assert.equal(active, 0, 'the page stopped its streams when it went away');
});
