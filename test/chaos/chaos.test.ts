import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/processes.js';

/**
 * The CI variant of `npm run chaos`: 60 s of seeded faults against real
 * processes, a new seed each run (printed; CHAOS_SEED replays one), run as
 * `npm run chaos` is, in a process of its own.
 */
const seed = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);

describe('the nemesis', () => {
  it(`finds nothing in 60 s of faults (seed ${seed})`, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/chaos/run.ts', '--seed', String(seed), '--minutes', '1'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // A process group of its own: a run past its deadline is killed with every process it started.
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // Its own deadline, below the test's, so that a run that never ends is killed and its output shown.
    const deadline = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 390_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(deadline);
    console.info(out);
    expect(code, `the checker found something (or the run never ended); replay with: npm run chaos -- --seed ${seed} --minutes 1\n${out.slice(-3000)}`).toBe(0);
  }, 420_000);
});
