import { join } from 'node:path';
import { z } from 'zod';
import { PluginType, type Registration } from '../plugin/types.js';
import { SqliteMetadata } from './sqlite-metadata.js';

export { MetadataDB, query, sqliteError, type DatabaseOptions, type Migration, type SynchronousMode } from './database.js';
export { ImageStore, IMAGE_MIGRATIONS, type Image, type ImageFilter, type ImageInput } from './images.js';
export { LeaseStore, LEASE_MIGRATIONS, LEASE_RESOURCE_TYPES, type Lease, type LeaseResource, type LeaseResourceType } from './leases.js';
export { DEFAULT_DATABASE_OPTIONS, SqliteMetadata } from './sqlite-metadata.js';

export const metadataConfigSchema = z.object({
  synchronous: z
    .enum(['FULL', 'NORMAL'])
    .default('FULL')
    .describe(
      'SQLite PRAGMA synchronous (WAL mode). FULL fsyncs the WAL at every commit, so a write berthd has acknowledged ' +
        '(a pulled image, a created container) survives power loss as the fsynced blobs do; NORMAL survives only a ' +
        'crash of berthd and may lose the last commits on power loss, for fewer fsyncs.',
    ),
  busy_timeout_ms: z
    .number()
    .int()
    .min(0)
    .default(5000)
    .describe('How long, in milliseconds, a statement waits for another connection (e.g. an inspection tool) to release a lock.'),
});

export type MetadataConfig = z.infer<typeof metadataConfigSchema>;

/** File name of the database under the plugin's root dir. */
export const METADATA_DB_FILE = 'meta.db';

/** `metadata.sqlite`: SQLite database `<root>/meta.db`; its instance is a `SqliteMetadata`. */
export const metadataSqliteRegistration: Registration<MetadataConfig, SqliteMetadata> = {
  type: PluginType.Metadata,
  id: 'sqlite',
  config: metadataConfigSchema,
  init(ctx) {
    const path = join(ctx.rootDir, METADATA_DB_FILE);
    const metadata = new SqliteMetadata(path, ctx.log, {
      synchronous: ctx.config.synchronous,
      busyTimeoutMs: ctx.config.busy_timeout_ms,
    });
    ctx.meta({ exports: { path, synchronous: ctx.config.synchronous } });
    return metadata;
  },
};
