// Reproducible image layers from files on disk, as ko and jib make them: entries sorted by path,
// one fixed mtime (SOURCE_DATE_EPOCH), owner root (or a given uid/gid), modes normalised to
// 0755 (directories, executables) or 0644, no uname/gname, no extended headers. The same files
// give the same tar, and so the same gzip and digest on any machine running the same zlib
// (gzip's header carries no timestamp here: node writes MTIME 0).
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join, posix, relative, resolve, sep } from 'node:path';
import { gzip as gzipCallback } from 'node:zlib';
import { promisify } from 'node:util';
import { pack as tarPack, type Header } from 'tar-stream';
import { formatPlatform, parsePlatform, type Platform } from './platform.ts';
import { sha256Digest } from './registry.ts';

const gzip = promisify(gzipCallback);

export interface LayerSpec {
  /** A file or directory on disk. */
  source: string;
  /** Where it lands in the image (absolute). A directory's contents go under it. */
  destination: string;
  /** Only in this platform's image (a native binary); every platform's when unset. */
  platform?: Platform;
}

export interface LayerOptions {
  /** Every entry's mtime, in seconds since the epoch. */
  mtime: number;
  uid?: number;
  gid?: number;
}

export interface Layer {
  /** The gzip blob: what the registry stores. */
  data: Buffer;
  digest: string;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffId: string;
  size: number;
  /** Which spec made it, for logs and summaries. */
  description: string;
  platform?: Platform;
}

interface Entry {
  path: string;
  header: Partial<Omit<Header, 'name' | 'mtime'>>;
  file?: string;
}

/** A tar file is appended as it is, as `crane append -f layer.tar` does (a rootfs, say). */
function isTarball(path: string): boolean {
  return path.endsWith('.tar');
}

/**
 * Parses `[os/arch=]source:destination` (destination absolute); a bare source lands at
 * /<basename>, and a `.tar` source unpacks at the root. With a platform prefix the layer goes
 * only into that platform's image.
 */
export function parseLayerSpec(text: string, workspace: string): LayerSpec {
  const prefixed = /^([a-z0-9]+\/[a-z0-9]+(?:\/[a-z0-9]+)?)=(.+)$/.exec(text);
  const platform = prefixed ? parsePlatform(prefixed[1]!) : undefined;
  const spec = prefixed ? prefixed[2]! : text;
  const colon = spec.lastIndexOf(':');
  const [source, destination] = colon > 0 ? [spec.slice(0, colon), spec.slice(colon + 1)] : [spec, ''];
  if (!source) throw new Error(`layer "${spec}": no source path`);
  if (isTarball(source) && destination && destination !== '/') {
    throw new Error(`layer "${spec}": a .tar is appended at the root as it is; give no destination`);
  }
  const dest = destination || (isTarball(source) ? '/' : `/${posix.basename(source.replace(/\/+$/, ''))}`);
  if (!dest.startsWith('/'))
    throw new Error(`layer "${spec}": the destination "${dest}" must be an absolute path in the image`);
  if (dest.split('/').includes('..'))
    throw new Error(`layer "${spec}": the destination may not contain ".."`);
  return {
    source: resolve(workspace, source),
    destination: posix.normalize(dest),
    ...(platform ? { platform } : {}),
  };
}

async function collect(spec: LayerSpec, options: LayerOptions): Promise<Entry[]> {
  const uid = options.uid ?? 0;
  const gid = options.gid ?? 0;
  const entries: Entry[] = [];
  const dirHeader = { type: 'directory' as const, mode: 0o755, uid, gid };
  // The destination's parents, so the layer unpacks on an empty (scratch) rootfs too.
  const parts = spec.destination.split('/').filter(Boolean);
  for (let i = 1; i < parts.length; i++)
    entries.push({ path: parts.slice(0, i).join('/') + '/', header: dirHeader });

  // Links inside a directory stay links; the source itself is followed (a symlinked binary is
  // meant for its content).
  const walk = async (abs: string, dest: string, follow = false): Promise<void> => {
    const st = await (follow ? stat : lstat)(abs);
    if (st.isSymbolicLink()) {
      // Kept as a link: it resolves inside the image, not on the build machine.
      entries.push({
        path: dest,
        header: { type: 'symlink', linkname: await readlink(abs), mode: 0o777, uid, gid },
      });
    } else if (st.isDirectory()) {
      if (dest) entries.push({ path: `${dest}/`, header: dirHeader });
      for (const name of (await readdir(abs)).sort())
        await walk(join(abs, name), dest ? `${dest}/${name}` : name);
    } else if (st.isFile()) {
      entries.push({
        path: dest,
        header: { type: 'file', size: st.size, mode: st.mode & 0o111 ? 0o755 : 0o644, uid, gid },
        file: abs,
      });
    } else {
      throw new Error(`${abs}: only files, directories and symlinks can go into a layer`);
    }
  };
  const st = await stat(spec.source).catch(() => {
    throw new Error(`layer source ${spec.source} does not exist`);
  });
  const root = parts.join('/');
  if (st.isDirectory()) {
    if (root) entries.push({ path: `${root}/`, header: dirHeader });
    for (const name of (await readdir(spec.source)).sort()) {
      await walk(join(spec.source, name), root ? `${root}/${name}` : name);
    }
  } else {
    await walk(spec.source, root, true);
  }
  // Byte order, the same everywhere (readdir order is not).
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Builds one layer from a file or directory, or takes a .tar as it is. */
export async function buildLayer(spec: LayerSpec, options: LayerOptions): Promise<Layer> {
  const tar = isTarball(spec.source)
    ? await readFile(spec.source).catch(() => {
        throw new Error(`layer source ${spec.source} does not exist`);
      })
    : await packTar(await collect(spec, options), new Date(options.mtime * 1000));
  const data = await gzip(tar, { level: 6 });
  return {
    data,
    digest: sha256Digest(data),
    diffId: sha256Digest(tar),
    size: data.length,
    description: `${spec.platform ? `${formatPlatform(spec.platform)}: ` : ''}${relativeForLog(spec.source)} -> ${spec.destination}`,
    ...(spec.platform ? { platform: spec.platform } : {}),
  };
}

async function packTar(entries: Entry[], mtime: Date): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolveDone, reject) => {
    pack.on('end', resolveDone);
    pack.on('error', reject);
  });
  for (const entry of entries) {
    const header = { ...entry.header, name: entry.path, mtime, uname: '', gname: '' };
    const body = entry.file ? await readFile(entry.file) : undefined;
    if (body && body.length !== entry.header.size)
      throw new Error(`${entry.file} changed while it was being layered`);
    await new Promise<void>((res, rej) => {
      const done = (err?: Error | null) => (err ? rej(err) : res());
      if (body) pack.entry(header, body, done);
      else pack.entry(header, done);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function relativeForLog(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith(`..${sep}`) && rel !== '..' ? rel : path;
}
