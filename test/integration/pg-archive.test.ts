import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PgArchive } from '../../src/adapters/archive/pg-archive.js';
import type { ArchivedRunSummary, ResultRow } from '../../src/app/ports.js';
import { onCleanup } from '../helpers/cleanup.js';

/** The PostgreSQL archive on its own, against the machine's PostgreSQL, in a fresh schema. */
const PG_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function archive(schema = `pushq_t_${randomBytes(4).toString('hex')}`): PgArchive {
  const a = new PgArchive(`${PG_URL}?schema=${schema}`);
  onCleanup(async () => {
    await a.close();
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  });
  return a;
}

const run = (runId: string): ArchivedRunSummary => ({
  campaignId: 'c1',
  runId,
  status: 'completed',
  trigger: 'launch',
  createdAt: Date.UTC(2026, 11, 1),
  finishedAt: Date.UTC(2026, 11, 1, 1),
  counts: { total: 3000, pending: 0, inflight: 0, sent: 3000, failed: 0, unknown: 0, skipped: 0 },
  skippedBy: {},
});

async function* rows(n: number): AsyncGenerator<ResultRow> {
  for (let i = 0; i < n; i += 1) {
    yield { id: `u${i}\ttab\\back\nline "q"`, state: 'sent', attempts: 1, updatedAt: '2026-12-01T00:00:00.123Z', lastError: null };
  }
}

describe('the PostgreSQL archive', () => {
  it('keeps answering after readers stop half-way through runs (more of them than its pool has connections)', async () => {
    const a = archive();
    await a.write(run('main'), rows(3000));
    for (let i = 0; i < 6; i += 1) {
      for await (const row of a.rows('c1', 'main')) {
        expect(row.id).toBe('u0\ttab\\back\nline "q"');
        break;
      }
    }
    const answer = await Promise.race([
      a.find('c1', 'main', 'u2999\ttab\\back\nline "q"'),
      new Promise((resolve) => setTimeout(() => resolve('no answer within 5 s'), 5000)),
    ]);
    expect(answer).toMatchObject({ id: 'u2999\ttab\\back\nline "q"', state: 'sent' });
    let count = 0;
    for await (const _ of a.rows('c1', 'main')) count += 1;
    expect(count).toBe(3000);
  });

  it('upgrades an archive made before locales, receipts and fallback (migrations 2 to 4): old rows read as before, new rows keep their locale, delivery and provider', async () => {
    const schema = `pushq_t_${randomBytes(4).toString('hex')}`;
    const old = archive(schema);
    await old.write(run('main'), rows(10));
    await old.close();
    // As an earlier version left it: migration 1 only, no locale or delivery column.
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    await client.query(`ALTER TABLE "${schema}".run_results DROP COLUMN locale, DROP COLUMN delivery, DROP COLUMN provider`);
    await client.query(`DELETE FROM "${schema}".archive_migrations WHERE version IN (2, 3, 4)`);
    await client.end();
    const upgraded = archive(schema);
    const read: ResultRow[] = [];
    for await (const row of upgraded.rows('c1', 'main')) read.push(row);
    expect(read).toHaveLength(10);
    expect(read[0]).not.toHaveProperty('locale');
    expect(read[0]).not.toHaveProperty('delivery');
    expect(read[0]).not.toHaveProperty('provider');
    async function* withLocale(): AsyncGenerator<ResultRow> {
      yield { id: 'k', state: 'sent', locale: 'ko', delivery: 'delivered', provider: 'sms', attempts: 1, updatedAt: null, lastError: null };
    }
    await upgraded.write(run('o20261201T000000Z'), withLocale());
    expect(await upgraded.find('c1', 'o20261201T000000Z', 'k')).toEqual({
      id: 'k',
      state: 'sent',
      locale: 'ko',
      delivery: 'delivered',
      provider: 'sms',
      attempts: 1,
      updatedAt: null,
      lastError: null,
    });
  });
});
