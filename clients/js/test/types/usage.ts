// Compiled (not run) by test/types.test.js: a player written against the
// declarations must type-check, and misuse must not.
import {
  LimitReachedError,
  StreamguardClient,
  type EndReason,
  type Session,
  type Stream,
} from '../../src/index.js';

const byHeader = new StreamguardClient({ baseUrl: 'http://127.0.0.1:8080', userId: 'alice' });
const byToken = new StreamguardClient({ baseUrl: 'http://127.0.0.1:8080', token: async () => 'jwt' });

async function play(client: StreamguardClient): Promise<Session> {
  try {
    return await client.start({ deviceId: 'tv', contentId: 'movie-42' });
  } catch (error) {
    if (error instanceof LimitReachedError) {
      const tv: Stream | undefined = error.streams.find((s) => s.device_id === 'tv');
      const limit: number = error.limit;
      void limit;
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
}
void main;
