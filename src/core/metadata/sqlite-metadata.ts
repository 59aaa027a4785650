import type { Logger } from '../log.js';
import { MetadataDB, type DatabaseOptions } from './database.js';
import { ImageStore } from './images.js';
import { LeaseStore } from './leases.js';

export const DEFAULT_DATABASE_OPTIONS: DatabaseOptions = { synchronous: 'FULL', busyTimeoutMs: 5000 };

/**
 * The metadata plugin's instance: the database (`db`, `transaction`,
 * `migrate`, `close`) plus the image and lease stores whose tables it owns.
 */
export class SqliteMetadata extends MetadataDB {
  readonly images: ImageStore;
  readonly leases: LeaseStore;

  constructor(path: string, log: Logger, opts: DatabaseOptions = DEFAULT_DATABASE_OPTIONS) {
    super(path, log, opts);
    try {
      this.images = new ImageStore(this);
      this.leases = new LeaseStore(this);
    } catch (err) {
      this.close();
      throw err;
    }
  }
}
