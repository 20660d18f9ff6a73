// The console's plan view in a real browser against the binary started with
// `--plans FILE`: an account's plan, its source and each rule's usage, the
// streams' tags, setting and clearing the plan (a plan the file does not
// define is shown as the server's refusal), and the resumes series.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { ADMIN_TOKEN, startServer } from '../../../clients/js/test/harness.js';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const shots = path.join(path.dirname(fileURLToPath(import.meta.url)), 'screenshots');

const PLANS = `
default = "standard"

[plans.basic]
limit = 1

[plans.standard]
limit = 3
rules = [
  { name = "same-title", per = "content_id", max = 2 },
]

[plans.premium]
limit = 4
rules = [
  { name = "same-title", per = "content_id", max = 2 },
  { name = "uhd", match = { quality = ["uhd"] }, max = 2 },
]
`;

let dir;
let server;
let browser;
let page;
const user = `dave-${process.pid}`;
const errors = [];

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing; install it with: apt-get install -y chromium`);
  }
  mkdirSync(shots, { recursive: true });
  dir = await mkdtemp(path.join(os.tmpdir(), 'console-plans-'));
  const file = path.join(dir, 'plans.toml');
  await writeFile(file, PLANS);
  // 30 s leases: the streams the test starts through the API never heartbeat.
  server = await startServer(['--lease-ttl', '30s', '--plans', file]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${server.base}/console/`);
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#login-form button');
  await page.locator('#overview').waitFor();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });
const rules = () =>
  page.$$eval('#rules tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
const storedPlan = async () => (await server.admin('GET', `/admin/users/${user}/plan`)).json();

test("an account shows its plan, the plan's source, each rule's usage and the streams' tags", async () => {
  for (const [device, tags] of [
    ['tv', { channel: 'arte', quality: 'uhd' }],
    ['tablet', { channel: 'dmax' }],
  ]) {
    const response = await server.as(user, 'POST', '/streams', { device_id: device, content_id: 'film', tags });
    assert.equal(response.status, 201, await response.text());
  }
  await page.click('#nav a[data-view="accounts"]');
  await page.fill('#user', user);
  await page.click('#lookup-form button');
  await page.locator('#rules tbody tr').first().waitFor();
  assert.equal(await page.textContent('#plan-name'), 'standard');
  assert.equal(await page.textContent('#plan-source'), 'default');
  assert.equal(await page.textContent('#plan-limit'), 'account limit 3');
  assert.deepEqual(await rules(), [['same-title', '2', '2']]);
  assert.equal(await page.locator('#rules tbody tr.full').count(), 1, 'a full rule stands out');

  const tags = await page.$$eval('#streams tbody tr', (trs) =>
    trs.map((tr) => [tr.children[1].textContent, [...tr.querySelectorAll('.tag')].map((t) => t.textContent)]),
  );
  assert.deepEqual(
    tags.sort(),
    [
      ['tablet', ['channel=dmax']],
      ['tv', ['channel=arte', 'quality=uhd']],
    ],
  );
  await shot('plan-1-default.png');
});

test('sets a plan, shows a refused one as the server says, and clears it', async () => {
  await page.fill('#plan-input', 'premium');
  await page.click('#plan-form button[type="submit"]');
  await page.locator('#plan-source', { hasText: 'override' }).waitFor();
  assert.equal(await page.textContent('#plan-name'), 'premium');
  assert.equal(await page.textContent('#plan-limit'), 'account limit 4');
  assert.deepEqual(await rules(), [
    ['same-title', '2', '2'],
    ['uhd', '1', '2'],
  ]);
  assert.match(await page.textContent('#plan-note'), /Plan set to premium/);
  const stored = await storedPlan();
  assert.equal(stored.plan, 'premium');
  assert.equal(stored.source, 'override');
  await shot('plan-2-premium.png');

  // A plan the file does not define: the server's 400, nothing changes.
  await page.fill('#plan-input', 'platinum');
  await page.click('#plan-form button[type="submit"]');
  await page.locator('#account-error', { hasText: 'platinum' }).waitFor();
  assert.equal(await page.textContent('#plan-name'), 'premium');
  assert.equal((await storedPlan()).plan, 'premium');

  // A smaller plan revokes what it does not allow, and says so.
  await page.fill('#plan-input', 'basic');
  await page.click('#plan-form button[type="submit"]');
  await page.locator('#plan-name', { hasText: 'basic' }).waitFor();
  assert.equal(await page.textContent('#account-error'), '', 'the earlier error is gone');
  assert.match(await page.textContent('#plan-note'), /revoked 1 stream/);
  assert.equal(await page.isVisible('#no-rules'), true);
  await page.locator('#streams tbody tr').nth(1).waitFor({ state: 'detached' });
  assert.equal(await page.locator('#streams tbody tr').count(), 1);

  await page.click('#plan-clear');
  await page.locator('#plan-source', { hasText: 'default' }).waitFor();
  assert.equal(await page.textContent('#plan-name'), 'standard');
  assert.match(await page.textContent('#plan-note'), /cleared/);
  const cleared = await storedPlan();
  assert.equal(cleared.source, 'default');
  assert.equal(cleared.plan, 'standard');
  await shot('plan-3-cleared.png');
});

test('a plan change that gets no answer is shown to the operator', async () => {
  await page.route('**/admin/users/*/plan', (route) =>
    route.request().method() === 'GET' ? route.continue() : route.abort('connectionreset'),
  );
  try {
    await page.fill('#plan-input', 'premium');
    await page.click('#plan-form button[type="submit"]');
    await page.locator('#account-error', { hasText: 'did not answer' }).waitFor();
  } finally {
    await page.unroute('**/admin/users/*/plan');
  }
  assert.equal((await storedPlan()).source, 'default');
});

test('the decisions chart plots resumes (streamguard_resumed_total) per second', async () => {
  // The service's own metrics, with a resume counter that grows by 3 a
  // scrape (one every 3 s): about one resume per second.
  let resumed = 0;
  await page.route('**/admin/metrics', async (route) => {
    const real = await route.fetch();
    resumed += 3;
    const body = `${await real.text()}# TYPE streamguard_resumed_total counter\nstreamguard_resumed_total ${resumed}\n`;
    await route.fulfill({ response: real, body });
  });
  try {
    await page.click('#nav a[data-view="overview"]');
    await page.locator('#chart-decisions path[data-series="resumed"]').waitFor({ timeout: 10_000 });
    const legend = await page.textContent('#chart-decisions .legend');
    const rate = Number(/resumed ([0-9.]+) \/s/.exec(legend)?.[1]);
    assert.ok(rate > 0.5 && rate < 2, `resumes per second in the legend: ${legend}`);
    await shot('plan-4-resumes.png');
  } finally {
    await page.unroute('**/admin/metrics');
  }
  assert.deepEqual(errors, [], 'no error in the page');
});
