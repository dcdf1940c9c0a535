// `npm run worker`: send workers and the supervisor; run as many as you like, anywhere that reaches Redis.
import { runMain } from '../src/wiring/main.js';

await runMain({ api: false, worker: true, embeddedRedis: false });
