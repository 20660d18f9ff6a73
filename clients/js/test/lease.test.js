// What the SDK sends to bind a lease to its player and to let a server that
// forgot a stream re-admit it: a lease secret per stream on start (the same
// one on every retry) and in `Streamguard-Lease-Secret` on every heartbeat,
// the latest grant in `Streamguard-Grant`; and how it takes a heartbeat
// answered `resumed` (a renewal) or 409 (playback ends with the
// LimitReachedError). The real binary answers; a recording `fetch` sees
// what the SDK sent and can replace one answer.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { LimitReachedError, StreamguardClient } from '../src/index.js';
import { startServer, waitFor } from './harness.js';

const SECRET = /^[A-Za-z0-9_-]{22}$/;

let server;
let keyDir;
let users = 0;
const account = (name) => `${name}-${process.pid}-${++users}`;
const sessions = [];
const track = (session) => (sessions.push(session), session);

before(async () => {
  keyDir = await mkdtemp(path.join(os.tmpdir(), 'sdk-lease-'));
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  const keyFile = path.join(keyDir, 'grant.pem');
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  server = await startServer(['--grant-key', keyFile, '--default-limit', '2']);
});

after(async () => {
  for (const session of sessions) session.detach();
  await server?.stop();
  await rm(keyDir, { recursive: true, force: true });
});

/**
 * The global fetch, recording each request (method, path, headers, body)
 * and the server's answer (JSON);
 * `replace(when, answer)` answers the next matching request with
 * `answer(realResponse)` instead.
 */
function recordingFetch() {
  const sent = [];
  const replacements = [];
  const fetch = async (url, init = {}) => {
    const headers = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const record = {
      method: init.method,
      path: new URL(url).pathname,
      headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body),
    };
    sent.push(record);
    const response = await globalThis.fetch(url, init);
    record.answer = await response
      .clone()
      .json()
      .catch(() => undefined);
    const index = replacements.findIndex((r) => r.when(record));
    if (index < 0) return response;
    const [{ answer }] = replacements.splice(index, 1);
    return answer(response);
  };
  const replace = (when, answer) => replacements.push({ when, answer });
  return { fetch, sent, replace };
}

const starts = (sent) => sent.filter((r) => r.method === 'POST' && r.path === '/streams');
const heartbeats = (sent, id) => sent.filter((r) => r.path === `/streams/${id}/heartbeat`);
const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

test('each stream gets its own secret of 128 random bits, sent on start and every heartbeat, with the latest grant', async () => {
  const recorder = recordingFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('secret'), fetch: recorder.fetch });
  const tv = track(await client.start({ deviceId: 'tv' }));
  const phone = track(await client.start({ deviceId: 'phone' }));
  const [tvStart, phoneStart] = starts(recorder.sent);
  assert.match(tvStart.body.lease_secret, SECRET);
  assert.match(phoneStart.body.lease_secret, SECRET);
  assert.notEqual(tvStart.body.lease_secret, phoneStart.body.lease_secret);
  assert.equal(tv.leaseSecret, tvStart.body.lease_secret);
  assert.equal(phone.leaseSecret, phoneStart.body.lease_secret);

  await waitFor(tv, 'heartbeat', { ms: 3_000 });
  await waitFor(tv, 'heartbeat', { ms: 3_000 });
  const beats = heartbeats(recorder.sent, tv.id);
  assert.ok(beats.length >= 2);
  // Each heartbeat carries the grant of the answer before it.
  let latest = tvStart.answer.grant;
  assert.equal(typeof latest, 'string');
  for (const [i, beat] of beats.entries()) {
    assert.equal(beat.headers['streamguard-lease-secret'], tv.leaseSecret, `heartbeat ${i}`);
    assert.equal(beat.headers['streamguard-grant'], latest, `heartbeat ${i}`);
    latest = beat.answer?.grant ?? latest;
  }
  const other = heartbeats(recorder.sent, phone.id);
  assert.ok(other.every((beat) => beat.headers['streamguard-lease-secret'] === phone.leaseSecret));
});

test('a start retried after a 502, or started again, sends the same secret', async () => {
  const recorder = recordingFetch();
  recorder.replace((r) => r.method === 'POST' && r.path === '/streams', () => json(502, { type: 'bad-gateway' }));
  const client = new StreamguardClient({
    baseUrl: server.base,
    userId: account('retry'),
    fetch: recorder.fetch,
    retryBaseMs: 10,
  });
  const session = track(await client.start({ streamId: 'tv-1', deviceId: 'tv' }));
  const again = await client.start({ streamId: 'tv-1', deviceId: 'tv' });
  assert.equal(again, session);
  const sentSecrets = starts(recorder.sent).map((r) => r.body.lease_secret);
  assert.equal(sentSecrets.length, 3, 'the 502, its retry, the second start');
  assert.deepEqual(new Set(sentSecrets), new Set([session.leaseSecret]));
});

test('a stream started with a given secret sends that one; starting the id again after its end makes a new one', async () => {
  const recorder = recordingFetch();
  const user = account('given');
  const client = new StreamguardClient({ baseUrl: server.base, userId: user, fetch: recorder.fetch });
  const secret = Buffer.from(crypto.randomBytes(24)).toString('base64url');
  const session = track(await client.start({ streamId: 'kept', leaseSecret: secret }));
  assert.equal(session.leaseSecret, secret);
  await waitFor(session, 'heartbeat', { ms: 3_000 });
  assert.equal(heartbeats(recorder.sent, 'kept')[0].headers['streamguard-lease-secret'], secret);
  await session.stop();
  const next = track(await client.start({ streamId: 'kept' }));
  assert.equal(next.id, 'kept');
  assert.notEqual(next.leaseSecret, secret);
  assert.match(next.leaseSecret, SECRET);
  assert.equal(starts(recorder.sent).at(-1).body.lease_secret, next.leaseSecret);
});

test('a heartbeat answered resumed is a renewal: resumed, then heartbeat, and the loop goes on', async () => {
  const recorder = recordingFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('resumed'), fetch: recorder.fetch });
  const session = track(await client.start({ deviceId: 'tv' }));
  recorder.replace(
    (r) => r.path === `/streams/${session.id}/heartbeat`,
    async (response) => json(200, { ...(await response.json()), resumed: true }),
  );
  const order = [];
  session.on('resumed', () => order.push('resumed'));
  session.on('heartbeat', () => order.push('heartbeat'));
  const resumed = await waitFor(session, 'resumed', { ms: 3_000 });
  assert.equal(resumed.id, session.id);
  await waitFor(session, 'heartbeat', { ms: 3_000 });
  assert.deepEqual(order.slice(0, 3), ['resumed', 'heartbeat', 'heartbeat']);
  assert.equal(session.ended, false);
});

test('a heartbeat answered 409 stream-limit-reached ends playback with the LimitReachedError', async () => {
  const recorder = recordingFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('resume-full'), fetch: recorder.fetch });
  const session = track(await client.start({ deviceId: 'tv' }));
  const other = { id: 'phone-1', user_id: session.stream.user_id, device_id: 'phone' };
  recorder.replace(
    (r) => r.path === `/streams/${session.id}/heartbeat`,
    () =>
      json(409, {
        type: 'urn:streamguard:problem:stream-limit-reached',
        status: 409,
        detail: 'the account allows 1 stream and 1 is live',
        rule: 'account',
        limit: 1,
        active: 1,
        streams: [other],
        conflicts: [{ rule: 'account', limit: 1, active: 1, streams: [other] }],
      }),
  );
  const errors = [];
  session.on('error', (error) => errors.push(error));
  const ended = await waitFor(session, 'ended', { ms: 3_000 });
  assert.equal(ended.reason, 'limit-reached');
  assert.ok(ended.error instanceof LimitReachedError, String(ended.error));
  assert.deepEqual(ended.error.streams, [other]);
  assert.equal(session.endReason, 'limit-reached');
  assert.equal(session.endError, ended.error);
  assert.equal(errors.length, 0, 'an answer, not a failure of the SDK');
  const before = heartbeats(recorder.sent, session.id).length;
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assert.equal(heartbeats(recorder.sent, session.id).length, before, 'no heartbeat after the 409');
});
