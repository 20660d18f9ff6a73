// The SDK against the real streamguard binary on the memory store, with
// 3 s leases (heartbeat interval 1 s).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { LimitReachedError, StreamguardClient, StreamguardError } from '../src/index.js';
import { startServer, waitFor } from './harness.js';

let server;
let users = 0;
/** A fresh account per test, so tests never see each other's streams. */
const account = (name) => `${name}-${process.pid}-${++users}`;

const sessions = [];
function track(session) {
  sessions.push(session);
  return session;
}

before(async () => {
  server = await startServer(['--default-limit', '2']);
});

after(async () => {
  for (const session of sessions) session.detach();
  await server?.stop();
});

describe('a session', () => {
  test('starts with the advised heartbeat interval and renews its lease by itself', async () => {
    const client = new StreamguardClient({ baseUrl: server.base, userId: account('renew') });
    const session = track(await client.start({ deviceId: 'tv', contentId: 'movie-42' }));
    assert.equal(session.heartbeatIntervalS, 1);
    assert.equal(session.stream.device_id, 'tv');
    assert.equal(session.stream.content_id, 'movie-42');
    const first = Date.parse(session.stream.expires_at);
    const startedAt = Date.now();
    const renewed = [];
    session.on('heartbeat', (stream) => renewed.push(Date.parse(stream.expires_at)));
    // Three heartbeats take about three seconds: beyond the first 3 s lease.
    while (renewed.length < 3) await waitFor(session, 'heartbeat', { ms: 3_000 });
    const elapsed = Date.now() - startedAt;
    assert.ok(elapsed >= 2_000 && elapsed < 3_600, `3 heartbeats in ${elapsed} ms`);
    assert.ok(renewed[0] > first, 'the first heartbeat moved expires_at');
    assert.ok(renewed[2] > renewed[0], 'every heartbeat moves expires_at');
    assert.ok(renewed[2] - first >= 1_500, 'the lease now ends well after the first one would have');
    const live = await (await server.as(session.stream.user_id, 'GET', '/streams')).json();
    assert.deepEqual(live.streams.map((s) => s.id), [session.id]);
    assert.equal(session.ended, false);
  });

  test('stop() deletes the stream, ends the loop and emits ended(stopped)', async () => {
    const user = account('stop');
    const client = new StreamguardClient({ baseUrl: server.base, userId: user });
    const session = track(await client.start({ deviceId: 'phone' }));
    const ended = waitFor(session, 'ended');
    let beats = 0;
    session.on('heartbeat', () => beats++);
    await session.stop();
    assert.deepEqual(await ended, { reason: 'stopped' });
    assert.equal(session.endReason, 'stopped');
    assert.equal((await client.streams()).active, 0);
    const heartbeat = await server.as(user, 'POST', `/streams/${session.id}/heartbeat`);
    assert.equal(heartbeat.status, 410);
    assert.equal((await heartbeat.json()).reason, 'stopped');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(beats, 0, 'no heartbeat after stop()');
    await session.stop(); // a second stop is a no-op
  });

  test('ends with the reason when an operator revokes the stream (410)', async () => {
    const user = account('revoke');
    const client = new StreamguardClient({ baseUrl: server.base, userId: user });
    const session = track(await client.start({ deviceId: 'tv' }));
    const ended = waitFor(session, 'ended', { ms: 3_000 });
    const revoke = await server.admin('DELETE', `/admin/users/${user}/streams/${session.id}`);
    assert.equal(revoke.status, 204);
    assert.deepEqual(await ended, { reason: 'revoked' });
    assert.equal(session.ended, true);
  });

  test('at the limit, start rejects with the live streams; terminate frees one', async () => {
    const user = account('limit');
    const client = new StreamguardClient({ baseUrl: server.base, userId: user });
    const tv = track(await client.start({ deviceId: 'tv', contentId: 'a' }));
    const tablet = track(await client.start({ deviceId: 'tablet', contentId: 'b' }));
    const refused = await client.start({ deviceId: 'phone' }).then(
      () => assert.fail('a third stream was granted over a limit of 2'),
      (error) => error,
    );
    assert.ok(refused instanceof LimitReachedError, String(refused));
    assert.ok(refused instanceof StreamguardError);
    assert.equal(refused.status, 409);
    assert.equal(refused.limit, 2);
    assert.equal(refused.active, 2);
    assert.deepEqual(refused.streams.map((s) => s.device_id).sort(), ['tablet', 'tv']);
    assert.ok(refused.type.endsWith('stream-limit-reached'));

    // "Watch here, stop the TV".
    const tvId = refused.streams.find((s) => s.device_id === 'tv').id;
    assert.equal(tvId, tv.id);
    const tvEnded = waitFor(tv, 'ended', { ms: 3_000 });
    const phone = track(await client.start({ deviceId: 'phone', terminate: [tvId] }));
    assert.deepEqual(phone.evicted, [tv.id]);
    assert.deepEqual(await tvEnded, { reason: 'evicted' });
    const live = await client.streams();
    assert.deepEqual(live.streams.map((s) => s.id).sort(), [phone.id, tablet.id].sort());
  });

  test('the same device starting again replaces its stream (ended: replaced)', async () => {
    const client = new StreamguardClient({ baseUrl: server.base, userId: account('replace') });
    const first = track(await client.start({ deviceId: 'tv', contentId: 'episode-1' }));
    const ended = waitFor(first, 'ended', { ms: 3_000 });
    const next = track(await client.start({ deviceId: 'tv', contentId: 'episode-2' }));
    assert.deepEqual(next.replaced, [first.id]);
    assert.deepEqual(await ended, { reason: 'replaced' });
  });

  test('a named stream retried is the same stream, not a second slot', async () => {
    const client = new StreamguardClient({ baseUrl: server.base, userId: account('retry') });
    const a = track(await client.start({ streamId: 'tv-1', deviceId: 'tv' }));
    const b = track(await client.start({ streamId: 'tv-1', deviceId: 'tv' }));
    assert.equal(a.id, 'tv-1');
    assert.equal(b.id, 'tv-1');
    assert.equal(b, a, 'the same session: one heartbeat loop for the stream');
    assert.equal((await client.streams()).active, 1);
    const [c, d] = await Promise.all([
      client.start({ streamId: 'tv-2', deviceId: 'tv-2' }),
      client.start({ streamId: 'tv-2', deviceId: 'tv-2' }),
    ]);
    track(c);
    assert.equal(c, d, 'concurrent starts of one stream share a session');
  });

  test('has no grant when the server signs none', async () => {
    const client = new StreamguardClient({ baseUrl: server.base, userId: account('nogrant') });
    const session = track(await client.start({ deviceId: 'tv' }));
    assert.equal(session.grant, undefined);
    let grants = 0;
    session.on('grant', () => grants++);
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.equal(session.grant, undefined);
    assert.equal(grants, 0);
  });
});

describe('identity', () => {
  test('bearer mode asks the token callback again after a 401', async () => {
    // This server runs in header mode, so it refuses every bearer token with
    // 401: the SDK must ask for a fresh token once, then give up with the error.
    const asked = [];
    const client = new StreamguardClient({
      baseUrl: server.base,
      token: async () => {
        asked.push(Date.now());
        return `token-${asked.length}`;
      },
    });
    const error = await client.start({ deviceId: 'tv' }).then(
      () => assert.fail('started without an identity'),
      (e) => e,
    );
    assert.ok(error instanceof StreamguardError);
    assert.equal(error.status, 401);
    assert.ok(error.type.endsWith('missing-identity'), error.type);
    assert.equal(asked.length, 2, 'the token was asked for once, then once more after the 401');

    // The next call starts from the refreshed token, and refreshes again on 401.
    await client.streams().catch(() => {});
    assert.equal(asked.length, 3);
  });

  test('header mode sends the account as X-ID', async () => {
    const user = account('header');
    const client = new StreamguardClient({ baseUrl: server.base, userId: user });
    const session = track(await client.start());
    assert.equal(session.stream.user_id, user);
    const seen = await (await server.admin('GET', `/admin/users/${user}/streams`)).json();
    assert.deepEqual(seen.streams.map((s) => s.id), [session.id]);
  });

  test('the options must name exactly one identity', () => {
    assert.throws(() => new StreamguardClient({ baseUrl: server.base }), TypeError);
    assert.throws(
      () => new StreamguardClient({ baseUrl: server.base, userId: 'u', token: async () => 't' }),
      TypeError,
    );
  });
});

describe('signed grants', () => {
  // A server with --grant-key signs a grant (compact JWS) into every
  // granted start and renewed heartbeat; its public key is at
  // /.well-known/jwks.json.
  let signing;
  let keyDir;

  before(async () => {
    keyDir = await mkdtemp(path.join(os.tmpdir(), 'sdk-grant-'));
    const { privateKey } = crypto.generateKeyPairSync('ed25519');
    const keyFile = path.join(keyDir, 'grant.pem');
    await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    signing = await startServer(['--grant-key', keyFile]);
  });

  after(async () => {
    await signing?.stop();
    await rm(keyDir, { recursive: true, force: true });
  });

  test('the session exposes the current grant, checked against the JWKS, and announces each new one', async () => {
    const jwks = await (await fetch(`${signing.base}/.well-known/jwks.json`)).json();
    const verify = (grant) => {
      const [header, payload, signature] = grant.split('.');
      const { kid } = JSON.parse(Buffer.from(header, 'base64url').toString());
      const jwk = jwks.keys.find((k) => k.kid === kid);
      assert.ok(jwk, `the JWKS has key ${kid}`);
      const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
      const valid = crypto.verify(null, Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, 'base64url'));
      assert.ok(valid, 'the grant is signed by the published key');
      return JSON.parse(Buffer.from(payload, 'base64url').toString());
    };
    const user = account('grant');
    const client = new StreamguardClient({ baseUrl: signing.base, userId: user });
    const session = track(await client.start({ deviceId: 'tv', contentId: 'movie-42' }));
    assert.equal(typeof session.grant, 'string');
    const first = verify(session.grant);
    assert.equal(first.sub, user);
    assert.equal(first.sid, session.id);
    assert.equal(first.did, 'tv');
    assert.equal(first.exp, Math.floor(Date.parse(session.stream.expires_at) / 1000));

    // Each heartbeat brings a grant that runs to the renewed lease's end;
    // `exp` has whole seconds, so wait until it moves.
    const before = session.grant;
    const announced = await waitFor(session, 'grant', { ms: 5_000, accept: (g) => verify(g).exp > first.exp });
    assert.notEqual(announced, before);
    assert.equal(session.grant, announced);
    assert.equal(verify(announced).exp, Math.floor(Date.parse(session.stream.expires_at) / 1000));
  });
});

describe('JWT identity', () => {
  // --auth jwt with an HS256 secret and no clock leeway, so a token that
  // expires during the test is refused at once.
  const secret = 'sdk-test-jwt-secret-0123456789abcdef';
  let jwtServer;

  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  function sign(claims, key = secret) {
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    return `${body}.${crypto.createHmac('sha256', key).update(body).digest('base64url')}`;
  }
  const now = () => Math.floor(Date.now() / 1000);

  before(async () => {
    jwtServer = await startServer(['--auth', 'jwt', '--jwt-secret', secret, '--jwt-leeway', '0s']);
  });

  after(() => jwtServer?.stop());

  test('a refused token is replaced by asking the callback again', async () => {
    const user = account('jwt');
    const tokens = [sign({ sub: user, exp: now() + 60 }, 'another-secret'), sign({ sub: user, exp: now() + 60 })];
    let asked = 0;
    const client = new StreamguardClient({ baseUrl: jwtServer.base, token: async () => tokens[asked++] });
    const session = track(await client.start({ deviceId: 'tv' }));
    assert.equal(asked, 2, 'asked once, then again after the 401');
    assert.equal(session.stream.user_id, user);
  });

  test('requests refused together ask for one new token, not one each', async () => {
    const user = account('jwt-many');
    const tokens = [sign({ sub: user, exp: now() - 60 }), sign({ sub: user, exp: now() + 60 })];
    let asked = 0;
    const client = new StreamguardClient({
      baseUrl: jwtServer.base,
      token: async () => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return tokens[Math.min(asked++, 1)];
      },
    });
    const answers = await Promise.all([client.streams(), client.streams(), client.streams()]);
    assert.deepEqual(answers.map((a) => a.user_id), [user, user, user]);
    assert.equal(asked, 2);
  });

  test('a token that expires during playback is renewed and the heartbeats go on', async () => {
    const user = account('jwt-exp');
    let asked = 0;
    const client = new StreamguardClient({
      baseUrl: jwtServer.base,
      // The first token lives two seconds; the next ones a minute.
      token: async () => sign({ sub: user, exp: now() + (asked++ === 0 ? 2 : 60) }),
    });
    const session = track(await client.start({ deviceId: 'tv' }));
    assert.equal(asked, 1);
    const renewed = [];
    session.on('heartbeat', (stream) => renewed.push(stream.expires_at));
    // Past the first token's expiry, with heartbeats every second.
    const deadline = Date.now() + 4_500;
    while (Date.now() < deadline) await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.equal(asked, 2, 'the expired token was replaced once');
    assert.ok(renewed.length >= 3, `${renewed.length} heartbeats`);
    assert.equal(session.ended, false);
  });
});

describe('a stream the server forgot', () => {
  test('ends with reason unknown on 404', async () => {
    // A memory store restarted on the same port knows no stream any more.
    const own = await startServer([]);
    const client = new StreamguardClient({ baseUrl: own.base, userId: account('forgot') });
    const session = track(await client.start({ deviceId: 'tv' }));
    await own.stop();
    const restarted = await startServer([], { listen: `127.0.0.1:${own.port}` });
    try {
      assert.deepEqual(await waitFor(session, 'ended', { ms: 5_000 }), { reason: 'unknown' });
    } finally {
      await restarted.stop();
    }
  });
});
