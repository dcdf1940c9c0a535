import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { waitFor } from './wait.js';

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const SHIM_SOURCE = fileURLToPath(new URL('./native/clock-shift.c', import.meta.url));
let shimPath: string | null | undefined;

/**
 * The LD_PRELOAD library that lets a test step its own redis-server's wall
 * clock (see native/clock-shift.c), built with the C compiler on first use;
 * null where there is none.
 */
export function clockShiftLibrary(): string | null {
  if (shimPath !== undefined) return shimPath;
  const out = join(mkdtempSync(join(tmpdir(), 'pushq-clock-')), 'clock-shift.so');
  const built = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', out, SHIM_SOURCE], { stdio: 'ignore', timeout: 60_000 });
  shimPath = !built.error && built.status === 0 && existsSync(out) ? out : null;
  return shimPath;
}

export interface OwnRedisOptions {
  /** Extra redis-server arguments (default: no AOF). */
  args?: string[];
  /** Replicate another own Redis. */
  replicaOf?: OwnRedis;
  /** Start under the clock-shift library, so `shiftClock` can step its wall clock. */
  clockShift?: boolean;
}

/**
 * A redis-server of the test's own, on a free port, for tests that kill,
 * freeze, restart, replicate or step the clock of Redis without touching the
 * shared one.
 */
export class OwnRedis {
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'pushq-redis-'));
  private readonly shiftFile: string | null;

  constructor(
    readonly port: number,
    private readonly options: OwnRedisOptions,
  ) {
    this.shiftFile = options.clockShift ? join(this.dir, 'clock-shift.bin') : null;
    if (this.shiftFile) writeFileSync(this.shiftFile, Buffer.alloc(8));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', ...(this.options.args ?? ['--appendonly', 'no'])];
    if (this.options.replicaOf) args.push('--replicaof', '127.0.0.1', String(this.options.replicaOf.port));
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (this.shiftFile) {
      const library = clockShiftLibrary();
      if (!library) throw new Error('no C compiler to build the clock-shift library');
      Object.assign(env, { LD_PRELOAD: library, CLOCK_SHIFT_FILE: this.shiftFile });
    }
    this.child = spawn('redis-server', args, { stdio: 'ignore', env });
    await waitFor(
      async () => {
        const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
        probe.on('error', () => undefined);
        try {
          await probe.connect();
          // Not ready while it is still loading its AOF.
          return (await probe.ping()) === 'PONG';
        } finally {
          probe.disconnect();
        }
      },
      { what: `redis-server on ${this.port}` },
    );
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    if (signal === 'SIGKILL') child.kill('SIGCONT');
    child.kill(signal);
    await exited;
  }

  /** SIGSTOP: the process freezes with its connections open (a full resync, a stuck disk, a paused VM). */
  freeze(): void {
    this.child?.kill('SIGSTOP');
  }

  thaw(): void {
    this.child?.kill('SIGCONT');
  }

  /** Steps this server's wall clock to real time + `ms` (needs `clockShift`). */
  shiftClock(ms: number): void {
    if (!this.shiftFile) throw new Error('this Redis was not started with clockShift');
    const bytes = Buffer.alloc(8);
    bytes.writeBigInt64LE(BigInt(Math.round(ms)));
    const fd = openSync(this.shiftFile, 'r+');
    try {
      writeSync(fd, bytes, 0, 8, 0);
    } finally {
      closeSync(fd);
    }
  }

  /** Replicas this master has connected and in sync (state=online). */
  async onlineReplicas(): Promise<number> {
    const redis = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      return ((await redis.info('replication')).match(/^slave\d+:.*state=online/gm) ?? []).length;
    } finally {
      redis.disconnect();
    }
  }
}

export async function startOwnRedis(args: string[] | OwnRedisOptions = ['--appendonly', 'no']): Promise<OwnRedis> {
  const options = Array.isArray(args) ? { args } : args;
  const redis = new OwnRedis(await freePort(), options);
  await redis.start();
  return redis;
}
