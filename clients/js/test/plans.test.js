// Plans and rules through the SDK, against the real binary started with
// `--plans FILE`: tags on start, the 409's `rule` and `conflicts` on
// LimitReachedError, and 400 missing-attribute as MissingAttributeError.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { LimitReachedError, MissingAttributeError, StreamguardClient, StreamguardError } from '../src/index.js';
import { startServer } from './harness.js';

const PLANS = `
default = "standard"

[plans.standard]
limit = 3
rules = [
  { name = "same-title", per = "content_id", max = 2 },
]

[plans.premium]
limit = 4
rules = [
  { name = "uhd", match = { quality = ["uhd"] }, max = 2 },
  { name = "discovery", match = { channel = ["dmax", "tlc", "eurosport"] }, max = 1 },
  { name = "per-channel", per = "channel", max = 1, required = true },
]
`;

let server;
let dir;
let users = 0;
const account = (name) => `${name}-${process.pid}-${++users}`;
const sessions = [];
const track = (session) => (sessions.push(session), session);

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sdk-plans-'));
  const file = path.join(dir, 'plans.toml');
  await writeFile(file, PLANS);
  server = await startServer(['--plans', file]);
});

after(async () => {
  for (const session of sessions) session.detach();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function premium(user) {
  const reply = await server.admin('PUT', `/admin/users/${user}/plan`, { plan: 'premium' });
  assert.equal(reply.status, 200, await reply.text());
}

const refusal = (promise) =>
  promise.then(
    () => assert.fail('the start was granted'),
    (error) => error,
  );

test('tags travel with the start and come back on the stream and in the listing', async () => {
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('tags') });
  const tags = { channel: 'arte', kind: 'live' };
  const session = track(await client.start({ deviceId: 'tv', contentId: 'match-7', tags }));
  assert.deepEqual(session.stream.tags, tags);
  const listed = await client.streams();
  assert.deepEqual(listed.streams.map((s) => s.tags), [tags]);
  // Tags are fixed for a stream's life: a retry with other tags is a conflict.
  const conflict = await refusal(client.start({ streamId: session.id, deviceId: 'tv', contentId: 'match-7', tags: { channel: 'tlc' } }));
  assert.ok(conflict instanceof StreamguardError);
  assert.equal(conflict.status, 409);
  assert.ok(conflict.type.endsWith('stream-id-conflict'), conflict.type);
  assert.ok(!(conflict instanceof LimitReachedError));
});

test('a rule that refuses is named, with the streams in its scope, oldest first', async () => {
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('title') });
  const first = track(await client.start({ deviceId: 'tv', contentId: 'film' }));
  const second = track(await client.start({ deviceId: 'tablet', contentId: 'film' }));
  const other = track(await client.start({ deviceId: 'laptop', contentId: 'series' }));
  void other;
  // The account's limit (3) is reached too, but the title's rule is not the
  // first refusing one: the account is.
  const full = await refusal(client.start({ deviceId: 'phone', contentId: 'film' }));
  assert.ok(full instanceof LimitReachedError, String(full));
  assert.equal(full.rule, 'account');
  assert.equal(full.limit, 3);
  assert.deepEqual(
    full.conflicts.map((c) => [c.rule, c.limit, c.active, c.streams.map((s) => s.id)]),
    [
      ['account', 3, 3, full.streams.map((s) => s.id)],
      ['same-title', 2, 2, [first.id, second.id]],
    ],
  );

  // With a slot free, only the title's rule refuses.
  await other.stop();
  const title = await refusal(client.start({ deviceId: 'phone', contentId: 'film' }));
  assert.ok(title instanceof LimitReachedError, String(title));
  assert.equal(title.rule, 'same-title');
  assert.equal(title.limit, 2);
  assert.equal(title.active, 2);
  assert.deepEqual(title.streams.map((s) => s.id), [first.id, second.id]);
  assert.deepEqual(title.conflicts.map((c) => c.rule), ['same-title']);

  // "Stop the oldest of these": the start then fits.
  const phone = track(await client.start({ deviceId: 'phone', contentId: 'film', terminate: [title.streams[0].id] }));
  assert.deepEqual(phone.evicted, [first.id]);
});

test('every refusing rule is listed in conflicts', async () => {
  const user = account('conflicts');
  await premium(user);
  const client = new StreamguardClient({ baseUrl: server.base, userId: user });
  const dmax = track(await client.start({ deviceId: 'tv', tags: { channel: 'dmax', quality: 'uhd' } }));
  const arte = track(await client.start({ deviceId: 'tablet', tags: { channel: 'arte', quality: 'uhd' } }));
  const refused = await refusal(client.start({ deviceId: 'phone', tags: { channel: 'tlc', quality: 'uhd' } }));
  assert.ok(refused instanceof LimitReachedError, String(refused));
  assert.equal(refused.rule, 'uhd');
  assert.deepEqual(refused.streams.map((s) => s.id), [dmax.id, arte.id]);
  assert.deepEqual(
    refused.conflicts.map((c) => [c.rule, c.limit, c.active, c.streams.map((s) => s.id)]),
    [
      ['uhd', 2, 2, [dmax.id, arte.id]],
      ['discovery', 1, 1, [dmax.id]],
    ],
  );
  assert.deepEqual(refused.conflicts[1].streams[0].tags, { channel: 'dmax', quality: 'uhd' });
});

test('a start without an attribute a rule requires rejects with MissingAttributeError', async () => {
  const user = account('required');
  await premium(user);
  const client = new StreamguardClient({ baseUrl: server.base, userId: user });
  const missing = await refusal(client.start({ deviceId: 'tv', contentId: 'news', tags: { quality: 'hd' } }));
  assert.ok(missing instanceof MissingAttributeError, String(missing));
  assert.ok(missing instanceof StreamguardError);
  assert.equal(missing.status, 400);
  assert.ok(missing.type.endsWith('missing-attribute'), missing.type);
  assert.equal(missing.rule, 'per-channel');
  assert.equal(missing.attribute, 'channel');
  assert.equal((await client.streams()).active, 0, 'nothing was started');

  const session = track(await client.start({ deviceId: 'tv', contentId: 'news', tags: { channel: 'arte' } }));
  assert.equal(session.stream.tags.channel, 'arte');
});

test('a malformed tag is a plain 400 naming the field', async () => {
  const client = new StreamguardClient({ baseUrl: server.base, userId: account('badtag') });
  const error = await refusal(client.start({ tags: { Channel: 'arte' } }));
  assert.ok(error instanceof StreamguardError);
  assert.ok(!(error instanceof MissingAttributeError));
  assert.equal(error.status, 400);
  assert.ok(error.type.endsWith('invalid-request'), error.type);
  assert.match(error.message, /tags/);
});
