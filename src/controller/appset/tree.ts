// What the git generators read from a checked-out commit: its directories (hidden ones skipped
// with everything under them, as Argo CD's repo-server does) and the files a pattern keeps.
// Bounded, so a repository of a million files is an error rather than a stalled controller.
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GeneratorError, MAX_FILE_BYTES } from './generators.ts';
import { compareStrings } from '../../core/order.ts';

/** Entries walked in one commit at most. */
export const MAX_TREE_ENTRIES = 100_000;

export interface TreeListing {
  /** Directories (not the root), relative and `/`-separated, sorted. */
  directories: string[];
  /** Every file, relative, sorted; `.git` excluded. */
  files: string[];
}

export async function listTree(root: string): Promise<TreeListing> {
  const directories: string[] = [];
  const files: string[] = [];
  const hidden: string[] = [];
  let seen = 0;
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => compareStrings(a.name, b.name));
    for (const e of entries) {
      if (++seen > MAX_TREE_ENTRIES)
        throw new GeneratorError(`the repository has more than ${MAX_TREE_ENTRIES} files and directories`);
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (e.name === '.git') continue;
        // Files under hidden directories are still files (git ls-files lists them); the
        // directories generator skips the directories.
        if (e.name.startsWith('.') || hidden.some((h) => path.startsWith(`${h}/`))) hidden.push(path);
        else directories.push(path);
        await walk(path);
      } else if (e.isFile()) files.push(path);
    }
  };
  await walk('');
  return { directories, files };
}

/** A file of the tree as text, refusing symlinks out of it and files above the size limit. */
export async function readTreeFile(root: string, path: string): Promise<string> {
  const full = join(root, path);
  const info = await lstat(full);
  if (!info.isFile()) throw new GeneratorError(`${path} is not a regular file`);
  if (info.size > MAX_FILE_BYTES)
    throw new GeneratorError(
      `${path} is ${info.size} bytes, more than the ${MAX_FILE_BYTES} a files generator reads`,
    );
  return readFile(full, 'utf8');
}
