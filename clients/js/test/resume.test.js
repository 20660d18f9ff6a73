// Resume through the SDK: a session whose stream the store forgot is
// re-admitted from the grant its heartbeat carries and plays on, or ends
// with the LimitReachedError when the account filled up meanwhile. A memory
// store restarted on the same port with the same --grant-key, and a Redis
// after FLUSHALL, are stores that forgot everything.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { LimitReachedError, StreamguardClient } from '../src/index.js';
import { startRedis, startServer, waitFor } from './harness.js';

let keyDir;
let keyFile;
let users = 0;
const account = (name) => `${name}-${process.pid}-${++users}`;
const sessions = [];
const track = (session) => (sessions.push(session), session);

before(async () => {
  keyDir = await mkdtemp(path.join(os.tmpdir(), 'sdk-binding-'));
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  keyFile = path.join(keyDir, 'grant.pem');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
});

after(async () => {
  for (const session of sessions) session.detach();
  await rm(keyDir, { recursive: true, force: true });
});

test('a session whose stream the store forgot is re-admitted from its grant and plays on', async () => {
  const own = await startServer(['--grant-key', keyFile]);
  const user = account('resume');
  const client = new StreamguardClient({ baseUrl: own.base, userId: user });
  const session = track(await client.start({ deviceId: 'tv', contentId: 'match-7', tags: { channel: 'arte' } }));
  const ended = [];
  session.on('ended', (detail) => ended.push(detail));
  await own.stop();
  const restarted = await startServer(['--grant-key', keyFile], { listen: `127.0.0.1:${own.port}` });
  try {
    const resumed = await waitFor(session, 'resumed', { ms: 5_000 });
    assert.equal(resumed.id, session.id);
    assert.equal(resumed.device_id, 'tv');
    assert.equal(resumed.content_id, 'match-7');
    assert.deepEqual(resumed.tags, { channel: 'arte' });
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.deepEqual(ended, []);
    const live = await client.streams();
    assert.deepEqual(live.streams.map((s) => s.id), [session.id]);
    const metrics = await (await fetch(`${restarted.base}/metrics`)).text();
    assert.match(metrics, /^streamguard_resumed_total(\{[^}]*\})? 1$/m);
    // The resumed lease is still bound to the player's secret.
    const stranger = await fetch(`${restarted.base}/streams/${session.id}/heartbeat`, {
      method: 'POST',
      headers: { 'x-id': user, 'streamguard-grant': session.grant },
    });
    assert.equal(stranger.status, 404);
  } finally {
    session.detach();
    await restarted.stop();
  }
});

test('a session on Redis is re-admitted after FLUSHALL', async () => {
  const redis = await startRedis();
  const own = await startServer(['--store', redis.url, '--grant-key', keyFile]);
  try {
    const client = new StreamguardClient({ baseUrl: own.base, userId: account('flush') });
    const session = track(await client.start({ deviceId: 'tv', contentId: 'match-7' }));
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.equal(await redis.flushAll(), '+OK');
    assert.equal((await client.streams()).active, 0, 'the store forgot the stream');
    await waitFor(session, 'resumed', { ms: 3_000 });
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.equal(session.ended, false);
    assert.deepEqual((await client.streams()).streams.map((s) => s.id), [session.id]);
  } finally {
    await own.stop();
    await redis.stop();
  }
});

test('a resume that finds the account full ends playback with the LimitReachedError', async () => {
  // Heartbeats wait at a gate while the restarted store admits another stream.
  let open;
  let gate;
  const gatedFetch = async (url, init) => {
    if (String(url).endsWith('/heartbeat')) await gate;
    return fetch(url, init);
  };
  const args = ['--grant-key', keyFile, '--default-limit', '1'];
  const own = await startServer(args);
  const user = account('resume-full');
  const client = new StreamguardClient({ baseUrl: own.base, userId: user, fetch: gatedFetch });
  const session = track(await client.start({ deviceId: 'tv' }));
  gate = new Promise((resolve) => (open = resolve));
  await own.stop();
  const restarted = await startServer(args, { listen: `127.0.0.1:${own.port}` });
  try {
    const phone = new StreamguardClient({ baseUrl: restarted.base, userId: user });
    const taken = track(await phone.start({ deviceId: 'phone' }));
    open();
    const ended = await waitFor(session, 'ended', { ms: 5_000 });
    assert.equal(ended.reason, 'limit-reached');
    assert.ok(ended.error instanceof LimitReachedError, String(ended.error));
    assert.deepEqual(ended.error.streams.map((s) => s.id), [taken.id]);
    assert.deepEqual((await phone.streams()).streams.map((s) => s.id), [taken.id], 'never over the limit');
  } finally {
    open();
    await restarted.stop();
  }
});
