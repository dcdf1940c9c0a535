import { afterEach } from 'vitest';
import { runCleanups } from './helpers/cleanup.js';

// Every test's resources (stacks, harnesses, Redis connections, servers) go away after it.
afterEach(runCleanups);
