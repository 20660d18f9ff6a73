// A store that really stops answering: streamguard on a throwaway Redis
// that the test freezes with SIGSTOP. Requests then wait --store-timeout
// (200 ms) and get 503 with Retry-After; the SDK must retry, and recover
// once Redis runs again. Fails (never skips) when redis-server is missing.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { StreamguardClient } from '../src/index.js';
import { startRedis, startServer, waitFor } from './harness.js';

let redis;
let server;

before(async () => {
  redis = await startRedis();
  server = await startServer(['--store', redis.url, '--store-timeout', '200ms']);
});

after(async () => {
  await server?.stop();
  await redis?.stop();
});

test('a heartbeat answered 503 is retried after Retry-After and the session recovers', async () => {
  const client = new StreamguardClient({ baseUrl: server.base, userId: `redis-hb-${process.pid}` });
  const session = await client.start({ deviceId: 'tv' });
  try {
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    const before = Date.parse(session.stream.expires_at);

    redis.pause();
    let retry;
    try {
      retry = await waitFor(session, 'retry', { ms: 3_000 });
    } finally {
      redis.resume();
    }
    assert.equal(retry.status, 503);
    assert.ok(retry.delayMs >= 1_000, `waited ${retry.delayMs} ms; the server said Retry-After: 1`);

    const renewed = await waitFor(session, 'heartbeat', { ms: 4_000 });
    assert.ok(Date.parse(renewed.expires_at) > before, 'the lease was renewed after the store came back');
    assert.equal(session.ended, false);
    // And it keeps going.
    await waitFor(session, 'heartbeat', { ms: 3_000 });
  } finally {
    await session.stop().catch(() => {});
  }
});

test('a start answered 503 is retried until the store answers again', async () => {
  const user = `redis-start-${process.pid}`;
  const client = new StreamguardClient({ baseUrl: server.base, userId: user });
  const retries = [];
  client.on('retry', (detail) => retries.push(detail));

  redis.pause();
  let starting;
  try {
    starting = client.start({ streamId: 'tv-1', deviceId: 'tv' });
    await waitFor(client, 'retry', { ms: 3_000 });
  } finally {
    redis.resume();
  }
  const session = await starting;
  try {
    assert.equal(session.id, 'tv-1');
    assert.ok(retries.length >= 1);
    assert.deepEqual(
      retries.map((r) => [r.method, r.path, r.status]).slice(0, 1),
      [['POST', '/streams', 503]],
    );
    assert.equal((await client.streams()).active, 1);
  } finally {
    await session.stop();
  }
});

test('a start the store granted after answering 503 is the same stream on retry, not a second slot', async () => {
  // The frozen Redis runs the start when it wakes: the first answer was a
  // 503, yet the stream exists. The retry carries the SDK's stream id.
  const client = new StreamguardClient({ baseUrl: server.base, userId: `redis-ghost-${process.pid}` });
  redis.pause();
  let starting;
  try {
    starting = client.start();
    await waitFor(client, 'retry', { ms: 3_000 });
  } finally {
    redis.resume();
  }
  const session = await starting;
  try {
    const listed = await client.streams();
    assert.equal(listed.active, 1, JSON.stringify(listed));
    assert.equal(listed.streams[0].id, session.id);
  } finally {
    await session.stop();
  }
});

test('a start gives up with the 503 after maxRetries', async () => {
  const client = new StreamguardClient({ baseUrl: server.base, userId: `redis-giveup-${process.pid}`, maxRetries: 1 });
  redis.pause();
  try {
    const error = await client.start({ deviceId: 'tv' }).then(
      () => assert.fail('started while the store was frozen'),
      (e) => e,
    );
    assert.equal(error.status, 503);
    assert.ok(error.type.endsWith('store-unavailable'), error.type);
  } finally {
    redis.resume();
  }
});
