// The player SDK and hls.js in a real browser (Debian's chromium, driven by
// playwright-core) playing an ffmpeg HLS test pattern through the real nginx
// edges of deploy/edge (serve.sh), against the real streamguard binary:
//
// - one player sends its grant as the Streamguard-Grant header to the
//   offline edge (njs checks signature, exp and cid), the other as ?grant=
//   to the online edge (--verify-url: also asks GET /edge/verify);
// - with 8 s leases (heartbeats every 2 s) both play past two whole leases:
//   every segment answered 200 and the grants they carried were renewed
//   ones, since the first grant expired long before;
// - an admin revokes both streams; the players ignore the SDK's `ended`
//   event, yet the online edge refuses at once (its cache: 1 s), the
//   offline one when the last grant expires (within one lease), no segment
//   is served after the first refusal, and playback stalls.
//
// A missing nginx, njs module, ffmpeg, openssl or chromium is a failure.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { ADMIN_TOKEN, binary, freePort, repoRoot, startServer } from '../../../clients/js/test/harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const NJS = '/usr/lib/nginx/modules/ngx_http_js_module.so';
const LEASE_S = 8; // --lease-ttl: heartbeats (and new grants) every 2 s
const MAX_BUFFER_S = 3; // player.html's hls.js maxBufferLength
const CONTENT = 'movie-1';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function onPath(program) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => existsSync(path.join(dir, program)));
}

function run(program, args) {
  const result = spawnSync(program, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${program} ${args.join(' ')} failed: ${result.stderr}`);
}

function expOf(grant) {
  return JSON.parse(Buffer.from(grant.split('.')[1], 'base64url').toString()).exp;
}

let work;
let server;
let browser;
const edges = [];

/** serve.sh nginx on a free port; resolves once it answers. */
async function startEdge(name, port, api, extra = []) {
  const log = openSync(path.join(work, `${name}.log`), 'a');
  const child = spawn(
    path.join(HERE, '..', 'serve.sh'),
    ['nginx', '--listen', `127.0.0.1:${port}`, '--media', path.join(work, 'media'),
      '--jwks', `${api}/.well-known/jwks.json`, '--streamguard', binary(),
      '--run', path.join(work, name), ...extra],
    { stdio: ['ignore', log, log] },
  );
  const edge = { name, child, origin: `http://127.0.0.1:${port}` };
  edges.push(edge);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`serve.sh ${name} exited: ${readFileSync(path.join(work, `${name}.log`), 'utf8')}`);
    }
    try {
      await fetch(`${edge.origin}/`);
      return edge;
    } catch {
      if (Date.now() > deadline) throw new Error(`the ${name} edge does not answer on ${port}`);
      await sleep(100);
    }
  }
}

before(async () => {
  const missing = [];
  for (const [program, pkg] of [['nginx', 'nginx'], ['ffmpeg', 'ffmpeg'], ['openssl', 'openssl']]) {
    if (!onPath(program)) missing.push(`${program} (apt-get install -y ${pkg})`);
  }
  if (!existsSync(NJS)) missing.push('the nginx JavaScript module (apt-get install -y libnginx-mod-http-js)');
  if (!existsSync(CHROMIUM)) missing.push(`${CHROMIUM} (apt-get install -y chromium)`);
  if (missing.length) throw new Error(`missing: ${missing.join(', ')}`);

  work = mkdtempSync(path.join(os.tmpdir(), 'streamguard-edge-browser.'));
  chmodSync(work, 0o755); // nginx workers (another user when started as root) read media and keys
  // 60 s of 1 s segments: H.264 baseline, 4:2:0 (libx264 would pick 4:4:4
  // for testsrc's RGB, which browsers do not decode), a keyframe a second.
  const media = path.join(work, 'media', CONTENT);
  mkdirSync(media, { recursive: true });
  run('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=160x90:rate=10', '-t', '60',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-g', '10',
    '-f', 'hls', '-hls_time', '1', '-hls_list_size', '0', '-hls_playlist_type', 'vod',
    '-hls_segment_filename', path.join(media, 'seg%d.ts'), path.join(media, 'index.m3u8')]);
  const key = path.join(work, 'grant.pem');
  run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);

  const offlinePort = await freePort();
  const onlinePort = await freePort();
  server = await startServer([
    '--lease-ttl', `${LEASE_S}s`,
    '--grant-key', key,
    // The player pages live on the edges' origins and call the API across.
    '--cors-origins', `http://127.0.0.1:${offlinePort},http://127.0.0.1:${onlinePort}`,
  ]);
  await startEdge('offline', offlinePort, server.base);
  await startEdge('online', onlinePort, server.base, ['--verify-url', `${server.base}/edge/verify`, '--verify-cache', '1s']);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
});

after(async () => {
  await browser?.close();
  for (const { child } of edges) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM'); // serve.sh stops its nginx
      await exited;
    }
  }
  await server?.stop();
  if (work && process.exitCode === undefined) rmSync(work, { recursive: true, force: true });
  else if (work) console.error(`logs kept in ${work}`);
});

/**
 * Opens the player page on `edge`'s origin (served by this test through
 * the browser's request routing: the edge itself only serves /media/) and
 * records every /media/ answer the browser gets.
 */
async function openPlayer(edge, user, mode) {
  // The page's origin is the edge's but its document comes from this test,
  // so Chromium counts it as public and (Local Network Access) asks before
  // it calls 127.0.0.1: granted here, as a user would.
  const context = await browser.newContext({ permissions: ['local-network-access'] });
  const page = await context.newPage();
  const player = {
    edge: edge.name,
    user,
    mode,
    page,
    /** { at, path, status, reason, grant } for each /media/ answer. */
    answers: [],
  };
  page.on('pageerror', (error) => console.error(`${edge.name} page error:`, error));
  page.on('requestfailed', (request) => console.error(`${edge.name} request failed:`, request.method(), request.url(), request.failure()?.errorText));
  const files = {
    '/player/index.html': ['text/html', path.join(HERE, 'player.html')],
    '/player/hls.js': ['text/javascript', path.join(HERE, 'node_modules', 'hls.js', 'dist', 'hls.min.js')],
    '/player/sdk.js': ['text/javascript', path.join(repoRoot, 'clients', 'js', 'src', 'index.js')],
  };
  await page.route(`${edge.origin}/player/**`, (route) => {
    const file = files[new URL(route.request().url()).pathname];
    if (!file) return route.fulfill({ status: 404 });
    return route.fulfill({ status: 200, contentType: file[0], body: readFileSync(file[1]) });
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (!url.pathname.startsWith('/media/')) return;
    const answer = {
      at: Date.now(),
      path: url.pathname,
      status: response.status(),
      reason: response.headers()['streamguard-reason'] ?? '',
      grant: url.searchParams.get('grant') ?? response.request().headers()['streamguard-grant'],
    };
    player.answers.push(answer);
  });
  const query = new URLSearchParams({ api: server.base, user, content: CONTENT, mode });
  await page.goto(`${edge.origin}/player/index.html?${query}`);
  return player;
}

const state = (player) =>
  player.page.evaluate(() => ({
    time: document.getElementById('video').currentTime,
    frames: document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames,
    log: window.playerLog,
    streamId: window.session?.id,
  }));

const segments = (answers) => answers.filter((a) => a.path.endsWith('.ts'));
const describe = (player, answers) =>
  `${player.edge}: ${answers.map((a) => `${a.path.split('/').pop()}=${a.status}${a.reason && ` ${a.reason}`}`).join(', ')}`;

test('hls.js with the SDK plays through the nginx edges across renewals, and stops after an admin revoke', { timeout: 120_000 }, async () => {
  const started = Date.now();
  const players = [
    await openPlayer(edges[0], `offline-${process.pid}`, 'header'),
    await openPlayer(edges[1], `online-${process.pid}`, 'query'),
  ];

  // 1. Both play past two whole leases.
  const target = 2 * LEASE_S + 1;
  const deadline = Date.now() + 45_000;
  for (const player of players) {
    for (;;) {
      const { time, log } = await state(player);
      // A stall of a busy machine (bufferStalledError, not fatal) is no
      // failure; a refused or failed load or a fatal error is.
      const failures = log.errors.filter((e) => e.fatal || /Load|setup|play:/.test(e.details));
      assert.deepEqual(failures, [], `${player.edge}: no load or fatal error while admitted`);
      if (time >= target) break;
      assert.ok(Date.now() < deadline, `${player.edge}: playback reached ${time} s, not ${target} s, within 45 s`);
      await sleep(250);
    }
  }
  for (const player of players) {
    const { time, frames, log, streamId } = await state(player);
    player.streamId = streamId;
    // 10 frames a second: the browser decodes the H.264, not only buffers it.
    assert.ok(frames >= 5 * time, `${player.edge}: ${frames} frames decoded in ${time} s`);
    const answers = [...player.answers];
    const refused = answers.filter((a) => a.status !== 200);
    assert.deepEqual(refused, [], `${player.edge}: every request answered 200 while admitted`);
    const played = segments(answers);
    assert.ok(played.length >= 2 * LEASE_S, `${player.edge}: ${played.length} segments`);
    const firstExp = expOf(played[0].grant) * 1000;
    const afterFirst = played.filter((a) => a.at > firstExp);
    assert.ok(afterFirst.length >= LEASE_S / 2, `${player.edge}: segments served after the first grant expired`);
    const grants = new Set(played.map((a) => a.grant));
    assert.ok(grants.size >= 3, `${player.edge}: segments carried ${grants.size} distinct grants`);
    assert.ok(log.grants.length >= 5, `${player.edge}: the SDK renewed the grant ${log.grants.length - 1} times`);
    assert.equal(log.ended, null, `${player.edge}: the session is live`);
    console.log(
      `${player.edge} (${player.mode}): played ${time.toFixed(1)} s (${frames} frames), ${played.length} segments all 200, ` +
        `${grants.size} distinct grants used, ${log.grants.length - 1} renewals, ` +
        `${afterFirst.length} segments after the first grant expired`,
    );
  }

  // 2. An admin revokes both streams; the pages keep their players going.
  const revokedAt = Date.now();
  for (const player of players) {
    const response = await server.admin('DELETE', `/admin/users/${player.user}/streams/${player.streamId}`);
    assert.equal(response.status, 204, `${player.edge}: admin revoke answered ${response.status}`);
  }
  await Promise.all(
    players.map(async (player) => {
      // Online: the cached answer (1 s, nginx rounds up to 2) and the next
      // segment request (one a second). Offline: the last grant's exp.
      const limit = player.edge === 'online' ? 5_000 : LEASE_S * 1000 + 3_000;
      let first;
      while (!first) {
        first = player.answers.find((a) => a.at >= revokedAt && a.status !== 200);
        if (!first) {
          assert.ok(
            Date.now() - revokedAt < limit,
            `${player.edge}: no refusal ${limit} ms after the revoke; ${describe(player, player.answers.filter((a) => a.at >= revokedAt))}`,
          );
          await sleep(100);
        }
      }
      const lag = first.at - revokedAt;
      // Every grant the SDK ever got (none after the revoke: its heartbeats get 410).
      const lastGrantExp = Math.max(...(await state(player)).log.grants.map((g) => expOf(g.grant))) * 1000;
      assert.ok([401, 403].includes(first.status), `${player.edge}: refused with ${first.status}`);
      if (player.edge === 'online') {
        assert.equal(first.reason, 'revoked', `${player.edge}: the online check's reason`);
      } else {
        assert.equal(first.reason, 'expired', `${player.edge}: the offline check's reason`);
        assert.ok(first.at >= lastGrantExp, `${player.edge}: refused only once the SDK's last grant expired`);
      }
      const refusedTime = (await state(player)).time;

      // 3. Playback stalls: currentTime stops within the buffer.
      let last = refusedTime;
      let stillSince = Date.now();
      for (;;) {
        await sleep(250);
        const { time } = await state(player);
        if (time !== last) {
          last = time;
          stillSince = Date.now();
        } else if (Date.now() - stillSince >= 2_000) {
          break;
        }
        assert.ok(Date.now() - first.at < 12_000, `${player.edge}: playback still advances (${time} s)`);
      }
      const after = player.answers.filter((a) => a.at >= first.at);
      assert.deepEqual(
        after.filter((a) => a.status === 200),
        [],
        `${player.edge}: nothing served after the first refusal; ${describe(player, after)}`,
      );
      assert.ok(last - refusedTime <= MAX_BUFFER_S + 2, `${player.edge}: played ${last - refusedTime} s after the refusal`);
      const { log } = await state(player);
      assert.equal(log.ended?.reason, 'revoked', `${player.edge}: the SDK's session ended as revoked`);
      console.log(
        `${player.edge}: refused ${(lag / 1000).toFixed(2)} s after the revoke (${first.status} ${first.reason}` +
          `${player.edge === 'offline' ? `, last grant expired ${((lastGrantExp - revokedAt) / 1000).toFixed(2)} s after it` : ''}), ` +
          `stalled at ${last.toFixed(1)} s (${(last - refusedTime).toFixed(1)} s of buffer after the refusal), ` +
          `${after.length} refused requests, SDK session ended (${log.ended.reason}) ` +
          `${((log.ended.at - revokedAt) / 1000).toFixed(2)} s after the revoke`,
      );
    }),
  );
  console.log(`browser playback test: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
