// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The layer rule, kept by the machine: src/domain is pure rules, src/app
 * the use cases against the ports they declare. Neither may import an
 * adapter, the wiring, or a driver or framework (see ../shared/STYLE.md).
 */
// zod is allowed: the domain declares what valid input is.
const drivers = [
  'bullmq',
  'ioredis',
  'express',
  'express/*',
  'undici',
  '@bull-board/*',
  'prom-client',
  'pino',
  'helmet',
  'google-auth-library',
  'cluster-key-slot',
  'csv-parse',
  'csv-parse/*',
  'pg',
  'pg-copy-streams',
  'standardwebhooks',
  'node:http',
  'node:http2',
  'node:net',
];
const layerRule = (layer, extra = []) => ({
  files: [`src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          {
            group: ['**/adapters/**', '**/wiring/**', '**/config.js', '**/logger.js', ...extra],
            message: `src/${layer} may not import adapters, wiring or configuration: declare a port in src/app/ports.ts`,
          },
          { group: drivers, message: `src/${layer} may not import a driver or framework: that belongs in an adapter` },
        ],
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['node_modules/**', 'data/**', 'dist/**', 'coverage/**', '.bench/**', '.artifacts/**', 'src/adapters/http/page/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
        AbortSignal: 'readonly',
        AbortController: 'readonly',
        NodeJS: 'readonly',
        TextDecoder: 'readonly',
        TextEncoder: 'readonly',
        structuredClone: 'readonly',
        queueMicrotask: 'readonly',
        setImmediate: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      // `let x; server = create(() => x.handle()); x = new X(server)`: a closure reads it before it is assigned.
      'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }],
    },
  },
  {
    // Measurements initialise what their finally blocks report even when a run fails part-way.
    files: ['bench/**/*.ts'],
    rules: { 'no-useless-assignment': 'off' },
  },
  layerRule('domain', ['**/app/**']),
  layerRule('app'),
  {
    files: ['bin/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly' } },
  },
);
