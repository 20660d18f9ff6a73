// Type declarations of the streamguard player SDK (src/index.js).
// Checked against a typed usage example by test/types.test.js.

/** A live stream as the server describes it; times are RFC 3339 UTC. */
export interface Stream {
  id: string;
  user_id: string;
  device_id?: string;
  content_id?: string;
  /** The attributes the start carried (absent when it carried none). */
  tags?: Tags;
  started_at: string;
  expires_at: string;
  heartbeat_interval_s: number;
}

/**
 * Stream attributes that plan rules count by: at most 8, names 1–32
 * characters of `a-z 0-9 _`, values ids (1–128 characters of
 * `A-Z a-z 0-9 . _ : @ -`), e.g. `{ channel: 'eurosport', quality: 'uhd' }`.
 */
export type Tags = Record<string, string>;

/** One limit that refused a start: the account's, or a rule of its plan. */
export interface Conflict {
  /** The rule's name in the account's plan; `account` for the account-wide limit. */
  rule: string;
  limit: number;
  /** Live streams that count against it. */
  active: number;
  /** Those streams, oldest first. */
  streams: Stream[];
}

/** An RFC 9457 problem body, with the extension members streamguard adds. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  reason?: string;
  [member: string]: unknown;
}

/** `GET /streams`. */
export interface StreamsAnswer {
  user_id: string;
  limit: number;
  active: number;
  streams: Stream[];
}

/** Why a session ended: the server's tombstone reason, or the SDK's own. */
export type EndReason =
  | 'stopped'
  | 'expired'
  | 'evicted'
  | 'replaced'
  | 'revoked'
  | 'unknown'
  | 'limit-reached'
  | 'detached'
  | 'error'
  | (string & {});

export interface RetryDetail {
  method: string;
  path: string;
  /** 429, 500, 502, 503 or 504, or 0 when no whole answer came. */
  status: number;
  attempt: number;
  delayMs: number;
}

interface EmitterOf<Events> {
  /** Calls `listener` on each `event`; returns a function that unsubscribes. */
  on<K extends keyof Events>(event: K, listener: (detail: Events[K]) => void): () => void;
  off<K extends keyof Events>(event: K, listener: (detail: Events[K]) => void): void;
  /** Resolves with the next `event`'s detail. */
  once<K extends keyof Events>(event: K): Promise<Events[K]>;
}

export interface SessionEvents {
  /** The lease was renewed; `expires_at` moved. */
  heartbeat: Stream;
  /**
   * The server had forgotten the stream (a store that lost its data) and
   * re-admitted it from the grant the heartbeat carried. A renewal for
   * playback: `heartbeat` follows.
   */
  resumed: Stream;
  /** The signed grant changed (undefined when the server stopped sending one). */
  grant: string | undefined;
  /** A heartbeat was answered 429/500/502/503/504 (or not at all) and will be retried. */
  retry: RetryDetail;
  /**
   * Playback must stop. `error` is set for reasons `limit-reached` (a
   * LimitReachedError: a resume found the account full; offer to stop one
   * of its streams) and `error`.
   */
  ended: { reason: EndReason; error?: StreamguardError };
  /**
   * A heartbeat failed: the token callback threw (the loop tries again at
   * the next beat), or the answer was one retrying cannot fix (a
   * StreamguardError; `ended` with reason `error` follows).
   */
  error: Error;
}

export interface ClientEvents {
  /** Any request of this client will be retried after `delayMs`. */
  retry: RetryDetail;
}

interface ClientOptionsBase {
  /** Where streamguard answers, e.g. `https://limits.example.com`. */
  baseUrl: string;
  fetch?: typeof fetch;
  /** Retries of a start, stop or listing answered 429/500/502/503/504 or not answered (default 5). Heartbeats retry until the session ends. */
  maxRetries?: number;
  /** First backoff when the server sends no Retry-After, in ms (default 250). */
  retryBaseMs?: number;
  /** Browsers: stop live sessions on `pagehide` with a keepalive fetch (default true). */
  stopOnUnload?: boolean;
}

/** Header mode: the account travels in `X-ID` (behind a trusted gateway). */
export interface HeaderIdentity extends ClientOptionsBase {
  userId: string;
  token?: never;
}

/** Bearer mode: `token` is called for a token, and again after any 401. */
export interface TokenIdentity extends ClientOptionsBase {
  token: () => Promise<string> | string;
  userId?: never;
}

export type ClientOptions = HeaderIdentity | TokenIdentity;

export interface StartOptions {
  /**
   * The stream's id; the SDK makes one (a UUID) when omitted. Either way a
   * start retried after a 503 is idempotent: the same stream, not a second slot.
   */
  streamId?: string;
  /** A device holds one slot: starting again from it replaces its old stream. */
  deviceId?: string;
  contentId?: string;
  /**
   * Attributes for the plan's rules (channel, quality…); fixed for the
   * stream's life. A rule may require one: see MissingAttributeError.
   */
  tags?: Tags;
  /** Streams of this account to end in the same step ("watch here, stop the TV"). */
  terminate?: string[];
  /**
   * The lease secret to start with (22–128 characters of `A-Z a-z 0-9 - _`).
   * The SDK makes one (128 random bits) when omitted; give the one a
   * previous session had (`session.leaseSecret`) with its `streamId` to take
   * that stream over, e.g. after a page reload.
   */
  leaseSecret?: string;
}

export class StreamguardError extends Error {
  constructor(message: string, status: number, problem?: Problem);
  /** HTTP status; 0 when no answer came. */
  readonly status: number;
  readonly problem: Problem | undefined;
  /** The problem's `type` URI. */
  readonly type: string | undefined;
}

/** 409 `stream-limit-reached`: the account, or a rule of its plan, allows no more streams. */
export class LimitReachedError extends StreamguardError {
  constructor(
    problem: Problem & { rule?: string; limit: number; active: number; streams?: Stream[]; conflicts?: Conflict[] },
  );
  /** The first refusing limit: `account`, or the name of a rule of the account's plan. */
  readonly rule: string;
  /** That limit's maximum. */
  readonly limit: number;
  /** Live streams that count against it. */
  readonly active: number;
  /** The live streams in that limit's scope, oldest first, to offer "stop playback on …". */
  readonly streams: Stream[];
  /** Every refusing limit (the first one included). */
  readonly conflicts: Conflict[];
}

/** 400 `missing-attribute`: a rule of the account's plan requires an attribute the start lacks. */
export class MissingAttributeError extends StreamguardError {
  constructor(problem: Problem & { rule: string; attribute: string });
  /** The rule that requires it. */
  readonly rule: string;
  /** The tag name (or `content_id`) to send. */
  readonly attribute: string;
}

export class StreamguardClient implements EmitterOf<ClientEvents> {
  constructor(options: ClientOptions);
  /**
   * Starts playback; rejects with LimitReachedError when the account or a
   * rule of its plan is full, MissingAttributeError when a rule requires a
   * tag the start lacks.
   */
  start(options?: StartOptions): Promise<Session>;
  /** The account's live streams. */
  streams(): Promise<StreamsAnswer>;
  /** Ends one of the account's streams by id. */
  stopStream(streamId: string): Promise<void>;
  /** Ends every session's heartbeat loop (without stopping the streams) and the unload hook. */
  close(): void;
  on<K extends keyof ClientEvents>(event: K, listener: (detail: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(event: K, listener: (detail: ClientEvents[K]) => void): void;
  once<K extends keyof ClientEvents>(event: K): Promise<ClientEvents[K]>;
}

export class Session implements EmitterOf<SessionEvents> {
  private constructor();
  readonly id: string;
  /** The stream as last described by the server (updated on every heartbeat). */
  readonly stream: Stream;
  /** Streams this start ended by eviction (`terminate`, evict-oldest). */
  readonly evicted: string[];
  /** Streams this start replaced on the same device. */
  readonly replaced: string[];
  /** The current signed grant (compact JWS), or undefined when the server signs none. */
  readonly grant: string | undefined;
  readonly ended: boolean;
  readonly endReason: EndReason | undefined;
  /** The error that ended the session (reasons `limit-reached` and `error`). */
  readonly endError: StreamguardError | undefined;
  /** The secret the lease was started with; sent on every heartbeat, never shown by the server. */
  readonly leaseSecret: string;
  readonly heartbeatIntervalS: number;
  /** DELETE the stream and end the heartbeat loop; emits `ended` with `stopped`. */
  stop(): Promise<void>;
  /** End the heartbeat loop without telling the server; the lease expires by itself. */
  detach(): void;
  on<K extends keyof SessionEvents>(event: K, listener: (detail: SessionEvents[K]) => void): () => void;
  off<K extends keyof SessionEvents>(event: K, listener: (detail: SessionEvents[K]) => void): void;
  once<K extends keyof SessionEvents>(event: K): Promise<SessionEvents[K]>;
}
