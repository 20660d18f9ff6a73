// Starts the real streamguard binary (and, for the store-failure test, a
// throwaway redis-server) on free local ports. Shared with the console's
// browser tests in web/console/tests.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ADMIN_TOKEN = 'sdk-test-admin-token-0123456789';

let built;

/** `STREAMGUARD_BIN`, or the debug binary built here with the Redis store. */
export function binary() {
  if (process.env.STREAMGUARD_BIN) return path.resolve(process.env.STREAMGUARD_BIN);
  if (!built) {
    const cargo = spawnSync('cargo', ['build', '--quiet', '--features', 'redis', '--bin', 'streamguard'], {
      cwd: repoRoot,
      stdio: 'inherit',
    });
    if (cargo.status !== 0) throw new Error('cargo build --features redis --bin streamguard failed');
    built = path.join(repoRoot, 'target', 'debug', 'streamguard');
  }
  return built;
}

/** A port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `streamguard` with `args` (memory store, 3 s leases and the admin
 * token unless given) and waits for its "listening" log line.
 * `listen` pins the address, to restart a server on the same port.
 */
export async function startServer(args = [], { listen = '127.0.0.1:0' } = {}) {
  const defaults = [];
  if (!args.includes('--store')) defaults.push('--store', 'memory');
  if (!args.includes('--lease-ttl')) defaults.push('--lease-ttl', '3s');
  if (!args.includes('--admin-token')) defaults.push('--admin-token', ADMIN_TOKEN);
  const child = spawn(binary(), ['--listen', listen, ...defaults, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const logs = [];
  const lines = createInterface({ input: child.stdout });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`streamguard did not listen; logs:\n${logs.join('\n')}`)), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`streamguard exited with ${code}; logs:\n${logs.join('\n')}`));
    });
    lines.on('line', (line) => {
      logs.push(line);
      if (logs.length > 2000) logs.shift();
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.message === 'listening') {
        clearTimeout(timer);
        resolve(entry.addr);
      }
    });
  });
  const base = `http://${addr}`;
  return {
    base,
    port: Number(addr.split(':').pop()),
    logs,
    /** Calls the admin API; resolves with the Response. */
    admin(method, route, body) {
      return fetch(base + route, {
        method,
        headers: {
          authorization: `Bearer ${ADMIN_TOKEN}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    },
    /** Calls the player API as `user`. */
    as(user, method, route, body) {
      return fetch(base + route, {
        method,
        headers: { 'x-id': user, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function onPath(program) {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => existsSync(path.join(dir, program)));
}

/** A redis-server of its own on a free port, without persistence. */
export async function startRedis() {
  if (!onPath('redis-server')) {
    throw new Error("'redis-server' is missing; install it with: apt-get install -y redis-server");
  }
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sdk-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(port))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`redis-server on ${port} did not come up`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    /** Forgets every key, as a Redis restarted without persistence would. */
    flushAll: () => redisCommand(port, 'FLUSHALL'),
    /** Freezes the process: connections stay open and nothing answers. */
    pause: () => process.kill(child.pid, 'SIGSTOP'),
    resume: () => process.kill(child.pid, 'SIGCONT'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        process.kill(child.pid, 'SIGCONT');
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Sends one inline command; resolves with the first line of the reply. */
function redisCommand(port, command) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(5_000);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.once('data', (data) => {
      socket.destroy();
      const line = data.toString().split('\r\n')[0];
      if (line.startsWith('-')) reject(new Error(`redis ${command}: ${line}`));
      else resolve(line);
    });
    socket.once('error', reject);
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error(`redis ${command}: no answer`));
    });
  });
}

function redisAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Resolves when `emitter` emits `event` with a detail that `accept`s, or rejects after `ms`. */
export function waitFor(emitter, event, { ms = 10_000, accept = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (detail) => {
      if (!accept(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}
