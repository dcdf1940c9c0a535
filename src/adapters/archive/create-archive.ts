import { resolve } from 'node:path';
import type { ResultsArchive } from '../../app/ports.js';
import type { Config } from '../../config.js';
import { DirArchive } from './dir-archive.js';

/**
 * The archive a process reads and writes: PostgreSQL with ARCHIVE_URL (its
 * tables made now, so a bad URL stops the start; the driver loaded only
 * then, so a process without it starts as fast as before), else ARCHIVE_DIR.
 */
export async function createArchive(config: Pick<Config, 'archiveUrl' | 'archiveDir'>): Promise<ResultsArchive> {
  if (!config.archiveUrl) return new DirArchive(resolve(config.archiveDir));
  const { PgArchive } = await import('./pg-archive.js');
  const archive = new PgArchive(config.archiveUrl);
  try {
    await archive.migrate();
  } catch (err) {
    await archive.close();
    throw new Error(`ARCHIVE_URL: cannot prepare the archive tables in PostgreSQL: ${(err as Error).message}`, { cause: err });
  }
  return archive;
}
