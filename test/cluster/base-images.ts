// Base images made on this machine, since there is no Docker Hub here: an OCI layout built once
// with umoci from Debian's busybox-static package (cached under ~/.cache/kube-actions/images/,
// keyed by the package version), pushed to a test registry with skopeo.
//
// The layout holds, by tag:
//   busybox        linux/amd64: /bin/busybox with its applet symlinks (/bin/sh ...), /etc/passwd
//   multi-amd64    busybox + /etc/kube-actions-platform ("linux/amd64")
//   multi-arm64    only /etc/kube-actions-platform ("linux/arm64"): Debian's arm64 busybox is not
//                  installable here, so this image is not runnable; it exists so that platform
//                  selection (index -> manifest) can be checked by content
//   multi          an OCI image index of the two
// Every timestamp is the epoch, so the digests depend only on the package and this recipe.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  copyFile,
  lutimes,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { writeDockerConfig, type OciRegistry } from './registry.ts';

const run = promisify(execFile);

/** Bump when the layout recipe below changes, so cached layouts are rebuilt. */
const RECIPE = 1;
const EPOCH = '1970-01-01T00:00:00Z';
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const PLATFORM_MARKER = '/etc/kube-actions-platform';

export interface PushedImage {
  /** `HOST/REPOSITORY:TAG`. */
  reference: string;
  /** Digest of what the tag points at (the manifest, or the index). */
  digest: string;
}

export interface PushedIndex extends PushedImage {
  /** Digest of each platform's manifest in the index. */
  manifests: { 'linux/amd64': string; 'linux/arm64': string };
}

export interface PushOptions {
  /** The token user to push as (see OciRegistry.credentials); the first configured by default. */
  user?: string;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const REF_NAME = 'org.opencontainers.image.ref.name';

function cacheRoot(): string {
  return process.env.KUBE_ACTIONS_CACHE ?? join(homedir(), '.cache', 'kube-actions');
}

async function busyboxVersion(): Promise<string> {
  const { stdout } = await run('dpkg-query', ['-W', '-f=${Version}', 'busybox-static']).catch(() => {
    throw new Error('busybox-static is not installed (scripts/install-system-deps.sh installs it)');
  });
  return stdout.trim();
}

async function umoci(args: string[]): Promise<void> {
  await run('umoci', args);
}

async function readIndex(layout: string): Promise<{ manifests: Descriptor[] }> {
  return JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
}

/** The descriptor a tag of the layout points at. */
async function tagged(layout: string, tag: string): Promise<Descriptor> {
  const found = (await readIndex(layout)).manifests.find((m) => m.annotations?.[REF_NAME] === tag);
  if (!found) throw new Error(`OCI layout ${layout} has no tag ${tag}`);
  return found;
}

/** Sets the timestamps of `dir` and everything under it to the epoch (symlinks, not their targets). */
async function epochTimes(dir: string): Promise<void> {
  const entries = await readdir(dir, { recursive: true });
  // Children first: setting a directory's time must come after its last change.
  const paths = entries.map((e) => join(dir, e)).sort((a, b) => b.split('/').length - a.split('/').length);
  for (const p of [...paths, dir]) await lutimes(p, 0, 0);
}

async function busyboxRootfs(dir: string): Promise<void> {
  const mkdirs = async (d: string, mode = 0o755) => {
    await mkdir(d, { recursive: true });
    await chmod(d, mode);
  };
  // Modes set explicitly throughout, so the umask does not reach the digests.
  await mkdirs(dir);
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc']) await mkdirs(join(dir, d));
  await mkdirs(join(dir, 'tmp'), 0o1777);
  await mkdirs(join(dir, 'root'), 0o700);
  await copyFile('/bin/busybox', join(dir, 'bin', 'busybox'));
  // `--list-full` gives each applet's conventional path (bin/sh, usr/bin/awk, ...); `linuxrc`
  // (no directory) is an init for initrds, not wanted in an image.
  const { stdout } = await run('/bin/busybox', ['--list-full']);
  for (const applet of stdout.split('\n').filter((l) => l.includes('/'))) {
    const target = join(dir, applet);
    if (existsSync(target)) continue;
    await mkdirs(dirname(target));
    await symlink('/bin/busybox', target);
  }
  await writeFile(
    join(dir, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  await writeFile(join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  await chmod(join(dir, 'etc', 'passwd'), 0o644);
  await chmod(join(dir, 'etc', 'group'), 0o644);
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  await epochTimes(dir);
}

async function markerFile(dir: string, platform: string): Promise<string> {
  const file = join(dir, `marker-${platform.replace('/', '-')}`);
  await writeFile(file, `${platform}\n`);
  await chmod(file, 0o644);
  await lutimes(file, 0, 0);
  return file;
}

async function configure(
  layout: string,
  tag: string,
  architecture: string,
  extra: string[] = [],
): Promise<void> {
  await umoci([
    'config',
    '--image',
    `${layout}:${tag}`,
    '--os',
    'linux',
    '--architecture',
    architecture,
    '--created',
    EPOCH,
    '--history.created',
    EPOCH,
    '--config.env',
    PATH_ENV,
    ...extra,
  ]);
}

async function buildLayout(layout: string, work: string): Promise<void> {
  const insert = (tag: string, source: string, target: string) =>
    umoci(['insert', '--image', `${layout}:${tag}`, '--history.created', EPOCH, source, target]);
  const rootfs = join(work, 'rootfs');
  await busyboxRootfs(rootfs);
  await umoci(['init', '--layout', layout]);

  await umoci(['new', '--image', `${layout}:busybox`]);
  await insert('busybox', rootfs, '/');
  await configure(layout, 'busybox', 'amd64', ['--config.cmd', '/bin/sh']);

  await umoci(['tag', '--image', `${layout}:busybox`, 'multi-amd64']);
  await insert('multi-amd64', await markerFile(work, 'linux/amd64'), PLATFORM_MARKER);
  await configure(layout, 'multi-amd64', 'amd64', ['--config.cmd', '/bin/sh']);

  await umoci(['new', '--image', `${layout}:multi-arm64`]);
  await insert('multi-arm64', await markerFile(work, 'linux/arm64'), PLATFORM_MARKER);
  await configure(layout, 'multi-arm64', 'arm64');
  await umoci(['gc', '--layout', layout]);

  // umoci makes no image indexes: write one as a blob and tag it in the layout's index.json.
  const platformManifest = async (tag: string, architecture: string) => {
    const { mediaType, digest, size } = await tagged(layout, tag);
    return { mediaType, digest, size, platform: { architecture, os: 'linux' } };
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      await platformManifest('multi-amd64', 'amd64'),
      await platformManifest('multi-arm64', 'arm64'),
    ],
  };
  const blob = Buffer.from(JSON.stringify(index));
  const hex = createHash('sha256').update(blob).digest('hex');
  await writeFile(join(layout, 'blobs', 'sha256', hex), blob);
  const top = await readIndex(layout);
  top.manifests.push({
    mediaType: index.mediaType,
    digest: `sha256:${hex}`,
    size: blob.length,
    annotations: { [REF_NAME]: 'multi' },
  });
  await writeFile(join(layout, 'index.json'), JSON.stringify(top));
}

/**
 * The cached OCI layout (built on first use): its directory and the busybox-static version it
 * was made from.
 */
export async function baseImageLayout(): Promise<{ layout: string; busyboxVersion: string }> {
  const version = await busyboxVersion();
  const key = `busybox-static-${version.replace(/[^A-Za-z0-9.+-]/g, '_')}-r${RECIPE}`;
  const layout = join(cacheRoot(), 'images', key);
  if (existsSync(join(layout, '.complete'))) return { layout, busyboxVersion: version };
  await mkdir(dirname(layout), { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'kube-actions-base-image-'));
  // Built beside its final place and renamed there, so parallel test workers never see half a layout.
  const building = `${layout}.tmp-${process.pid}`;
  try {
    await rm(building, { recursive: true, force: true });
    await buildLayout(building, work);
    await writeFile(join(building, '.complete'), '');
    await rename(building, layout).catch((err: NodeJS.ErrnoException) => {
      // Another worker finished first: its layout is the same.
      if (!existsSync(join(layout, '.complete'))) throw err;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(building, { recursive: true, force: true });
  }
  return { layout, busyboxVersion: version };
}

async function skopeoPush(
  registry: OciRegistry,
  source: string,
  reference: string,
  all: boolean,
  options: PushOptions,
): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'kube-actions-skopeo-'));
  try {
    const args = [
      'copy',
      '--quiet',
      // The system policy is not ours to rely on; the source is our own layout.
      '--insecure-policy',
      '--dest-tls-verify=false',
      // Fail rather than convert: the digests returned must be the ones pushed.
      '--preserve-digests',
      '--digestfile',
      join(work, 'digest'),
    ];
    if (all) args.push('--all');
    // An auth file rather than --dest-creds keeps the password off the command line.
    if (registry.credentials(options.user)) {
      const users = options.user ? { [registry.host]: options.user } : {};
      await writeDockerConfig(work, [registry], users);
      args.push('--dest-authfile', join(work, 'config.json'));
    }
    await run('skopeo', [...args, source, `docker://${reference}`]);
    return (await readFile(join(work, 'digest'), 'utf8')).trim();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Pushes the single-platform linux/amd64 busybox image as `REPOSITORY:TAG`. */
export async function pushBusyboxBase(
  registry: OciRegistry,
  repository: string,
  tag: string,
  options: PushOptions = {},
): Promise<PushedImage> {
  const { layout } = await baseImageLayout();
  const reference = `${registry.host}/${repository}:${tag}`;
  const digest = await skopeoPush(registry, `oci:${layout}:busybox`, reference, false, options);
  const expected = (await tagged(layout, 'busybox')).digest;
  if (digest !== expected) throw new Error(`pushed ${reference} as ${digest}, layout has ${expected}`);
  return { reference, digest };
}

/** Pushes the linux/amd64 + linux/arm64 image index (see the top of this file) as `REPOSITORY:TAG`. */
export async function pushMultiPlatformBase(
  registry: OciRegistry,
  repository: string,
  tag: string,
  options: PushOptions = {},
): Promise<PushedIndex> {
  const { layout } = await baseImageLayout();
  const reference = `${registry.host}/${repository}:${tag}`;
  const digest = await skopeoPush(registry, `oci:${layout}:multi`, reference, true, options);
  const expected = (await tagged(layout, 'multi')).digest;
  if (digest !== expected) throw new Error(`pushed ${reference} as ${digest}, layout has ${expected}`);
  return {
    reference,
    digest,
    manifests: {
      'linux/amd64': (await tagged(layout, 'multi-amd64')).digest,
      'linux/arm64': (await tagged(layout, 'multi-arm64')).digest,
    },
  };
}
