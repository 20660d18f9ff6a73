// streamguard player SDK: start a stream, keep it alive with heartbeats,
// stop it, and tell the player when the server ended it.
// No dependencies; runs in browsers and Node >= 18 (global fetch).
// Types: index.d.ts beside this file.

/** Problem `type` suffixes the SDK reacts to. */
const LIMIT_REACHED = 'stream-limit-reached';
const MISSING_ATTRIBUTE = 'missing-attribute';

/** Longest wait between two retries when the server names no Retry-After. */
const MAX_BACKOFF_MS = 8000;

/**
 * Longest wait a `Retry-After` may impose: past it a heartbeat would lose
 * its lease anyway (90 s by default), so a proxy asking for more is not
 * obeyed to the letter.
 */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Answers worth asking again: the store or a gateway failed for a moment
 * (500, 502, 503, 504) or the service throttled (429). Every call the SDK
 * makes is idempotent — a start always names its stream — so a retry never
 * takes a second slot.
 */
const TRANSIENT = new Set([429, 500, 502, 503, 504]);

/** An answer the SDK could not turn into a result. */
export class StreamguardError extends Error {
  /**
   * @param {string} message
   * @param {number} status HTTP status, 0 when no answer came
   * @param {object | undefined} problem the RFC 9457 body, when there was one
   */
  constructor(message, status, problem) {
    super(message);
    this.name = 'StreamguardError';
    this.status = status;
    this.problem = problem;
    this.type = problem?.type;
  }
}

/** The account watches as many streams as it may (409 `stream-limit-reached`). */
export class LimitReachedError extends StreamguardError {
  constructor(problem) {
    super(problem.detail ?? 'stream limit reached', 409, problem);
    this.name = 'LimitReachedError';
    /** The first refusing limit: `account` for the account-wide one, else the plan rule's name. */
    this.rule = problem.rule ?? 'account';
    this.limit = problem.limit;
    this.active = problem.active;
    /**
     * The live streams in that limit's scope, oldest first: offer to stop
     * one, then `start({ terminate: [id] })`.
     */
    this.streams = problem.streams ?? [];
    /** Every refusing limit, each `{ rule, limit, active, streams }`. */
    this.conflicts = problem.conflicts ?? [
      { rule: this.rule, limit: this.limit, active: this.active, streams: this.streams },
    ];
  }
}

/**
 * 400 `missing-attribute`: a rule of the account's plan requires an
 * attribute (a tag, or `content_id`) that the start did not carry.
 */
export class MissingAttributeError extends StreamguardError {
  constructor(problem) {
    super(problem.detail ?? 'missing attribute', 400, problem);
    this.name = 'MissingAttributeError';
    /** The plan rule that requires the attribute. */
    this.rule = problem.rule;
    /** The tag name (or `content_id`) to send. */
    this.attribute = problem.attribute;
  }
}

/** A tiny event emitter (EventTarget's CustomEvent is missing from Node 18). */
class Emitter {
  #listeners = new Map();

  /** Calls `fn(detail)` on each `event`; returns a function that unsubscribes. */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /** Resolves with the next `event`'s detail. */
  once(event) {
    return new Promise((resolve) => {
      const off = this.on(event, (detail) => {
        off();
        resolve(detail);
      });
    });
  }

  emit(event, detail) {
    for (const fn of [...(this.#listeners.get(event) ?? [])]) {
      try {
        fn(detail);
      } catch (error) {
        // A listener's bug must not stop the heartbeat loop.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const wake = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    signal?.addEventListener('abort', wake, { once: true });
  });

/**
 * A stream id for a start that names none. The SDK always sends one, so a
 * start retried after a 503 — which the store may have granted before it
 * timed out — is the same stream (200) and never takes a second slot.
 */
function newStreamId() {
  const crypto = globalThis.crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto?.getRandomValues
    ? crypto.getRandomValues(new Uint8Array(16))
    : Uint8Array.from({ length: 16 }, () => Math.floor(Math.random() * 256));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Random bytes from Web Crypto (every browser; Node ≥ 19 globally, Node 18
 * through `node:crypto`). Never Math.random: a lease secret must not be
 * guessable.
 */
async function secureRandomBytes(length) {
  let crypto = globalThis.crypto;
  if (!crypto?.getRandomValues && typeof process !== 'undefined' && process.versions?.node) {
    const name = 'node:crypto'; // not resolved by bundlers targeting browsers
    crypto = (await import(name)).webcrypto;
  }
  if (!crypto?.getRandomValues) {
    throw new StreamguardError('no secure random source (Web Crypto) to make a lease secret', 0);
  }
  return crypto.getRandomValues(new Uint8Array(length));
}

/**
 * A lease secret: 16 random bytes (128 bits) as base64url, 22 characters.
 * Only the player that started a stream knows it, so another device that
 * learns the stream's id (listings and 409 bodies show it) cannot keep the
 * lease alive.
 */
async function newLeaseSecret() {
  const bytes = await secureRandomBytes(16);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Milliseconds to wait before retry number `attempt` (0-based). */
function retryDelay(reply, attempt, baseMs) {
  const asked = retryAfterMs(reply?.headers.get('retry-after'));
  if (asked !== undefined) {
    // Never earlier than the server asked (up to MAX_RETRY_AFTER_MS); a
    // little later, so that clients told the same do not all come back in
    // the same millisecond.
    return Math.min(asked, MAX_RETRY_AFTER_MS) * (1 + 0.2 * Math.random());
  }
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** attempt);
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

/** A `Retry-After` in milliseconds: delay-seconds or an HTTP-date (RFC 9110). */
function retryAfterMs(header) {
  if (header === null || header === undefined || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The body as JSON, or undefined when it is empty or not JSON. */
function parseJson(text) {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function problemError(status, problem) {
  const type = String(problem?.type ?? '');
  if (status === 409 && type.endsWith(LIMIT_REACHED)) return new LimitReachedError(problem);
  if (status === 400 && type.endsWith(MISSING_ATTRIBUTE)) return new MissingAttributeError(problem);
  const message = problem?.detail ?? problem?.title ?? `HTTP ${status}`;
  return new StreamguardError(message, status, problem);
}

/** Talks to one streamguard server on behalf of one account. */
export class StreamguardClient extends Emitter {
  #baseUrl;
  #userId;
  #tokenSource;
  /** Promise of the token in use (bearer mode); undefined until needed or after a 401. */
  #token;
  /** The last token the callback gave, for the synchronous stop on page unload. */
  #lastToken;
  #fetch;
  #retryBaseMs;
  #maxRetries;
  #sessions = new Set();
  /**
   * Lease secrets by stream id, from the first start of an id until its
   * session ends: a retried or repeated start of the id must send the same
   * secret (another one is 409 stream-id-conflict).
   */
  #secrets = new Map();
  #closed = false;
  #unloadHandler;

  /**
   * @param {object} options
   * @param {string} options.baseUrl where streamguard answers, e.g. `https://limits.example.com`
   * @param {string} [options.userId] header mode: the account, sent as `X-ID`
   * @param {() => Promise<string> | string} [options.token] bearer mode: returns a token;
   *   asked again whenever the server answers 401
   * @param {typeof fetch} [options.fetch]
   * @param {number} [options.maxRetries] retries of a start, stop or listing answered 429/500/502/503/504
   *   or not answered at all (default 5); heartbeats retry until the session ends
   * @param {number} [options.retryBaseMs] first backoff when no Retry-After is sent (default 250)
   * @param {boolean} [options.stopOnUnload] browsers: stop live sessions when the page
   *   goes away, with `fetch(..., { keepalive: true })` (default true)
   */
  constructor(options) {
    super();
    const { baseUrl, userId, token } = options ?? {};
    if (!baseUrl) throw new TypeError('baseUrl is required');
    if ((userId === undefined) === (token === undefined)) {
      throw new TypeError('give exactly one of userId (header mode) or token (bearer mode)');
    }
    this.#baseUrl = String(baseUrl).replace(/\/+$/, '');
    this.#userId = userId;
    this.#tokenSource = token;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#retryBaseMs = options.retryBaseMs ?? 250;
    this.#maxRetries = options.maxRetries ?? 5;
    if ((options.stopOnUnload ?? true) && typeof window !== 'undefined' && window.addEventListener) {
      // A page kept in the back/forward cache (`persisted`) may come back
      // and go on playing: its sessions are left to heartbeat or expire.
      this.#unloadHandler = (event) => {
        if (!event?.persisted) this.#stopAllOnUnload();
      };
      window.addEventListener('pagehide', this.#unloadHandler);
    }
  }

  /**
   * Starts playback. Resolves with a live {@link Session} that heartbeats by
   * itself; rejects with {@link LimitReachedError} when the account or a rule
   * of its plan is full, {@link MissingAttributeError} when a rule requires a
   * tag the start lacks.
   */
  async start({ streamId, deviceId, contentId, tags, terminate, leaseSecret } = {}) {
    const id = streamId ?? newStreamId();
    if (leaseSecret !== undefined) {
      this.#secrets.set(id, leaseSecret);
    } else if (!this.#secrets.has(id)) {
      const fresh = await newLeaseSecret();
      // Two starts of one id at once: the first to get here sets it.
      if (!this.#secrets.has(id)) this.#secrets.set(id, fresh);
    }
    const secret = this.#secrets.get(id);
    const body = { stream_id: id, lease_secret: secret };
    if (deviceId !== undefined) body.device_id = deviceId;
    if (contentId !== undefined) body.content_id = contentId;
    if (tags !== undefined && tags !== null) body.tags = { ...tags };
    if (terminate?.length) body.terminate = [...terminate];
    const reply = await this.request('POST', '/streams', { body, retries: this.#maxRetries });
    const answer = reply.json;
    if ((reply.status === 200 || reply.status === 201) && answer?.stream) {
      // A retried start of a stream this client already plays (200) is
      // that session, not a second one heartbeating the same stream.
      const playing = [...this.#sessions].find((s) => s.id === answer.stream.id && !s.ended);
      if (playing) return playing;
      const session = new Session(this, answer, secret);
      if (this.#closed) {
        // close() came while the start was on its way: no heartbeats.
        session.detach();
        return session;
      }
      this.#sessions.add(session);
      session.on('ended', () => {
        this.#sessions.delete(session);
        if (this.#secrets.get(session.id) === secret) this.#secrets.delete(session.id);
      });
      return session;
    }
    // Refused (4xx): no lease holds this secret, unless another start of
    // the id is playing. Without an answer (or with 5xx) the store may have
    // granted it: keep the secret for the next try.
    const playing = [...this.#sessions].some((s) => s.id === id && !s.ended);
    if (reply.status >= 400 && reply.status < 500 && !playing && this.#secrets.get(id) === secret) {
      this.#secrets.delete(id);
    }
    throw problemError(reply.status, answer);
  }

  /** The account's live streams: `{ user_id, limit, active, streams }`. */
  async streams() {
    const reply = await this.request('GET', '/streams', { retries: this.#maxRetries });
    if (reply.status !== 200) throw problemError(reply.status, reply.json);
    return reply.json;
  }

  /** Ends a stream of this account by id (204 also when it is already gone). */
  async stopStream(streamId) {
    const reply = await this.request('DELETE', `/streams/${encodeURIComponent(streamId)}`, {
      retries: this.#maxRetries,
    });
    if (reply.status !== 204) throw problemError(reply.status, reply.json);
  }

  /** Stops heartbeating every session and forgets the unload hook (does not stop streams). */
  close() {
    this.#closed = true;
    for (const session of [...this.#sessions]) session.detach();
    if (this.#unloadHandler) window.removeEventListener('pagehide', this.#unloadHandler);
  }

  /**
   * The token to send, asked for once however many requests need it at the
   * same time; a callback that fails is asked again next time.
   */
  #currentToken() {
    if (!this.#token) {
      const pending = Promise.resolve().then(() => this.#tokenSource());
      pending.then(
        (token) => {
          this.#lastToken = token;
        },
        () => {
          if (this.#token === pending) this.#token = undefined;
        },
      );
      this.#token = pending;
    }
    return this.#token;
  }

  /** The request's identity headers, and the token promise they used (bearer mode). */
  async #identity() {
    const headers = { accept: 'application/json' };
    if (this.#userId !== undefined) {
      headers['x-id'] = this.#userId;
      return { headers };
    }
    const token = this.#currentToken();
    headers.authorization = `Bearer ${await token}`;
    return { headers, token };
  }

  /**
   * One API call with the account's identity, answer read whole. Retries
   * transient answers (429, 500, 502, 503, 504; waiting at least
   * `Retry-After`) and calls that got no whole answer (no connection, or
   * one cut while the body arrived), `retries` times (`Infinity` until
   * `signal` aborts); asks for a new token once after a 401. Emits `retry`
   * with `{ method, path, status, attempt, delayMs }` before each wait.
   * Resolves with the last answer `{ status, headers, json }`; rejects with
   * a `StreamguardError` of status 0 only when no answer came or `signal`
   * aborted.
   * @internal
   */
  async request(method, path, { body, retries = 0, signal, headers: extra } = {}) {
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const { headers, token } = await this.#identity();
      Object.assign(headers, extra);
      if (body !== undefined) headers['content-type'] = 'application/json';
      let reply;
      let failure;
      try {
        const response = await this.#fetch(this.#baseUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal,
        });
        const text = await response.text();
        reply = { status: response.status, headers: response.headers, json: parseJson(text) };
      } catch (error) {
        failure = error;
      }
      if (signal?.aborted) throw new StreamguardError('aborted', 0);
      if (reply?.status === 401 && this.#tokenSource && !refreshed) {
        // The token expired or was revoked: ask for a new one, once (and
        // only once for all the requests that were refused with it).
        if (this.#token === token) this.#token = undefined;
        refreshed = true;
        attempt--;
        continue;
      }
      if (reply && !TRANSIENT.has(reply.status)) return reply;
      if (attempt >= retries) {
        if (reply) return reply;
        throw new StreamguardError(`no answer from ${this.#baseUrl}: ${failure?.message}`, 0);
      }
      const delayMs = retryDelay(reply, attempt, this.#retryBaseMs);
      this.emit('retry', { method, path, status: reply?.status ?? 0, attempt, delayMs });
      await sleep(delayMs, signal);
      if (signal?.aborted) throw new StreamguardError('aborted', 0);
    }
  }

  /** Fire-and-forget stop that outlives the page (`keepalive`). @internal */
  stopKeepalive(streamId) {
    const headers = {};
    if (this.#userId !== undefined) headers['x-id'] = this.#userId;
    else if (this.#lastToken !== undefined) headers.authorization = `Bearer ${this.#lastToken}`;
    return this.#fetch(`${this.#baseUrl}/streams/${encodeURIComponent(streamId)}`, {
      method: 'DELETE',
      headers,
      keepalive: true,
    }).catch(() => {});
  }

  #stopAllOnUnload() {
    for (const session of [...this.#sessions]) session.stopOnUnload();
  }
}

/**
 * A granted stream. Heartbeats every `heartbeat_interval_s` (a little early,
 * with jitter) until stopped or ended by the server.
 *
 * Events (`session.on(name, fn)`):
 * - `heartbeat` `(stream)`: the lease was renewed; `stream.expires_at` moved
 * - `resumed` `(stream)`: the server had forgotten the stream and re-admitted
 *   it from the grant the heartbeat carried; a renewal (`heartbeat` follows)
 * - `grant` `(grant | undefined)`: the signed grant changed
 * - `retry` `({ status, attempt, delayMs })`: a heartbeat got 429/500/502/503/504 or no whole answer and will be retried
 * - `ended` `({ reason })`: playback must stop; `reason` is the server's
 *   (`evicted`, `revoked`, `expired`, `replaced`, `stopped`), `unknown` on 404,
 *   `limit-reached` when a resume found no room (409; `error` is the
 *   LimitReachedError), `error` for an answer retrying cannot fix, or
 *   `stopped` after `session.stop()`
 */
export class Session extends Emitter {
  #client;
  #timer;
  /** Heartbeats in a row that could not be sent (the token callback failed). */
  #failures = 0;
  #abort = new AbortController();

  #leaseSecret;

  constructor(client, answer, leaseSecret) {
    super();
    this.#client = client;
    this.#leaseSecret = leaseSecret;
    /** The stream as the server last described it. */
    this.stream = answer.stream;
    this.id = answer.stream.id;
    /** Streams this start ended (`terminate`, evict-oldest). */
    this.evicted = answer.evicted ?? [];
    /** Streams this start replaced on the same device. */
    this.replaced = answer.replaced ?? [];
    /** The current signed grant (compact JWS), or undefined when the server signs none. */
    this.grant = answer.grant ?? undefined;
    /** True once the session ended; `endReason` says why, `endError` holds the error that ended it, if one did. */
    this.ended = false;
    this.endReason = undefined;
    this.endError = undefined;
    this.#schedule();
  }

  /**
   * The secret this stream was started with (sent on every heartbeat). Keep
   * it with the stream id to take the stream over after a page reload:
   * `start({ streamId, leaseSecret, … })` with the same attributes.
   */
  get leaseSecret() {
    return this.#leaseSecret;
  }

  /** Seconds between heartbeats, as the server advised. */
  get heartbeatIntervalS() {
    return this.stream.heartbeat_interval_s;
  }

  /** Stops playback: DELETE the stream, end the heartbeat loop, emit `ended`. */
  async stop() {
    if (this.ended) return;
    this.#end('stopped');
    await this.#client.stopStream(this.id);
  }

  /** Ends the heartbeat loop without telling the server (the lease then expires). */
  detach() {
    this.#end('detached');
  }

  /** @internal */
  stopOnUnload() {
    if (this.ended) return;
    this.#end('stopped');
    this.#client.stopKeepalive(this.id);
  }

  #schedule(soonerMs) {
    // Slightly before the interval, never after: a late heartbeat loses the slot.
    const intervalMs = this.stream.heartbeat_interval_s * 1000;
    const delayMs = Math.min(soonerMs ?? Infinity, intervalMs * (0.85 + 0.1 * Math.random()));
    this.#timer = setTimeout(() => this.#beat(), delayMs);
  }

  async #beat() {
    if (this.ended) return;
    const path = `/streams/${encodeURIComponent(this.id)}/heartbeat`;
    const offRetry = this.#client.on('retry', (detail) => {
      if (detail.path === path) this.emit('retry', detail);
    });
    let reply;
    try {
      // The secret proves this player started the lease; the latest grant
      // lets a server that forgot the stream re-admit it (resume).
      const headers = {};
      if (this.#leaseSecret !== undefined) headers['streamguard-lease-secret'] = this.#leaseSecret;
      if (this.grant !== undefined) headers['streamguard-grant'] = this.grant;
      reply = await this.#client.request('POST', path, {
        retries: Infinity,
        signal: this.#abort.signal,
        headers,
      });
    } catch (error) {
      // Stopped meanwhile (the abort), or the token callback failed
      // (transient answers and lost connections are retried inside
      // request()): try again at the next beat. If that never works, the
      // lease expires and a later answer says so.
      if (this.ended) return;
      this.emit('error', error);
      // Soon, not a whole interval later: a few intervals without a renewal
      // and the lease is gone (0.25 s, 0.5 s, 1 s … up to the interval).
      this.#schedule(250 * 2 ** this.#failures++);
      return;
    } finally {
      offRetry();
    }
    if (this.ended) return;
    this.#failures = 0;
    const answer = reply.json;
    if (reply.status === 200 && answer?.stream) {
      // `resumed`: the store had forgotten the stream and re-admitted it
      // from the grant; for playback it is a renewal like any other.
      this.stream = answer.stream;
      this.#setGrant(answer.grant ?? undefined);
      if (answer.resumed === true) this.emit('resumed', this.stream);
      this.emit('heartbeat', this.stream);
      this.#schedule();
    } else if (reply.status === 410) {
      this.#end(answer?.reason ?? 'ended');
    } else if (reply.status === 404) {
      this.#end('unknown');
    } else {
      const error = problemError(reply.status, answer);
      if (error instanceof LimitReachedError) {
        // A resume found the account full: playback must stop; the error
        // lists the streams the player may offer to stop.
        this.#end('limit-reached', error);
        return;
      }
      // 401 after a token refresh, 400...: the server will not renew this
      // lease, and retrying the same request cannot change that.
      this.emit('error', error);
      this.#end('error', error);
    }
  }

  #setGrant(grant) {
    if (grant === this.grant) return;
    this.grant = grant;
    this.emit('grant', grant);
  }

  #end(reason, error) {
    if (this.ended) return;
    this.ended = true;
    this.endReason = reason;
    this.endError = error;
    clearTimeout(this.#timer);
    this.#abort.abort();
    this.emit('ended', error === undefined ? { reason } : { reason, error });
  }
}
