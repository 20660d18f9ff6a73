// What goes wrong between the player and the server: answers cut off
// mid-body, gateway errors, a stop while a heartbeat's answer is still
// arriving. The SDK talks to the real binary through a `fetch` that can
// spoil one chosen answer; nothing here may end up as an unhandled
// rejection or a session that silently stops heartbeating.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';

import { StreamguardClient } from '../src/index.js';
import { startServer, waitFor } from './harness.js';

let server;
let users = 0;
const account = (name) => `${name}-${process.pid}-${++users}`;

const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  server = await startServer();
});

after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await server?.stop();
});

beforeEach(() => {
  unhandled.length = 0;
});

/**
 * The global fetch, except that the next call matching `when` is answered
 * by `spoil(realResponse, init)` instead. Counts the calls per method.
 */
function faultyFetch() {
  const faults = [];
  const calls = {};
  const fetch = async (url, init = {}) => {
    calls[init.method] = (calls[init.method] ?? 0) + 1;
    const fault = faults.findIndex((f) => f.when(url, init));
    const response = await globalThis.fetch(url, init);
    if (fault < 0) return response;
    const [{ spoil }] = faults.splice(fault, 1);
    return spoil(response, init);
  };
  const next = (when, spoil) => faults.push({ when, spoil });
  return { fetch, next, calls };
}

const heartbeat = (url, init) => init.method === 'POST' && url.endsWith('/heartbeat');

/** A response whose body sends a few bytes, then the connection breaks. */
function cutOff(response) {
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"str'));
      controller.error(new TypeError('terminated'));
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

/** A response whose body never finishes until the request is aborted. */
function stalled(response, init) {
  const body = new ReadableStream({
    start(controller) {
      init.signal?.addEventListener('abort', () =>
        controller.error(new DOMException('This operation was aborted', 'AbortError')),
      );
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

test('a heartbeat answer cut off mid-body is retried and the session goes on', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('cut'), fetch: faulty.fetch, retryBaseMs: 50 });
  faulty.next(heartbeat, cutOff);
  const session = await client.start();
  try {
    const retry = await waitFor(session, 'retry', { ms: 3_000 });
    assert.equal(retry.status, 0, 'no whole answer');
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.equal(session.ended, false);
    assert.deepEqual(unhandled, []);
  } finally {
    await session.stop();
  }
});

test('a gateway error (502, 504) on a heartbeat is retried, not the end of playback', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('gw'), fetch: faulty.fetch, retryBaseMs: 50 });
  for (const status of [502, 504]) {
    faulty.next(heartbeat, () => new Response('Bad gateway', { status }));
  }
  const session = await client.start();
  const statuses = [];
  session.on('retry', (r) => statuses.push(r.status));
  try {
    await waitFor(session, 'heartbeat', { ms: 4_000 });
    assert.deepEqual(statuses, [502, 504]);
    assert.equal(session.ended, false);
    const listed = await client.streams();
    assert.equal(listed.active, 1);
  } finally {
    await session.stop();
  }
});

test('stop() while a heartbeat answer is still arriving ends the session cleanly', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('race'), fetch: faulty.fetch });
  faulty.next(heartbeat, stalled);
  const session = await client.start();
  const beats = [];
  session.on('heartbeat', (s) => beats.push(s));
  // The first heartbeat's answer stalls; stop meanwhile.
  await new Promise((resolve) => {
    const poll = setInterval(() => {
      if (faulty.calls.POST >= 2) {
        clearInterval(poll);
        resolve();
      }
    }, 10);
  });
  await session.stop();
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(session.endReason, 'stopped');
  assert.deepEqual(beats, [], 'no heartbeat after the end');
  assert.deepEqual(unhandled, []);
  assert.equal((await client.streams()).active, 0);
});

test('a start answered 502 is retried and takes one slot', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('start'), fetch: faulty.fetch, retryBaseMs: 50 });
  // The server granted it; the gateway lost the answer.
  faulty.next((url, init) => init.method === 'POST' && url.endsWith('/streams'), () => new Response('', { status: 502 }));
  const session = await client.start();
  try {
    assert.equal(faulty.calls.POST, 2);
    assert.equal((await client.streams()).active, 1);
  } finally {
    await session.stop();
  }
});

test('session.stop() retries as often as maxRetries says', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({
    baseUrl: server.base,
    userId: account('stop'),
    fetch: faulty.fetch,
    retryBaseMs: 10,
    maxRetries: 6,
  });
  const session = await client.start();
  for (let i = 0; i < 6; i++) {
    faulty.next((url, init) => init.method === 'DELETE', () => new Response('', { status: 503 }));
  }
  await session.stop();
  assert.equal(faulty.calls.DELETE, 7, 'six 503s, then the 204');
  assert.equal((await client.streams()).active, 0);
});

test('Retry-After as an HTTP date is waited for', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('date'), fetch: faulty.fetch, retryBaseMs: 10 });
  // HTTP dates have whole seconds: ask for at least 2 s from now.
  const at = new Date(Math.ceil(Date.now() / 1000) * 1000 + 2000);
  faulty.next(
    (url, init) => init.method === 'GET',
    () => new Response('', { status: 503, headers: { 'retry-after': at.toUTCString() } }),
  );
  const retries = [];
  client.on('retry', (r) => retries.push(r));
  await client.streams();
  assert.equal(retries.length, 1);
  assert.ok(retries[0].delayMs >= 1000, `waited ${retries[0].delayMs} ms for ${at.toUTCString()}`);
});

test('a heartbeat whose token callback fails is tried again soon, not a whole interval later', async () => {
  const secret = 'sdk-faults-jwt-secret-0123456789abcdef';
  // 6 s leases: a heartbeat every 2 s, so "soon" and "a whole interval
  // later" are far apart.
  const jwtServer = await startServer(['--auth', 'jwt', '--jwt-secret', secret, '--jwt-leeway', '0s', '--lease-ttl', '6s']);
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const sign = (claims) => {
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    return `${body}.${crypto.createHmac('sha256', secret).update(body).digest('base64url')}`;
  };
  const user = account('token');
  const now = () => Math.floor(Date.now() / 1000);
  // The first token runs out within two seconds; asked again after the
  // 401, the identity provider fails once, then answers.
  let asked = 0;
  const client = new StreamguardClient({
    baseUrl: jwtServer.base,
    token: async () => {
      asked += 1;
      if (asked === 1) return sign({ sub: user, exp: now() + 2 });
      if (asked === 2) throw new Error('identity provider unreachable');
      return sign({ sub: user, exp: now() + 60 });
    },
  });
  const session = await client.start();
  try {
    const error = await waitFor(session, 'error', { ms: 8_000 });
    const failedAt = Date.now();
    assert.match(error.message, /unreachable/);
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    const after = Date.now() - failedAt;
    // The interval is about 2 s; the retry comes after 0.25 s.
    assert.ok(after < 1_000, `renewed ${after} ms after the failure`);
    assert.equal(session.ended, false);
  } finally {
    await session.stop().catch(() => {});
    await jwtServer.stop();
  }
});

test('a start that resolves after close() does not heartbeat', async () => {
  const faulty = faultyFetch();
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('closed'), fetch: faulty.fetch });
  const starting = client.start();
  client.close();
  const session = await starting;
  assert.equal(session.ended, true);
  assert.equal(session.endReason, 'detached');
  const posts = faulty.calls.POST;
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  assert.equal(faulty.calls.POST, posts, 'no heartbeat after close()');
});
