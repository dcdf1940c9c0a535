import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { ArchivedRunSummary, ArchiveManifest, ResultRow, ResultsArchive } from '../../app/ports.js';
import { ndjsonChunks } from './ndjson.js';

/** `postgres://…?schema=name`: the schema the archive's tables live in (default `pushq`), taken out of the URL pg sees. */
export function parseArchiveUrl(url: string): { connectionString: string; schema: string } {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get('schema') ?? 'pushq';
  parsed.searchParams.delete('schema');
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw new Error(`ARCHIVE_URL schema ${JSON.stringify(schema)} is not a plain identifier`);
  return { connectionString: parsed.toString(), schema };
}

/** One field of COPY's text format: backslash, tab, newline and carriage return escaped; null as \N. */
function copyField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '\\N';
  return String(value).replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

const UNESCAPE: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

function fromCopyField(field: string): string | null {
  if (field === '\\N') return null;
  return field.replace(
    /\\([bfnrtv\\]|[0-7]{1,3}|x[0-9a-fA-F]{1,2})/g,
    (_, e: string) => UNESCAPE[e] ?? String.fromCharCode(e[0] === 'x' ? parseInt(e.slice(1), 16) : parseInt(e, 8)),
  );
}

const COLUMNS =
  'run_created_at, campaign_id, run_id, position, recipient_id, state, attempts, reason, reason_detail, error_code, error_message, error_at, updated_at, locale, delivery, provider';

const ISO = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const READ_COLUMNS = `recipient_id, state, attempts, reason, reason_detail, error_code, error_message, ${ISO('error_at')}, ${ISO('updated_at')}, locale, delivery, provider`;

/** A row as the results export writes it, with its keys in the same order (so the NDJSON, and its SHA-256, are the same bytes). */
function rowOf(f: Array<string | null>): ResultRow {
  const [id, state, attempts, reason, reasonDetail, code, message, errorAt, updatedAt, locale, delivery, provider] = f;
  return {
    id: id!,
    state: state!,
    ...(reason !== null ? { reason: reason! } : {}),
    ...(reasonDetail !== null ? { reasonDetail: reasonDetail! } : {}),
    ...(locale !== null && locale !== undefined ? { locale } : {}),
    ...(delivery === 'delivered' || delivery === 'undelivered' ? { delivery } : {}),
    ...(provider !== null && provider !== undefined ? { provider } : {}),
    attempts: Number(attempts),
    updatedAt: updatedAt ?? null,
    lastError: code !== null ? { code: code!, message: message ?? '', at: errorAt ?? null } : null,
  };
}

/** The month partition a run's rows go in (by the run's start, UTC). */
function monthOf(ms: number): { name: string; from: string; to: string } {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const first = (year: number, month: number) => new Date(Date.UTC(year, month, 1)).toISOString().slice(0, 10);
  return { name: `run_results_y${y}m${String(m + 1).padStart(2, '0')}`, from: first(y, m), to: first(y, m + 1) };
}

/**
 * The archive in PostgreSQL: `runs` (one row per archived run: its summary,
 * count and SHA-256) and `run_results` (one row per recipient, partitioned
 * by the month the run started, so old months can be detached or dropped
 * whole). A run is written in one transaction — its old rows deleted, the
 * new ones streamed in with `COPY … FROM STDIN`, the row count checked, the
 * run's row upserted — so a crash leaves the run wholly in or wholly out,
 * and writing it again replaces it.
 */
export class PgArchive implements ResultsArchive {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private readonly s: string;
  private ready: Promise<void> | null = null;

  constructor(url: string) {
    const { connectionString, schema } = parseArchiveUrl(url);
    this.pool = new pg.Pool({ connectionString, max: 4 });
    this.pool.on('error', () => undefined);
    // Never wait for ever: on a lock held by a writer that died (its transaction is aborted by the server once it
    // notices), or in a transaction whose client died (the server ends it after a minute).
    this.pool.on('connect', (client) => {
      client.query(`SET lock_timeout = '60s'; SET idle_in_transaction_session_timeout = '60s'`).catch(() => undefined);
    });
    this.s = `"${schema}"`;
  }

  /** The migration: creates the schema and tables once (under an advisory lock, so processes starting together do not race). */
  migrate(): Promise<void> {
    this.ready ??= this.transaction(async (c) => {
      await c.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`pushq-archive:${this.s}`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.s}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.s}.archive_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const { rows: applied } = await c.query<{ version: number }>(`SELECT version FROM ${this.s}.archive_migrations`);
      const done = new Set(applied.map((r) => Number(r.version)));
      if (!done.has(1)) await this.createTables(c);
      if (!done.has(2)) {
        // The locale variant each recipient was sent in (personalised messages).
        await c.query(`ALTER TABLE ${this.s}.run_results ADD COLUMN IF NOT EXISTS locale text`);
        await c.query(`INSERT INTO ${this.s}.archive_migrations (version) VALUES (2)`);
      }
      if (!done.has(3)) {
        // What a provider's receipt said of a sent recipient (delivered, undelivered).
        await c.query(`ALTER TABLE ${this.s}.run_results ADD COLUMN IF NOT EXISTS delivery text`);
        await c.query(`INSERT INTO ${this.s}.archive_migrations (version) VALUES (3)`);
      }
      if (!done.has(4)) {
        // The provider of the leg a recipient ended on (channel fallback).
        await c.query(`ALTER TABLE ${this.s}.run_results ADD COLUMN IF NOT EXISTS provider text`);
        await c.query(`INSERT INTO ${this.s}.archive_migrations (version) VALUES (4)`);
      }
    }).catch((err: unknown) => {
      this.ready = null;
      throw err;
    });
    return this.ready;
  }

  private async createTables(c: pg.PoolClient): Promise<void> {
    {
      await c.query(`CREATE TABLE ${this.s}.runs (
        campaign_id text NOT NULL, run_id text NOT NULL, run_created_at timestamptz NOT NULL,
        summary jsonb NOT NULL, count integer NOT NULL, sha256 text NOT NULL, archived_at timestamptz NOT NULL,
        PRIMARY KEY (campaign_id, run_id))`);
      await c.query(`CREATE TABLE ${this.s}.run_results (
        run_created_at timestamptz NOT NULL, campaign_id text NOT NULL, run_id text NOT NULL, position integer NOT NULL,
        recipient_id text NOT NULL, state text NOT NULL, attempts integer NOT NULL, reason text, reason_detail text,
        error_code text, error_message text, error_at timestamptz, updated_at timestamptz,
        PRIMARY KEY (campaign_id, run_id, position, run_created_at)) PARTITION BY RANGE (run_created_at)`);
      await c.query(`CREATE INDEX ON ${this.s}.run_results (campaign_id, run_id, recipient_id)`);
      await c.query(`INSERT INTO ${this.s}.archive_migrations (version) VALUES (1)`);
    }
  }

  private async transaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async write(run: ArchivedRunSummary, rows: AsyncIterable<ResultRow>): Promise<ArchiveManifest> {
    await this.migrate();
    const createdAt = new Date(run.createdAt).toISOString();
    const key = [createdAt, run.campaignId, run.runId];
    const archivedAt = Date.now();
    const manifest = await this.transaction(async (c) => {
      const month = monthOf(run.createdAt);
      await c.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`pushq-archive:${this.s}:${month.name}`]);
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${this.s}.${month.name} PARTITION OF ${this.s}.run_results FOR VALUES FROM ('${month.from}') TO ('${month.to}')`,
      );
      await c.query(`DELETE FROM ${this.s}.run_results WHERE run_created_at = $1 AND campaign_id = $2 AND run_id = $3`, key);
      const prefix = key.map(copyField).join('\t');
      const body = ndjsonChunks(
        rows,
        (row, position) =>
          [
            prefix,
            position,
            copyField(row.id),
            copyField(row.state),
            row.attempts,
            copyField(row.reason),
            copyField(row.reasonDetail),
            copyField(row.lastError?.code),
            copyField(row.lastError?.message),
            copyField(row.lastError?.at),
            copyField(row.updatedAt),
            copyField(row.locale),
            copyField(row.delivery),
            copyField(row.provider),
          ].join('\t') + '\n',
      );
      await pipeline(Readable.from(body.chunks), c.query(copyFrom(`COPY ${this.s}.run_results (${COLUMNS}) FROM STDIN`)));
      const written = body.digest();
      const counted = await c.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${this.s}.run_results WHERE run_created_at = $1 AND campaign_id = $2 AND run_id = $3`,
        key,
      );
      if (Number(counted.rows[0]!.n) !== written.count) {
        throw new Error(
          `archive of run ${run.runId} of campaign ${run.campaignId}: ${counted.rows[0]!.n} rows in PostgreSQL, not the ${written.count} written`,
        );
      }
      const m: ArchiveManifest = { run, count: written.count, sha256: written.sha256, archivedAt };
      await c.query(
        `INSERT INTO ${this.s}.runs (campaign_id, run_id, run_created_at, summary, count, sha256, archived_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (campaign_id, run_id) DO UPDATE SET run_created_at = EXCLUDED.run_created_at, summary = EXCLUDED.summary,
           count = EXCLUDED.count, sha256 = EXCLUDED.sha256, archived_at = EXCLUDED.archived_at`,
        [run.campaignId, run.runId, createdAt, JSON.stringify(run), m.count, m.sha256, new Date(archivedAt).toISOString()],
      );
      return m;
    });
    // Committed: the count again, as any other reader will see it.
    const { rows: check } = await this.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${this.s}.run_results WHERE run_created_at = $1 AND campaign_id = $2 AND run_id = $3`,
      key,
    );
    if (Number(check[0]!.n) !== manifest.count) throw new Error(`archive of run ${run.runId}: ${check[0]!.n} rows committed, not ${manifest.count}`);
    return manifest;
  }

  async manifest(campaignId: string, runId: string): Promise<ArchiveManifest | null> {
    await this.migrate();
    const { rows } = await this.pool.query<{ summary: ArchivedRunSummary; count: number; sha256: string; archived_at: Date }>(
      `SELECT summary, count, sha256, archived_at FROM ${this.s}.runs WHERE campaign_id = $1 AND run_id = $2`,
      [campaignId, runId],
    );
    const row = rows[0];
    return row ? { run: row.summary, count: row.count, sha256: row.sha256, archivedAt: row.archived_at.getTime() } : null;
  }

  async *rows(campaignId: string, runId: string): AsyncGenerator<ResultRow> {
    const manifest = await this.manifest(campaignId, runId);
    if (!manifest) throw new Error(`run ${runId} of campaign ${campaignId} is not in the archive`);
    const client = await this.pool.connect();
    try {
      const createdAt = new Date(manifest.run.createdAt).toISOString();
      const sql = `COPY (SELECT ${READ_COLUMNS} FROM ${this.s}.run_results WHERE run_created_at = '${createdAt}' AND campaign_id = ${literal(campaignId)} AND run_id = ${literal(runId)} ORDER BY position) TO STDOUT`;
      const lines = createInterface({ input: client.query(copyTo(sql)), crlfDelay: Infinity });
      for await (const line of lines) if (line) yield rowOf(line.split('\t').map(fromCopyField));
    } finally {
      // Also when the reader stopped half-way (a page of failures): the connection stays usable (tested).
      client.release();
    }
  }

  async find(campaignId: string, runId: string, recipientId: string): Promise<ResultRow | null> {
    await this.migrate();
    const config: pg.QueryArrayConfig = {
      text: `SELECT ${READ_COLUMNS} FROM ${this.s}.run_results WHERE campaign_id = $1 AND run_id = $2 AND recipient_id = $3 LIMIT 1`,
      values: [campaignId, runId, recipientId],
      rowMode: 'array',
    };
    const row = (await this.pool.query(config)).rows[0] as Array<string | number | null> | undefined;
    return row ? rowOf(row.map((v) => (v === null ? null : String(v)))) : null;
  }

  async purge(campaignId: string): Promise<number> {
    await this.migrate();
    return this.transaction(async (c) => {
      await c.query(`DELETE FROM ${this.s}.run_results WHERE campaign_id = $1`, [campaignId]);
      return (await c.query(`DELETE FROM ${this.s}.runs WHERE campaign_id = $1`, [campaignId])).rowCount ?? 0;
    });
  }

  private closing: Promise<void> | null = null;

  /** Ends the pool; closing twice is closing once. */
  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
}

/** A string as an SQL literal (COPY takes no parameters). */
function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
