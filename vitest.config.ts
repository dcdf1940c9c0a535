import { defineConfig } from 'vitest/config';

/**
 * Tests that time a guarantee on this machine ("a campaign finishes within 45 s
 * while a worker is SIGKILLed every 2 s") run after everything else, alone:
 * next to the chaos test on two cores they measure the other test, not pushq.
 */
const timed = ['test/e2e/recovery.test.ts', 'test/e2e/pace-share.test.ts'];

export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores here: end-to-end tests spawn several processes each.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: timed, sequence: { groupOrder: 0 } } },
      // One file at a time: each measures pushq alone.
      { extends: true, test: { name: 'timed', include: timed, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
