// A BuildKit daemon for tests: the pinned buildkitd (build-binaries.sh buildkit) with its OCI
// worker on the host's runc and overlayfs, its state, socket, config and log in one directory, and
// a stop() that leaves nothing behind: no daemon, no runc container, no mount, no directory.
//
// CAP_SYS_RESOURCE: these machines' root lacks it, so anything that raises a hard rlimit or lowers
// an OOM score fails in `runc init` ("can't get final child's PID from pipe: EOF"). BuildKit 0.34
// does neither unless asked: its OCI worker sets no oom_score_adj on build containers (the runc
// executor's OOMScoreAdj option has no setter in buildkitd), and it drops the default spec's
// RLIMIT_NOFILE unless the build requests ulimits. So a build that passes `--ulimit` (docker
// buildx) above the daemon's own hard limit still fails that way; nothing here asks for one.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  groupAlive,
  logTail,
  mountsUnder,
  startComponent,
  stopProcessGroup,
  type ComponentProcess,
} from './process.ts';

const run = promisify(execFile);
const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const DIR_PREFIX = 'kube-actions-buildkit-';
const PID_FILE = 'buildkitd.pid';

export interface BuildKitOptions {
  /** Registries (`127.0.0.1:PORT`) the daemon pulls from and pushes to over plain HTTP. */
  registries?: string[];
  /** Directory for everything the daemon keeps; a fresh temporary one by default. Removed on stop. */
  dir?: string;
  /** Directory holding buildkitd and buildctl; by default found or built by build-binaries.sh. */
  binDir?: string;
}

/**
 * The directory holding the named build-binaries.sh modules' binaries: KUBE_ACTIONS_BIN_DIR
 * (set by the integration tests' global setup) when it has them, else build-binaries.sh's answer.
 */
export async function builtBinaries(modules: string[], binaries: string[]): Promise<string> {
  const given = process.env.KUBE_ACTIONS_BIN_DIR;
  if (given && binaries.every((b) => existsSync(join(given, b)))) return given;
  const { stdout } = await run(join(REPO_ROOT, 'test', 'cluster', 'build-binaries.sh'), modules, {
    maxBuffer: 16 * 1024 * 1024,
    timeout: 60 * 60 * 1000,
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`build-binaries.sh ${modules.join(' ')} failed:\n${err.stderr ?? err.message}`);
  });
  return stdout.trim().split('\n').pop()!;
}

/** Why BuildKit cannot run here (for a visible test skip), or undefined when it can. */
export async function buildKitUnavailableReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `BuildKit's OCI worker needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'the BuildKit harness runs buildkitd as root (rootless is not set up)';
  try {
    await run('runc', ['--version']);
  } catch {
    return 'runc is not installed (scripts/install-system-deps.sh installs it)';
  }
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (!/\toverlay$/m.test(filesystems)) return 'the kernel has no overlayfs (not in /proc/filesystems)';
  // Listed is not enough inside some sandboxes (overlay on overlay): try a mount.
  const probe = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}probe-`));
  try {
    for (const d of ['lower', 'upper', 'work', 'merged']) await mkdir(join(probe, d));
    const o = `lowerdir=${probe}/lower,upperdir=${probe}/upper,workdir=${probe}/work`;
    await run('mount', ['-t', 'overlay', 'overlay', '-o', o, join(probe, 'merged')]);
    await run('umount', [join(probe, 'merged')]);
  } catch (err) {
    return `an overlayfs mount failed here: ${(err as Error).message.trim()}`;
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
  return undefined;
}

interface RuncContainer {
  id: string;
  pid: number;
  status: string;
  bundle: string;
}

async function runcContainers(stateDir: string): Promise<RuncContainer[]> {
  if (!existsSync(stateDir)) return [];
  const { stdout } = await run('runc', ['--root', stateDir, 'list', '--format', 'json']);
  return (JSON.parse(stdout || 'null') as RuncContainer[] | null) ?? [];
}

async function removeContainers(dir: string): Promise<void> {
  const stateDir = join(dir, 'runc-state');
  for (const c of await runcContainers(stateDir).catch(() => [])) {
    await run('runc', ['--root', stateDir, 'kill', c.id, 'KILL']).catch(() => undefined);
    await run('runc', ['--root', stateDir, 'delete', '--force', c.id]).catch(() => undefined);
  }
}

/** Removes a daemon's leftovers: its runc containers, then its mounts, then the directory. */
async function cleanUp(dir: string): Promise<void> {
  await removeContainers(dir);
  for (const point of await mountsUnder(dir)) {
    // Lazy as a last resort: a mount still busy is detached now and freed when released.
    await run('umount', [point]).catch(() => run('umount', ['-l', point]).catch(() => undefined));
  }
  await rm(dir, { recursive: true, force: true });
}

/**
 * Daemons of killed test runs (their watchdog stops buildkitd, but build containers run in their
 * own process groups and mounts stay): clean up every harness directory whose daemon is gone.
 */
async function sweepStale(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const name of entries.filter((n) => n.startsWith(DIR_PREFIX) && !n.includes('probe-'))) {
    const dir = join(tmpdir(), name);
    const pid = Number(await readFile(join(dir, PID_FILE), 'utf8').catch(() => ''));
    if (pid > 0 && !groupAlive(pid)) await cleanUp(dir).catch(() => undefined);
  }
}

export class BuildKit {
  readonly dir: string;
  /** buildkitd's gRPC address, `unix:///...`: buildctl's `--addr`, BUILDKIT_HOST. */
  readonly address: string;
  readonly buildctl: string;
  readonly buildkitd: string;
  /** buildkitd's `--root`. */
  readonly root: string;
  readonly logFile: string;
  private readonly process: ComponentProcess;

  private constructor(dir: string, address: string, binDir: string, proc: ComponentProcess) {
    this.dir = dir;
    this.address = address;
    this.buildctl = join(binDir, 'buildctl');
    this.buildkitd = join(binDir, 'buildkitd');
    this.root = join(dir, 'root');
    this.logFile = proc.logFile;
    this.process = proc;
  }

  static async start(options: BuildKitOptions = {}): Promise<BuildKit> {
    const binDir = options.binDir ?? (await builtBinaries(['buildkit'], ['buildkitd', 'buildctl']));
    await sweepStale();
    let dir: string;
    if (options.dir) {
      await mkdir(options.dir, { recursive: true });
      dir = await realpath(options.dir);
    } else {
      // realpath: mountinfo lists resolved paths, and cleanup matches them by prefix.
      dir = await realpath(await mkdtemp(join(tmpdir(), DIR_PREFIX)));
    }
    const socket = join(dir, 'buildkitd.sock');
    // sun_path holds 107 bytes and a NUL.
    if (Buffer.byteLength(socket) > 107) throw new Error(`BuildKit: socket path too long: ${socket}`);
    const root = join(dir, 'root');
    const stateDir = join(dir, 'runc-state');
    await mkdir(root, { recursive: true });
    await mkdir(stateDir, { recursive: true });
    // runc keeps container state in /run/runc unless told otherwise, shared with every other runc
    // user on the machine; a root of our own lists (and cleans up) exactly this daemon's containers.
    const runcWrapper = join(dir, 'runc');
    await writeFile(runcWrapper, `#!/bin/sh\nexec runc --root '${stateDir}' "$@"\n`);
    await chmod(runcWrapper, 0o755);
    const config = [
      `root = ${JSON.stringify(root)}`,
      '[grpc]',
      `  address = [${JSON.stringify(`unix://${socket}`)}]`,
      '[cdi]',
      '  disabled = true',
      '[worker.oci]',
      '  enabled = true',
      '  snapshotter = "overlayfs"',
      `  binary = ${JSON.stringify(runcWrapper)}`,
      // No CNI here: RUN steps share the host's network, so test Dockerfiles must call nothing but
      // the harness's loopback servers (or use RUN --network=none).
      '  networkMode = "host"',
      // A test daemon lives for minutes; collecting garbage would only race the builds.
      '  gc = false',
      '[worker.containerd]',
      '  enabled = false',
    ];
    for (const host of options.registries ?? []) {
      config.push(`[registry.${JSON.stringify(host)}]`, '  http = true', '  insecure = true');
    }
    const configFile = join(dir, 'buildkitd.toml');
    await writeFile(configFile, config.join('\n') + '\n');
    const proc = startComponent(
      'buildkitd',
      join(binDir, 'buildkitd'),
      ['--config', configFile, '--oci-worker=true', '--containerd-worker=false'],
      { logDir: dir, attached: true },
    );
    await writeFile(join(dir, PID_FILE), `${proc.pid}\n`);
    const buildkit = new BuildKit(dir, `unix://${socket}`, binDir, proc);
    let exited: number | string | undefined;
    void proc.exited.then((code) => (exited = code));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ready = await buildkit.run(['debug', 'workers']).then(
        (r) => r.stdout.trim() !== '',
        () => false,
      );
      if (ready) return buildkit;
      if (exited !== undefined || Date.now() > deadline) {
        const log = logTail(proc.logFile);
        await buildkit.stop();
        throw new Error(`buildkitd did not start (${exited ?? 'timeout'}):\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Runs buildctl against this daemon; `env` is added to the test process's environment. */
  async run(
    args: string[],
    options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ): Promise<{ stdout: string; stderr: string }> {
    return run(this.buildctl, ['--addr', this.address, ...args], {
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      maxBuffer: 64 * 1024 * 1024,
    });
  }

  /** The daemon's runc containers still present (build steps running, or leaked). */
  async containers(): Promise<string[]> {
    return (await runcContainers(join(this.dir, 'runc-state'))).map((c) => c.id);
  }

  /** Whether buildkitd (or anything it started in its process group) still runs. */
  get running(): boolean {
    return groupAlive(this.process.pid);
  }

  async stop(): Promise<void> {
    // buildkitd waits on SIGTERM for running builds to finish: end their steps first.
    await removeContainers(this.dir);
    await stopProcessGroup(this.process.pid, 10_000);
    await cleanUp(this.dir);
  }
}
