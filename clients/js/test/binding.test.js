// Lease secrets against the real binary, through the SDK: another player
// that knows only a stream's id cannot keep it alive or retry its start,
// the player that kept the id and secret can; a server that requires
// secrets takes the SDK as it is; a page on a --cors-origins origin may
// send the secret (and the grant).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { LimitReachedError, StreamguardClient } from '../src/index.js';
import { startServer, waitFor } from './harness.js';

let users = 0;
const account = (name) => `${name}-${process.pid}-${++users}`;
const sessions = [];
const track = (session) => (sessions.push(session), session);

after(() => {
  for (const session of sessions) session.detach();
});

describe('lease secrets', () => {
  let server;
  before(async () => {
    server = await startServer(['--default-limit', '1']);
  });
  after(() => server?.stop());

  const beat = (user, id, secret) =>
    fetch(`${server.base}/streams/${id}/heartbeat`, {
      method: 'POST',
      headers: { 'x-id': user, ...(secret === undefined ? {} : { 'streamguard-lease-secret': secret }) },
    });

  test('a second player that knows only the stream id cannot heartbeat it or retry its start', async () => {
    const user = account('bound');
    const client = new StreamguardClient({ baseUrl: server.base, userId: user });
    const tv = track(await client.start({ deviceId: 'tv', contentId: 'movie-1' }));

    // The phone learns the TV's stream id from its 409, as issue 20 showed.
    const refused = await client.start({ deviceId: 'phone' }).then(
      () => assert.fail('a second stream over a limit of 1'),
      (error) => error,
    );
    assert.ok(refused instanceof LimitReachedError);
    assert.equal(refused.streams[0].id, tv.id);

    const unknown = await beat(user, 'no-such-stream');
    assert.equal(unknown.status, 404);
    const unknownBody = await unknown.json();
    for (const secret of [undefined, 'A'.repeat(22), crypto.randomBytes(16).toString('base64url')]) {
      const reply = await beat(user, tv.id, secret);
      assert.equal(reply.status, 404, `heartbeat with ${secret ?? 'no secret'}`);
      const body = await reply.json();
      assert.equal(body.type, unknownBody.type, 'exactly as an unknown stream');
    }
    // Another SDK client, with its own secret, retrying the TV's start.
    const phone = new StreamguardClient({ baseUrl: server.base, userId: user });
    const conflict = await phone.start({ streamId: tv.id, deviceId: 'tv', contentId: 'movie-1' }).then(
      () => assert.fail('the retry without the secret was granted'),
      (error) => error,
    );
    assert.equal(conflict.status, 409);
    assert.ok(conflict.type.endsWith('stream-id-conflict'), conflict.type);

    // The player that started it goes on, and the secret is never shown.
    assert.equal((await beat(user, tv.id, tv.leaseSecret)).status, 200);
    await waitFor(tv, 'heartbeat', { ms: 3_000 });
    assert.equal(tv.ended, false);
    const listing = JSON.stringify(await (await server.admin('GET', `/admin/users/${user}/streams`)).json());
    assert.ok(!listing.includes(tv.leaseSecret), 'the admin listing shows no secret');
    assert.ok(!JSON.stringify(refused.problem).includes(tv.leaseSecret), 'the 409 shows no secret');

    // Stopping needs no secret ("stop playback on the TV" from the phone).
    await phone.stopStream(tv.id);
    assert.deepEqual(await waitFor(tv, 'ended', { ms: 3_000 }), { reason: 'stopped' });
  });

  test('a player that kept the stream id and its secret takes the stream over (a page reload)', async () => {
    const user = account('reload');
    const first = new StreamguardClient({ baseUrl: server.base, userId: user });
    const before = track(await first.start({ deviceId: 'tv' }));
    first.close();
    const reloaded = new StreamguardClient({ baseUrl: server.base, userId: user });
    const after = track(await reloaded.start({ streamId: before.id, deviceId: 'tv', leaseSecret: before.leaseSecret }));
    assert.equal(after.id, before.id);
    await waitFor(after, 'heartbeat', { ms: 3_000 });
    assert.equal((await reloaded.streams()).active, 1);
  });
});

test('a server that requires lease secrets (--require-lease-secret) takes the SDK as it is', async () => {
  const own = await startServer(['--require-lease-secret']);
  try {
    const user = account('required');
    const legacy = await own.as(user, 'POST', '/streams', { device_id: 'old-player' });
    assert.equal(legacy.status, 400, 'a start without a secret is refused');
    const client = new StreamguardClient({ baseUrl: own.base, userId: user });
    const session = track(await client.start({ deviceId: 'tv' }));
    await waitFor(session, 'heartbeat', { ms: 3_000 });
    assert.equal(session.ended, false);
    await session.stop();
  } finally {
    await own.stop();
  }
});

test('a page on a --cors-origins origin may send the lease secret and the grant', async () => {
  const own = await startServer(['--cors-origins', 'https://player.example']);
  try {
    const preflight = await fetch(`${own.base}/streams/s1/heartbeat`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://player.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'streamguard-grant,streamguard-lease-secret,x-id',
      },
    });
    assert.ok(preflight.ok, `preflight answered ${preflight.status}`);
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    for (const header of ['streamguard-lease-secret', 'streamguard-grant', 'x-id']) {
      assert.ok(allowed.includes(header), `${header} is allowed: ${allowed}`);
    }
  } finally {
    await own.stop();
  }
});
