// A directory of cache files kept under a size in bytes: the least recently used files go first
// (a read touches its file), and temporary files a killed process left are removed on first use.
// One scan of the directory when it is first used and whenever the running total passes the
// limit; in between, writes only add to the total.
import { readdir, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';

/** Names of files being written: `<name>.<pid>.tmp` or `.<name>.<pid>.<random>`. */
const TEMPORARY = /(\.\d+\.tmp$)|(^\..+\.\d+\.[a-z0-9]+$)/;

export class BoundedDirectory {
  readonly dir: string;
  readonly maxBytes: number;
  private total: number | undefined;
  private scanning: Promise<void> | undefined;

  constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
  }

  /** Marks a file as just used. */
  async touch(name: string): Promise<void> {
    const now = new Date();
    await utimes(join(this.dir, name), now, now).catch(() => undefined);
  }

  /** Counts a file just written, and evicts the oldest when the directory is over its size. */
  async added(bytes: number): Promise<void> {
    if (this.total === undefined) {
      await this.scan();
      return;
    }
    this.total += bytes;
    if (this.total > this.maxBytes) await this.scan();
  }

  private scan(): Promise<void> {
    this.scanning ??= (async () => {
      const names = await readdir(this.dir).catch(() => [] as string[]);
      const files = (
        await Promise.all(
          names.map(async (name) => ({ name, st: await stat(join(this.dir, name)).catch(() => undefined) })),
        )
      ).filter((f) => f.st?.isFile());
      let total = 0;
      const kept: typeof files = [];
      for (const f of files) {
        // Another process's file in flight is young; one an hour old was left by a crash.
        if (TEMPORARY.test(f.name) && Date.now() - f.st!.mtimeMs > 60 * 60 * 1000) {
          await rm(join(this.dir, f.name), { force: true });
        } else {
          kept.push(f);
          total += f.st!.size;
        }
      }
      for (const f of kept.sort((a, b) => a.st!.mtimeMs - b.st!.mtimeMs)) {
        if (total <= this.maxBytes) break;
        if (TEMPORARY.test(f.name)) continue;
        await rm(join(this.dir, f.name), { force: true });
        total -= f.st!.size;
      }
      this.total = total;
    })().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }
}
