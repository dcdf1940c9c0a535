import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A real pushq process (node + tsx, as `npm start` runs it), with its output kept for assertions. */
export class PushqProcess {
  private out = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly proc: ChildProcess) {
    proc.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get output(): string {
    return this.out;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async waitForOutput(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return waitFor(() => pattern.exec(this.out) ?? (this.alive ? undefined : Promise.reject(new Error(`process exited: ${this.out}`))), {
      timeoutMs,
      what: `output ${pattern}`,
    });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) this.proc.kill(signal);
    return this.exited;
  }
}

/** Where a process runs from (another checkout, for a benchmark's baseline) and extra node flags (a CPU profile). */
export interface SpawnOptions {
  root?: string;
  nodeArgs?: string[];
}

export function spawnPushq(entry: 'start' | 'api' | 'worker', env: Record<string, string | undefined>, options: SpawnOptions = {}): PushqProcess {
  const merged: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', `workers/${entry}.ts`], {
    cwd: options.root ?? REPO_ROOT,
    env: merged,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new PushqProcess(proc);
}

/** Waits for `pattern` in a new process's output; a process that never prints it is killed, not left behind. */
async function started(process: PushqProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  try {
    return await process.waitForOutput(pattern);
  } catch (err) {
    await process.kill('SIGKILL');
    throw err;
  }
}

/** Starts an API process on a free port and returns its base URL once it listens. */
export async function startApiProcess(env: Record<string, string | undefined>, options: SpawnOptions = {}): Promise<{ process: PushqProcess; url: string }> {
  const process = spawnPushq('api', { PORT: '0', ...env }, options);
  const match = await started(process, /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"API listening"/);
  return { process, url: match[1]! };
}

export async function startWorkerProcess(env: Record<string, string | undefined>, options: SpawnOptions = {}): Promise<PushqProcess> {
  const process = spawnPushq('worker', env, options);
  await started(process, /"msg":"worker started"/);
  return process;
}
