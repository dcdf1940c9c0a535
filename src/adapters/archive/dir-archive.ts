import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import type { ArchivedRunSummary, ArchiveManifest, ResultRow, ResultsArchive } from '../../app/ports.js';
import { ndjsonChunks } from './ndjson.js';

/** Names the product makes (ULIDs, `main`, occurrence and retry ids): nothing that could climb out of the directory. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

function safe(name: string): string {
  if (!SAFE_NAME.test(name)) throw new Error(`${JSON.stringify(name)} cannot be a file name in the archive`);
  return name;
}

function missing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** fsync of a directory, so a rename in it survives a power cut. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `source` to `path` through a temporary file: written, fsynced, renamed, the directory fsynced. */
async function writeDurably(path: string, dir: string, source: Readable): Promise<void> {
  const temporary = `${path}.${randomUUID()}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    for await (const chunk of source as AsyncIterable<Buffer | string>) await handle.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
  await handle.close();
  await rename(temporary, path);
  await syncDir(dir);
}

/**
 * The default archive: a directory, one folder per campaign, per run a gzip
 * NDJSON file (`<run>.ndjson.gz`, the rows exactly as the results export
 * writes them) and a manifest (`<run>.manifest.json`: the run's summary, the
 * count and SHA-256 of the NDJSON). The data file is written to a temporary
 * name, fsynced, renamed and read back whole before the manifest is written
 * the same way; the manifest is the commit — a run without one was never
 * archived, and writing it again replaces whatever a crash left.
 */
export class DirArchive implements ResultsArchive {
  readonly kind = 'dir';

  constructor(private readonly root: string) {}

  private paths(campaignId: string, runId: string) {
    const dir = join(this.root, safe(campaignId));
    return { dir, data: join(dir, `${safe(runId)}.ndjson.gz`), manifest: join(dir, `${runId}.manifest.json`) };
  }

  async write(run: ArchivedRunSummary, rows: AsyncIterable<ResultRow>): Promise<ArchiveManifest> {
    const paths = this.paths(run.campaignId, run.runId);
    await mkdir(paths.dir, { recursive: true });
    // What an earlier attempt that died half-way left of this run.
    for (const name of await readdir(paths.dir)) {
      if (name.startsWith(`${run.runId}.`) && name.endsWith('.tmp')) await unlink(join(paths.dir, name)).catch(() => undefined);
    }
    const body = ndjsonChunks(rows);
    await writeDurably(paths.data, paths.dir, Readable.from(body.chunks).pipe(createGzip()));
    const written = body.digest();
    const back = await this.readBack(paths.data);
    if (back.count !== written.count || back.sha256 !== written.sha256) {
      throw new Error(
        `archive of run ${run.runId} of campaign ${run.campaignId} reads back as ${back.count} rows (sha256 ${back.sha256}), not the ${written.count} written (${written.sha256})`,
      );
    }
    const manifest: ArchiveManifest = { run, count: written.count, sha256: written.sha256, archivedAt: Date.now() };
    await writeDurably(paths.manifest, paths.dir, Readable.from([`${JSON.stringify(manifest)}\n`]));
    return manifest;
  }

  /** The count of lines and the SHA-256 of a data file's NDJSON, read from the disk. */
  private async readBack(path: string): Promise<{ count: number; sha256: string }> {
    const hash = createHash('sha256');
    let count = 0;
    const gunzip = createReadStream(path).pipe(createGunzip());
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      hash.update(chunk);
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) count += 1;
    }
    return { count, sha256: hash.digest('hex') };
  }

  async manifest(campaignId: string, runId: string): Promise<ArchiveManifest | null> {
    // A name that cannot be a file here names no archived run.
    if (!SAFE_NAME.test(campaignId) || !SAFE_NAME.test(runId)) return null;
    try {
      return JSON.parse(await readFile(this.paths(campaignId, runId).manifest, 'utf8')) as ArchiveManifest;
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
  }

  async *rows(campaignId: string, runId: string): AsyncGenerator<ResultRow> {
    if (!(await this.manifest(campaignId, runId))) throw new Error(`run ${runId} of campaign ${campaignId} is not in the archive`);
    const lines = createInterface({ input: createReadStream(this.paths(campaignId, runId).data).pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of lines) if (line) yield JSON.parse(line) as ResultRow;
  }

  async find(campaignId: string, runId: string, recipientId: string): Promise<ResultRow | null> {
    // A scan: the archive is for runs nobody reads often; live runs answer from Redis.
    for await (const row of this.rows(campaignId, runId)) if (row.id === recipientId) return row;
    return null;
  }

  async purge(campaignId: string): Promise<number> {
    const dir = join(this.root, safe(campaignId));
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if (missing(err)) return 0;
      throw err;
    }
    await rm(dir, { recursive: true, force: true });
    return names.filter((n) => n.endsWith('.manifest.json')).length;
  }

  async close(): Promise<void> {}
}
