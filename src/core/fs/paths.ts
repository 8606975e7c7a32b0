// Keeping every path a render reads inside the workspace: no `..` and no symlink may lead out.
import { readdir, realpath, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

export class PathEscapeError extends Error {
  override name = 'PathEscapeError';
}

function inside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Resolves `path` (relative to the workspace, or absolute) and checks that both the path and the
 * file it finally points at, after following symlinks, are inside the workspace. Returns the real
 * path. A missing path is an error too, named as the user wrote it.
 */
export async function resolveInside(workspace: string, path: string, what = 'path'): Promise<string> {
  const root = await realpath(workspace);
  const lexical = resolve(root, path);
  if (!inside(root, lexical)) throw new PathEscapeError(`${what} "${path}" is outside the workspace ${root}`);
  let real: string;
  try {
    real = await realpath(lexical);
  } catch {
    throw new PathEscapeError(`${what} "${path}" does not exist in the workspace ${root}`);
  }
  if (!inside(root, real)) {
    throw new PathEscapeError(`${what} "${path}" is a symlink to ${real}, outside the workspace ${root}`);
  }
  return real;
}

/**
 * Like resolveInside for a path that may not exist yet (an output): its nearest existing ancestor,
 * after following symlinks, must be inside the workspace, and so must the path itself.
 */
export async function resolveTargetInside(
  workspace: string,
  path: string,
  what = 'output path',
): Promise<string> {
  const root = await realpath(workspace);
  const lexical = resolve(root, path);
  if (!inside(root, lexical)) throw new PathEscapeError(`${what} "${path}" is outside the workspace ${root}`);
  let existing = lexical;
  const missing: string[] = [];
  for (;;) {
    try {
      const real = await realpath(existing);
      if (!inside(root, real)) {
        throw new PathEscapeError(
          `${what} "${path}" leads through a symlink to ${real}, outside the workspace ${root}`,
        );
      }
      return resolve(real, ...missing.reverse());
    } catch (err) {
      if (err instanceof PathEscapeError) throw err;
      missing.push(basename(existing));
      existing = dirname(existing);
    }
  }
}

/** Refuses any symlink under `dir` whose target lies outside the workspace (tools follow them). */
export async function assertNoEscapingSymlinks(workspace: string, dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isSymbolicLink())
      await resolveInside(workspace, relative(await realpath(workspace), path), 'symlinked path');
    else if (e.isDirectory()) await assertNoEscapingSymlinks(workspace, path);
  }
}

/**
 * Writes by creating a temporary file next to `path` and renaming it over `path`: a symlink
 * already at `path` is replaced, never written through, and readers never see a partial file.
 */
export async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`,
  );
  await writeFile(tmp, content);
  await rename(tmp, path);
}
