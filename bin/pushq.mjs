#!/usr/bin/env node
// The pushq command line: `npx pushq help`. Runs the TypeScript sources through tsx, like the services.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
