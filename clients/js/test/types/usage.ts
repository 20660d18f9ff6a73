// Compiled (not run) by test/types.test.js: a player written against the
// declarations must type-check, and misuse must not.
import {
  LimitReachedError,
  MissingAttributeError,
  type Conflict,
  StreamguardClient,
  type EndReason,
  type Session,
  type Stream,
} from '../../src/index.js';

const byHeader = new StreamguardClient({ baseUrl: 'http://127.0.0.1:8080', userId: 'alice' });
const byToken = new StreamguardClient({ baseUrl: 'http://127.0.0.1:8080', token: async () => 'jwt' });

async function play(client: StreamguardClient): Promise<Session> {
  try {
    return await client.start({ deviceId: 'tv', contentId: 'movie-42', tags: { channel: 'dmax', quality: 'uhd' } });
  } catch (error) {
    if (error instanceof MissingAttributeError) {
      const attribute: string = error.attribute;
      const rule: string = error.rule;
      return client.start({ deviceId: 'tv', tags: { [attribute]: rule } });
    }
    if (error instanceof LimitReachedError) {
      const tv: Stream | undefined = error.streams.find((s) => s.device_id === 'tv');
      const limit: number = error.limit;
      const rule: string = error.rule;
      const conflicts: Conflict[] = error.conflicts;
      const channel: string | undefined = conflicts[0]?.streams[0]?.tags?.channel;
      void limit, rule, channel;
      return client.start({ deviceId: 'phone', terminate: tv ? [tv.id] : [] });
    }
    throw error;
  }
}

async function main(): Promise<void> {
  const session = await play(byHeader);
  const off = session.on('ended', ({ reason }) => {
    const r: EndReason = reason;
    void r;
  });
  session.on('heartbeat', (stream) => stream.expires_at.toUpperCase());
  session.on('grant', (grant) => grant?.split('.'));
  session.on('resumed', (stream) => stream.expires_at.toUpperCase());
  session.on('ended', ({ reason, error }) => {
    if (reason === 'limit-reached' && error instanceof LimitReachedError) void error.streams;
  });
  const secret: string = session.leaseSecret;
  await byHeader.start({ streamId: session.id, leaseSecret: secret });
  const grant: string | undefined = session.grant;
  void grant;
  off();
  await session.stop();
  await byToken.streams();

  // @ts-expect-error: one identity, not both
  new StreamguardClient({ baseUrl: 'x', userId: 'a', token: async () => 't' });
  // @ts-expect-error: an identity is required
  new StreamguardClient({ baseUrl: 'x' });
  // @ts-expect-error: no such event
  session.on('paused', () => {});
  // @ts-expect-error: terminate takes ids
  await byHeader.start({ terminate: 'tv-1' });
  // @ts-expect-error: tag values are strings
  await byHeader.start({ tags: { channel: 7 } });
}
void main;
