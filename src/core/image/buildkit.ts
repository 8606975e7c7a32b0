// Dockerfile builds through BuildKit, as docker/build-push-action does: `buildctl` against a
// buildkitd address (input buildkit-addr or $BUILDKIT_HOST), or `docker buildx build` where the
// machine has Docker. The image is pushed by digest only; the digest comes from BuildKit's
// metadata file (never from its logs) and the tags are then put on that digest by our registry
// client, so a failed build never leaves a tag behind and both builders tag the same way.
//
// Credentials given as inputs reach BuildKit without touching a file: a temporary DOCKER_CONFIG
// names a credential store, `docker-credential-kube-actions`, which is this same program
// answering from its environment (explicit credentials) or from the user's own docker config.
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import {
  dockerConfigCredentials,
  dockerConfigPath,
  withExplicitCredentials,
  type RegistryCredentials,
} from './credentials.ts';
import { formatPlatform, type Platform } from './platform.ts';
import { imageName, isLoopbackRegistry, parseImageName, parseReference } from './reference.ts';

export type BuildKitDriver = 'buildctl' | 'buildx';

export interface BuildSecret {
  id: string;
  /** Exactly one of these: the value itself, a file, or an environment variable. */
  value?: string;
  file?: string;
  env?: string;
}

export interface DockerfileBuildOptions {
  context: string;
  /** The Dockerfile (default <context>/Dockerfile). */
  file?: string;
  target?: string;
  buildArgs?: string[];
  platforms?: Platform[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  secrets?: BuildSecret[];
  cacheFrom?: string[];
  cacheTo?: string[];
  /** Names without tags (`registry/repo`); the image is pushed to each by digest. */
  images: string[];
  push: boolean;
  /** Extra outputs as BuildKit takes them (`type=local,dest=out`); replace the image output when push is off. */
  outputs?: string[];
  /** buildkitd address; default $BUILDKIT_HOST; without either, docker buildx. */
  address?: string;
  driver?: BuildKitDriver;
  /** Credentials for one registry, on top of the user's docker config. */
  credentials?: { registry: string; credentials: RegistryCredentials };
  insecureRegistries?: string[];
  /** The program that answers as the credential helper (default: this process's entry). */
  helperCommand?: string[];
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface DockerfileBuildResult {
  digest?: string;
  imageId?: string;
  /** BuildKit's metadata file, as build-push-action's `metadata` output. */
  metadata: Record<string, unknown>;
  driver: BuildKitDriver;
}

/** Parses build-push-action's `secrets` (id=value), `secret-files` (id=path), `secret-envs` (id=VAR) lines. */
export function parseSecrets(
  lines: { values?: string[]; files?: string[]; envs?: string[] },
  workspace: string,
): BuildSecret[] {
  const split = (line: string, kind: string): [string, string] => {
    const eq = line.indexOf('=');
    const id = eq > 0 ? line.slice(0, eq).trim() : '';
    // Never echo the line: it may be the secret itself.
    if (!/^[A-Za-z0-9_.-]+$/.test(id))
      throw new Error(`a ${kind} line is not id=... with an id of letters, digits, "_", "." or "-"`);
    return [id, line.slice(eq + 1)];
  };
  return [
    ...(lines.values ?? []).map((l) => {
      const [id, value] = split(l, 'secrets');
      return { id, value };
    }),
    ...(lines.files ?? []).map((l) => {
      const [id, file] = split(l, 'secret-files');
      return { id, file: resolve(workspace, file.trim()) };
    }),
    ...(lines.envs ?? []).map((l) => {
      const [id, env] = split(l, 'secret-envs');
      return { id, env: env.trim() };
    }),
  ];
}

function csvField(value: string): string {
  // BuildKit reads --output/--cache-* as CSV: quote a field holding a comma or a quote.
  return /[",]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** The arguments and environment of the build command; pure, so tests can read them. */
export function buildkitCommand(
  options: DockerfileBuildOptions,
  driver: BuildKitDriver,
  metadataFile: string,
): { command: string; args: string[]; env: Record<string, string> } {
  const context = resolve(options.context);
  const file = resolve(context, options.file ?? 'Dockerfile');
  const env: Record<string, string> = {};
  const secretArgs = (options.secrets ?? []).map((s, i) => {
    if ([s.value, s.file, s.env].filter((v) => v !== undefined).length !== 1) {
      throw new Error(`secret "${s.id}" needs exactly one of a value, a file or an environment variable`);
    }
    if (s.file) return `id=${s.id},src=${s.file}`;
    if (s.env) return `id=${s.id},env=${s.env}`;
    // A value travels in the child's environment only, never in its arguments or a file.
    const name = `KUBE_ACTIONS_BUILD_SECRET_${i}`;
    env[name] = s.value!;
    return `id=${s.id},env=${name}`;
  });
  const names = options.images.map((n) => imageName(parseImageName(n)));
  const insecure = options.images.some((n) => {
    const { registry } = parseReference(n);
    return isLoopbackRegistry(registry) || options.insecureRegistries?.includes(registry);
  });
  const imageOutput =
    names.length > 0
      ? [
          'type=image',
          csvField(`name=${names.join(',')}`),
          `push=${options.push}`,
          ...(options.push ? ['push-by-digest=true'] : []),
          ...(insecure ? ['registry.insecure=true'] : []),
          ...Object.entries(options.annotations ?? {}).map(([k, v]) => csvField(`annotation.${k}=${v}`)),
        ].join(',')
      : undefined;
  const outputs = [
    ...(imageOutput && (options.push || !options.outputs?.length) ? [imageOutput] : []),
    ...(options.outputs ?? []),
  ];
  if (driver === 'buildctl') {
    const address = options.address ?? options.env?.BUILDKIT_HOST ?? process.env.BUILDKIT_HOST;
    const args = [
      ...(address ? ['--addr', address] : []),
      'build',
      '--progress',
      'plain',
      '--frontend',
      'dockerfile.v0',
      '--local',
      `context=${context}`,
      '--local',
      `dockerfile=${dirname(file)}`,
      '--opt',
      `filename=${basename(file)}`,
      ...(options.target ? ['--opt', `target=${options.target}`] : []),
      ...(options.platforms?.length
        ? ['--opt', `platform=${options.platforms.map(formatPlatform).join(',')}`]
        : []),
      ...(options.buildArgs ?? []).flatMap((a) => ['--opt', `build-arg:${a}`]),
      ...Object.entries(options.labels ?? {}).flatMap(([k, v]) => ['--opt', `label:${k}=${v}`]),
      ...secretArgs.flatMap((s) => ['--secret', s]),
      ...(options.cacheFrom ?? []).flatMap((c) => ['--import-cache', c]),
      ...(options.cacheTo ?? []).flatMap((c) => ['--export-cache', c]),
      ...outputs.flatMap((o) => ['--output', o]),
      '--metadata-file',
      metadataFile,
    ];
    return { command: 'buildctl', args, env };
  }
  const args = [
    'buildx',
    'build',
    '--progress',
    'plain',
    '--file',
    file,
    ...(options.target ? ['--target', options.target] : []),
    ...(options.platforms?.length ? ['--platform', options.platforms.map(formatPlatform).join(',')] : []),
    ...(options.buildArgs ?? []).flatMap((a) => ['--build-arg', a]),
    ...Object.entries(options.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    ...secretArgs.flatMap((s) => ['--secret', s]),
    ...(options.cacheFrom ?? []).flatMap((c) => ['--cache-from', c]),
    ...(options.cacheTo ?? []).flatMap((c) => ['--cache-to', c]),
    ...outputs.flatMap((o) => ['--output', o]),
    '--metadata-file',
    metadataFile,
    context,
  ];
  return { command: 'docker', args, env };
}

async function commandWorks(command: string, args: string[]): Promise<boolean> {
  return new Promise((res) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    child.on('error', () => res(false));
    child.on('close', (code) => res(code === 0));
  });
}

/** buildctl when an address is known, else docker buildx when it answers. */
export async function chooseDriver(
  options: Pick<DockerfileBuildOptions, 'address' | 'driver' | 'env'>,
): Promise<BuildKitDriver> {
  if (options.driver) return options.driver;
  if (options.address || (options.env ?? process.env).BUILDKIT_HOST) return 'buildctl';
  if (await commandWorks('docker', ['buildx', 'version'])) return 'buildx';
  throw new Error(
    'no BuildKit to build with: give buildkit-addr (or set BUILDKIT_HOST) to a buildkitd address, or run where `docker buildx` works',
  );
}

const HELPER_FLAG = 'KUBE_ACTIONS_CREDENTIAL_HELPER';

/**
 * When this process was started as `docker-credential-kube-actions get`, answers and returns
 * true. The actions and the CLI call it first thing.
 */
export async function serveCredentialHelper(): Promise<boolean> {
  if (process.env[HELPER_FLAG] !== '1' || process.argv[2] !== 'get') return false;
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const server = Buffer.concat(chunks)
    .toString('utf8')
    .trim()
    .replace(/^https?:\/\//, '')
    .replace(/\/.*$/, '');
  const env = process.env;
  const explicit =
    env.KUBE_ACTIONS_HELPER_REGISTRY && env.KUBE_ACTIONS_HELPER_PASSWORD !== undefined
      ? {
          registry: env.KUBE_ACTIONS_HELPER_REGISTRY,
          credentials: {
            username: env.KUBE_ACTIONS_HELPER_USERNAME ?? '',
            password: env.KUBE_ACTIONS_HELPER_PASSWORD,
          },
        }
      : undefined;
  const creds = await withExplicitCredentials(
    explicit,
    dockerConfigCredentials(env.KUBE_ACTIONS_HELPER_CONFIG ?? dockerConfigPath()),
  )(server === 'index.docker.io' ? 'docker.io' : server);
  if (!creds) {
    process.stdout.write('credentials not found in native keychain\n');
    process.exitCode = 1;
  } else {
    process.stdout.write(
      JSON.stringify({
        ServerURL: server,
        Username: creds.identityToken ? '<token>' : creds.username,
        Secret: creds.identityToken ?? creds.password,
      }),
    );
  }
  return true;
}

/** A DOCKER_CONFIG whose only credential store is this program; removed afterwards. */
async function helperDockerConfig(
  options: DockerfileBuildOptions,
): Promise<{ env: Record<string, string>; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'kube-actions-docker-config-'));
  const original = dockerConfigPath(options.env ?? process.env);
  await writeFile(join(dir, 'config.json'), JSON.stringify({ credsStore: 'kube-actions' }), { mode: 0o600 });
  // buildx keeps its builders next to config.json: keep seeing them.
  for (const sub of ['buildx', 'contexts', 'cli-plugins']) {
    if (existsSync(join(dirname(original), sub))) await symlink(join(dirname(original), sub), join(dir, sub));
  }
  const command = options.helperCommand ?? [process.execPath, process.argv[1]!];
  const quoted = command.map((c) => `'${c.replace(/'/g, `'\\''`)}'`).join(' ');
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'docker-credential-kube-actions'), `#!/bin/sh\nexec ${quoted} "$@"\n`);
  await chmod(join(bin, 'docker-credential-kube-actions'), 0o755);
  const env: Record<string, string> = {
    DOCKER_CONFIG: dir,
    PATH: `${bin}:${(options.env ?? process.env).PATH ?? ''}`,
    [HELPER_FLAG]: '1',
    KUBE_ACTIONS_HELPER_CONFIG: original,
  };
  if (options.credentials) {
    env.KUBE_ACTIONS_HELPER_REGISTRY = options.credentials.registry;
    env.KUBE_ACTIONS_HELPER_USERNAME = options.credentials.credentials.username;
    env.KUBE_ACTIONS_HELPER_PASSWORD = options.credentials.credentials.password;
  }
  return { env, dispose: () => rm(dir, { recursive: true, force: true }) };
}

export async function buildDockerfile(options: DockerfileBuildOptions): Promise<DockerfileBuildResult> {
  const log = options.log ?? (() => {});
  const context = resolve(options.context);
  if (!existsSync(context)) throw new Error(`build context ${options.context} does not exist`);
  const file = resolve(context, options.file ?? 'Dockerfile');
  if (!existsSync(file))
    throw new Error(`Dockerfile ${options.file ?? join(options.context, 'Dockerfile')} does not exist`);
  for (const s of options.secrets ?? []) {
    if (s.file && !existsSync(s.file)) throw new Error(`secret "${s.id}": file ${s.file} does not exist`);
  }
  const driver = await chooseDriver(options);
  const work = await mkdtemp(join(tmpdir(), 'kube-actions-build-'));
  const metadataFile = join(work, 'metadata.json');
  const { command, args, env } = buildkitCommand(options, driver, metadataFile);
  const helper = options.credentials ? await helperDockerConfig(options) : undefined;
  const secretValues = (options.secrets ?? []).flatMap((s) => (s.value ? [s.value] : []));
  if (options.credentials) secretValues.push(options.credentials.credentials.password);
  const scrub = (text: string) =>
    secretValues.reduce((t, v) => (v.length >= 3 ? t.split(v).join('***') : t), text);
  try {
    log(`${command} ${args.join(' ')}`);
    const tail: string[] = [];
    const code = await new Promise<number | string>((res) => {
      const child = spawn(command, args, {
        env: { ...(options.env ?? process.env), ...env, ...helper?.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const onData = (chunk: Buffer) => {
        for (const line of scrub(chunk.toString('utf8')).split('\n')) {
          if (!line) continue;
          log(line);
          tail.push(line);
          if (tail.length > 30) tail.shift();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('error', (err) =>
        res((err as NodeJS.ErrnoException).code === 'ENOENT' ? `${command} is not on PATH` : err.message),
      );
      child.on('close', (c, signal) => res(c ?? signal ?? 'unknown'));
    });
    if (code !== 0) {
      throw new Error(
        `${driver === 'buildctl' ? 'buildctl build' : 'docker buildx build'} failed (${typeof code === 'number' ? `exit ${code}` : code}):\n${tail.join('\n')}`,
      );
    }
    const metadata = JSON.parse(await readFile(metadataFile, 'utf8').catch(() => '{}')) as Record<
      string,
      unknown
    >;
    const digest = metadata['containerimage.digest'] as string | undefined;
    const configDigest = (metadata['containerimage.config.digest'] as string | undefined) ?? undefined;
    if (options.push && !digest)
      throw new Error(`${command} finished without an image digest in its metadata file`);
    return {
      ...(digest ? { digest } : {}),
      ...(configDigest ? { imageId: configDigest } : {}),
      metadata,
      driver,
    };
  } finally {
    await helper?.dispose();
    await rm(work, { recursive: true, force: true });
  }
}
