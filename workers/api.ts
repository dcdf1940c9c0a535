// `npm run api`: the HTTP API (REST, Bull Board, metrics) only.
import { runMain } from '../src/wiring/main.js';

await runMain({ api: true, worker: false, embeddedRedis: false });
