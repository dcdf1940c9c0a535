// `npm start`: API + workers + supervisor in one process, the one-machine default.
import { runMain } from '../src/wiring/main.js';

await runMain({ api: true, worker: true, embeddedRedis: true });
