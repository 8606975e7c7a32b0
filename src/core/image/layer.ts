// Reproducible image layers from files on disk, as ko and jib make them: entries sorted by path,
// one fixed mtime (SOURCE_DATE_EPOCH), owner root (or a given uid/gid), modes normalised to
// 0755 (directories, executables) or 0644, no uname/gname, no extended headers. The same files
// give the same tar, and so the same gzip and digest on any machine running the same zlib
// (gzip's header carries no timestamp here: node writes MTIME 0).
import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { BoundedDirectory } from '../fs/bounded-dir.ts';
import { join, posix, relative, resolve, sep } from 'node:path';
import { gzip as gzipCallback } from 'node:zlib';
import { promisify } from 'node:util';
import { pack as tarPack, type Header } from 'tar-stream';
import { formatPlatform, parsePlatform, type Platform } from './platform.ts';
import { sha256Digest } from './registry.ts';
import { compareStrings } from '../order.ts';

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
  /** Compressed layers by the digest of their tar, so an unchanged layer is not gzipped again. */
  cacheDir?: string;
}

// Speed over the last percent of size, as go-containerregistry (crane, ko) chooses: level 1 gzips
// mixed source and binaries ~30% faster than the default 6 for <1% more bytes (bench/build.ts).
// memLevel 9 (zlib's most memory for its hash table) is a further ~10% faster at level 1.
const GZIP_OPTIONS = { level: 1, memLevel: 9 };
const GZIP_CHUNK = 1024 * 1024;

/**
 * gzip in fixed 1 MiB pieces compressed on every core and concatenated: RFC 1952 makes a gzip
 * file a series of members, and every reader of layers (Go's gzip with containerd, BuildKit,
 * skopeo and crane; zlib) reads them as one stream, as pigz's output is read. Fixed piece
 * boundaries keep the result deterministic.
 */
async function compress(tar: Buffer): Promise<Buffer> {
  const pieces: Promise<Buffer>[] = [];
  for (let offset = 0; offset < tar.length || offset === 0; offset += GZIP_CHUNK) {
    pieces.push(gzip(tar.subarray(offset, offset + GZIP_CHUNK), GZIP_OPTIONS));
  }
  return Buffer.concat(await Promise.all(pieces));
}

/** Compressed layers kept at most (the oldest go first). */
const CACHE_BYTES = 2 * 1024 * 1024 * 1024;

export interface Layer {
  /** The gzip blob: what the registry stores. */
  data: Buffer;
  digest: string;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffId: string;
  size: number;
  /** Which spec made it, for logs and summaries (holds paths of the build machine). */
  description: string;
  /** Where it lands in the image. */
  destination: string;
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

// Synchronous file system calls on purpose: a layer is thousands of small files, and a thread
// pool round trip per stat and read made the async version 3x slower than crane. Layers are built
// by the one-shot build action and CLI, never inside the controller's event loop.
function collect(spec: LayerSpec, options: LayerOptions): Entry[] {
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
  const walk = (abs: string, dest: string, follow = false): void => {
    const st = (follow ? statSync : lstatSync)(abs);
    if (st.isSymbolicLink()) {
      // Kept as a link: it resolves inside the image, not on the build machine.
      entries.push({
        path: dest,
        header: { type: 'symlink', linkname: readlinkSync(abs), mode: 0o777, uid, gid },
      });
    } else if (st.isDirectory()) {
      if (dest) entries.push({ path: `${dest}/`, header: dirHeader });
      for (const name of readdirSync(abs).sort()) walk(join(abs, name), dest ? `${dest}/${name}` : name);
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
  let st;
  try {
    st = statSync(spec.source);
  } catch {
    throw new Error(`layer source ${spec.source} does not exist`);
  }
  const root = parts.join('/');
  if (st.isDirectory()) {
    if (root) entries.push({ path: `${root}/`, header: dirHeader });
    for (const name of readdirSync(spec.source).sort())
      walk(join(spec.source, name), root ? `${root}/${name}` : name);
  } else {
    walk(spec.source, root, true);
  }
  // Byte order, the same everywhere (readdir order is not).
  return entries.sort((a, b) => compareStrings(a.path, b.path));
}

/** Builds one layer from a file or directory, or takes a .tar as it is. */
export async function buildLayer(spec: LayerSpec, options: LayerOptions): Promise<Layer> {
  const tar = isTarball(spec.source)
    ? await readFile(spec.source).catch(() => {
        throw new Error(`layer source ${spec.source} does not exist`);
      })
    : await packTar(collect(spec, options), new Date(options.mtime * 1000));
  // The tar's digest first: an unchanged layer (dependencies, a base rootfs, a binary) comes from
  // the cache and is not compressed again, which is most of a rebuild's time.
  const diffId = sha256Digest(tar);
  const hit = options.cacheDir ? await cached(options.cacheDir, diffId) : undefined;
  const data = hit?.data ?? (await compress(tar));
  const digest = hit?.digest ?? sha256Digest(data);
  if (options.cacheDir) await remember(options.cacheDir, diffId, digest, data, !!hit);
  return {
    data,
    digest,
    diffId,
    size: data.length,
    destination: spec.destination,
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
    const body = entry.file ? readFileSync(entry.file) : undefined;
    if (body && body.length !== entry.header.size)
      throw new Error(`${entry.file} changed while it was being layered`);
    // The pack queues entries in order; its errors surface through `done`.
    if (body) pack.entry(header, body);
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

// gzip is deterministic for the same zlib, so a cached blob is exactly what compressing again
// would give. A file is named by the tar's digest and the blob's; a blob whose bytes no longer
// hash to its name (a torn write) is ignored.
async function cached(dir: string, diffId: string): Promise<{ data: Buffer; digest: string } | undefined> {
  const prefix = `${diffId.slice(7)}-`;
  const name = (await readdir(dir).catch(() => [] as string[])).find(
    (n) => n.startsWith(prefix) && !n.endsWith('.tmp'),
  );
  if (!name) return undefined;
  const data = await readFile(join(dir, name)).catch(() => undefined);
  const digest = `sha256:${name.slice(prefix.length)}`;
  return data && sha256Digest(data) === digest ? { data, digest } : undefined;
}

const cacheDirs = new Map<string, BoundedDirectory>();

async function remember(
  dir: string,
  diffId: string,
  digest: string,
  data: Buffer,
  hit: boolean,
): Promise<void> {
  const name = `${diffId.slice(7)}-${digest.slice(7)}`;
  let files = cacheDirs.get(dir);
  if (!files) cacheDirs.set(dir, (files = new BoundedDirectory(dir, CACHE_BYTES)));
  try {
    // Eviction goes by last use.
    if (hit) return await files.touch(name);
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `${name}.${process.pid}.tmp`);
    await writeFile(tmp, data);
    await rename(tmp, join(dir, name));
    await files.added(data.length);
  } catch {
    // A cache that cannot be written only costs time.
  }
}

function relativeForLog(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith(`..${sep}`) && rel !== '..' ? rel : path;
}
