// A content-addressed cache of tool output (kustomize build / helm template), so re-rendering a
// monorepo runs the tools only for apps whose inputs changed. The key covers everything the tool
// can read: every file under the directories it loads from, the options that reach it, and the
// identity of the tool binary. Image overrides apply after the tool and are not part of the key.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, realpath, rename, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { BoundedDirectory } from '../fs/bounded-dir.ts';

export interface RenderCache {
  get(key: string): Promise<string | undefined>;
  set(key: string, output: string): Promise<void>;
}

/**
 * A cache in a directory, one file per key; safe for concurrent renders (atomic renames), and
 * kept under `maxBytes` (default 512 MiB) by dropping the least recently used renders.
 */
export function directoryCache(dir: string, maxBytes = 512 * 1024 * 1024): RenderCache {
  const files = new BoundedDirectory(dir, maxBytes);
  return {
    async get(key) {
      const output = await readFile(join(dir, `${key}.yaml`), 'utf8').catch(() => undefined);
      if (output !== undefined) await files.touch(`${key}.yaml`);
      return output;
    },
    async set(key, output) {
      await mkdir(dir, { recursive: true });
      const tmp = join(dir, `.${key}.${process.pid}.${Math.random().toString(36).slice(2)}`);
      await writeFile(tmp, output);
      await rename(tmp, join(dir, `${key}.yaml`));
      await files.added(Buffer.byteLength(output));
    },
  };
}

/** Finds a command the way execFile will: an absolute path as is, else the first match on PATH. */
export async function whichBinary(binary: string): Promise<string> {
  if (binary.includes('/')) return realpath(binary).catch(() => binary);
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    const found = await realpath(join(dir, binary)).catch(() => undefined);
    if (found) return found;
  }
  return binary;
}

type Skip = (relativePath: string) => boolean;

async function hashTree(
  hash: ReturnType<typeof createHash>,
  root: string,
  dir: string,
  skip: Skip,
): Promise<void> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    const path = join(dir, e.name);
    // A symlinked directory is hashed by its contents (callers have checked where links lead).
    const isDir =
      e.isDirectory() ||
      (e.isSymbolicLink() && (await stat(path).catch(() => undefined))?.isDirectory() === true);
    if (isDir) {
      if (e.name === '.git') continue;
      await hashTree(hash, root, path, skip);
    } else if ((e.isFile() || e.isSymbolicLink()) && !skip(relative(root, path))) {
      const content = await readFile(path).catch(() => Buffer.alloc(0));
      hash.update(`${relative(root, path)}\0${content.length}\0`).update(content);
    }
  }
}

/**
 * The cache key for running `binary` over `dirs` (each hashed whole) with `options`.
 * Directories are identified by their real path, so two routes to one base hash the same.
 */
export async function inputKey(
  binary: string,
  dirs: string[],
  options: unknown,
  skip: Skip = () => false,
): Promise<string> {
  const hash = createHash('sha256');
  const tool = await whichBinary(binary);
  const toolStat = await stat(tool).catch(() => undefined);
  hash.update(`${tool}\0${toolStat?.size ?? 0}\0${toolStat?.mtimeMs ?? 0}\0${JSON.stringify(options)}\0`);
  const unique = [...new Set(await Promise.all(dirs.map((d) => realpath(d))))].sort();
  for (const dir of unique) {
    hash.update(`dir\0${dir}\0`);
    await hashTree(hash, dir, dir, skip);
  }
  return hash.digest('hex');
}
