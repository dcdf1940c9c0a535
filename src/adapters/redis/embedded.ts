import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { answersPing, RedisStartupError } from './connection.js';

/**
 * The one-machine default: `npm start` with no REDIS_URL and nothing on the
 * default port starts its own redis-server — persistent (AOF) and never
 * evicting, with its data under ./data — and stops it on exit.
 */
export function findRedisServer(path: string = process.env.PATH ?? ''): string | null {
  for (const dir of [...path.split(delimiter), '/usr/bin', '/usr/local/bin', '/usr/sbin']) {
    if (!dir) continue;
    const candidate = join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Starts a redis-server only when the operator left REDIS_URL unset and
 * nothing answers at the default address; null when Redis is already there
 * (or was configured explicitly).
 */
export async function startRedisIfAbsent(options: { urlDefaulted: boolean; defaultUrl: string; dataDir: string }): Promise<EmbeddedRedis | null> {
  if (!options.urlDefaulted || (await answersPing(options.defaultUrl))) return null;
  const url = new URL(options.defaultUrl);
  return startEmbeddedRedis({ port: Number(url.port || 6379), dataDir: options.dataDir });
}

export interface EmbeddedRedis {
  url: string;
  dataDir: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startEmbeddedRedis(options: { port: number; dataDir: string; binary?: string; readyTimeoutMs?: number }): Promise<EmbeddedRedis> {
  const binary = options.binary ?? findRedisServer();
  const url = `redis://127.0.0.1:${options.port}`;
  if (!binary) {
    throw new RedisStartupError(
      `nothing answers at ${url} and redis-server is not installed: install it (e.g. \`apt-get install redis-server\` or \`brew install redis\`) or set REDIS_URL to a running Redis.`,
    );
  }
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const child: ChildProcess = spawn(
    binary,
    [
      '--port',
      String(options.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dataDir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--maxmemory-policy',
      'noeviction',
      '--logfile',
      join(dataDir, 'redis.log'),
      '--daemonize',
      'no',
    ],
    { stdio: 'ignore' },
  );
  let exited: string | null = null;
  const exit = new Promise<void>((done) => {
    child.once('exit', (code, signal) => {
      exited = signal ?? `code ${code}`;
      done();
    });
    child.once('error', (err) => {
      exited = err.message;
      done();
    });
  });
  const deadline = Date.now() + (options.readyTimeoutMs ?? 10_000);
  while (!(await answersPing(url, 500))) {
    if (exited !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new RedisStartupError(`started ${binary} for ${url} but it did not come up (${exited ?? 'timed out'}); see ${join(dataDir, 'redis.log')}`);
    }
    await sleep(50);
  }
  return {
    url,
    dataDir,
    pid: child.pid!,
    async stop() {
      if (exited === null) child.kill('SIGTERM');
      await exit;
    },
  };
}
