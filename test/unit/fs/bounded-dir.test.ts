import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoundedDirectory } from '../../../src/core/fs/bounded-dir.ts';
import { directoryCache } from '../../../src/core/render/cache.ts';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bounded-dir-'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** Writes a file of `size` bytes last used `ageSeconds` ago. */
async function file(dir: string, name: string, size: number, ageSeconds: number): Promise<void> {
  await writeFile(join(dir, name), Buffer.alloc(size));
  const at = new Date(Date.now() - ageSeconds * 1000);
  await utimes(join(dir, name), at, at);
}

describe('BoundedDirectory', () => {
  test('over its size, the least recently used files go first; a touch counts as a use', async () => {
    const dir = await mkdtemp(join(work, 'lru-'));
    await file(dir, 'oldest', 400, 300);
    await file(dir, 'older', 400, 200);
    await file(dir, 'recent', 400, 100);
    const files = new BoundedDirectory(dir, 1000);
    await files.touch('oldest');
    await file(dir, 'new', 400, 0);
    await files.added(400);
    expect((await readdir(dir)).sort()).toEqual(['new', 'oldest']);
  });

  test("a temporary file a crash left (an hour old) is removed; another process's fresh one is kept", async () => {
    const dir = await mkdtemp(join(work, 'tmp-'));
    await file(dir, 'layer.123.tmp', 10, 2 * 3600);
    await file(dir, '.key.456.abc123', 10, 2 * 3600);
    await file(dir, 'layer.789.tmp', 10, 5);
    await file(dir, 'kept', 10, 5);
    await new BoundedDirectory(dir, 1_000_000).added(0);
    expect((await readdir(dir)).sort()).toEqual(['kept', 'layer.789.tmp']);
  });

  test('the render cache stays under its size and still answers for what it kept', async () => {
    const dir = join(work, 'render');
    const cache = directoryCache(dir, 2500);
    for (let i = 0; i < 5; i++) {
      await cache.set(`key${i}`, 'x'.repeat(1000));
      // mtimes one second apart, so the order of use is unambiguous.
      const at = new Date(Date.now() - (10 - i) * 1000);
      await utimes(join(dir, `key${i}.yaml`), at, at);
    }
    await cache.set('key5', 'y'.repeat(1000));
    const left = (await readdir(dir)).sort();
    expect(left.length).toBeLessThanOrEqual(2);
    expect(left).toContain('key5.yaml');
    expect(await cache.get('key5')).toBe('y'.repeat(1000));
    expect(await cache.get('key0')).toBeUndefined();
  });
});
