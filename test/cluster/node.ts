// A real Kubernetes node beside the kwok ones: the pinned kubelet and kube-proxy (build-binaries.sh
// kubernetes) on Debian's containerd and runc, with the standard CNI plugins (bridge, host-local,
// loopback, portmap), so pods run real containers and Services route through kube-proxy's iptables
// rules.
//
// Network. The node lives in a network namespace of its own (bound at <dir>/netns): containerd,
// the CNI bridge, kubelet, kube-proxy and its iptables chains are all in there, so two nodes (two
// test runs on one machine, or the throwaway node of the teardown test) never share a chain, and
// removing the namespace removes every chain and the bridge at once. One veth pair links it to
// the host. Each node claims a /24 of 198.18.0.0/16 (198.18.0.0/15 is RFC 2544's benchmarking
// range; no private range is used):
//   198.18.N.0/25    pods; the bridge holds .1, the pods' gateway
//   198.18.N.129/30  the host's end of the link: the `gateway` where servers pods must reach listen
//                    (the apiserver's forwarder, registries, git servers); pods reach it through
//                    the bridge
//   198.18.N.130     the node's end: its InternalIP (kubelet :10250, kube-proxy healthz :10256)
// A cluster with a real node claims a Service range 198.19.16S.0/20 (see claimServiceRange), which
// the host routes to the node too. Pods get one route, 198.18.0.0/15 via the bridge, and the node's
// namespace has no default route: nothing leaves the machine (ipMasq is off on the bridge).
//
// cgroup v1 and CAP_SYS_RESOURCE (root lacks it here): kubelet 1.35 needs `failCgroupV1: false`;
// `cgroupDriver: cgroupfs`, `cgroupsPerQOS: false` and `enforceNodeAllocatable: []` avoid the QoS
// cgroup tree; `oomScoreAdj: 0` (kubelet) and (kube-proxy) keep them from lowering their own OOM
// score; containerd's `restrict_oom_score_adj` clamps the scores kubelet asks for containers
// (Guaranteed pods get -997) to containerd's own, since anything lower fails in `runc init`.
// Without QoS cgroups kubelet names no cgroup parent, so containerd puts each container in
// /k8s.io/<container id> of every hierarchy; the cleanup finds them by the ids in the node's runc
// and task state. kubelet also sets six kernel sysctls (vm.overcommit_memory,
// kernel.panic, ...: it will not start unless they have its values); their earlier values are
// saved and put back when the last node on the machine stops.
//
// Teardown. stop() (and, when the owning process dies, a reaper process started with the node)
// kills kubelet, kube-proxy, every container (SIGKILL: a container's PID 1 ignores SIGTERM without
// a handler), every shim, containerd, then unmounts everything under the node's directory
// (rootfs overlays, shm, pod network namespaces, kubelet's volumes, the node's namespace), removes
// the veth (and with it the host routes), the cgroups, kubelet's /var/log/containers links,
// shim sockets and the directory. A node whose owner and reaper were both killed is swept by the
// next start (sweepStaleNodes), as buildkit.ts does for its daemons.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync } from 'node:fs';
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { pack as tarPack } from 'tar-stream';
import { buildLayer } from '../../src/core/image/layer.ts';
import { sha256Digest } from '../../src/core/image/registry.ts';
import { CLIENT_CERT_EXTENSIONS, signedCert } from './pki.ts';
import { logTail, mountsUnder, startComponent, type ComponentProcess } from './process.ts';

const run = promisify(execFile);
const REPO_ROOT = resolve(import.meta.dirname, '..', '..');
const THIS_FILE = join(REPO_ROOT, 'test', 'cluster', 'node.ts');
const DIR_PREFIX = 'kube-actions-node-';
const DIR_PATTERN = /^kube-actions-node-[0-9a-f]{6}$/;
const STATE_FILE = 'node.json';
const CNI_BIN_DIR = '/usr/lib/cni';
const CNI_PLUGINS = ['bridge', 'host-local', 'loopback', 'portmap'];
/** kubelet's container log links: a fixed path in kubelet (DefaultContainerLogsDir). */
const CONTAINER_LOG_LINKS = '/var/log/containers';
/** libcni's cache of results (containerd sets no other), files named by container id. */
const CNI_RESULTS = '/var/lib/cni/results';
/** kubelet's device plugin socket: a fixed path (deviceplugin/v1beta1.KubeletSocket). */
const DEVICE_PLUGIN_SOCKET = '/var/lib/kubelet/device-plugins/kubelet.sock';
/** The sysctls kubelet insists on (pkg/kubelet/cm setupKernelTunables). */
const KUBELET_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];

/** The taint every real node carries: pods that want real containers tolerate it. */
export const REAL_NODE_TAINT = {
  key: 'kube-actions.dev/real-node',
  value: 'true',
  effect: 'NoSchedule',
} as const;
/** The label every real node carries (value "true"). */
export const REAL_NODE_LABEL = 'kube-actions.dev/real-node';
/** Real nodes' /24s, 198.18.N.0/24 for N in 1..127: pods in the lower /25, the link at .128/30. */
export const REAL_NODE_POD_RANGE = '198.18.0.0/17';
/** kwok's (simulated) pod addresses: never routed, apart from the real nodes' subnets. */
export const KWOK_POD_CIDR = '198.18.128.0/17';
/** The Service range of a control plane without a real node (nothing routes it). */
export const DEFAULT_SERVICE_CIDR = '198.19.0.0/20';
/** Where test traffic may go besides loopback: every address the harness gives pods and Services. */
export const TEST_ADDRESS_RANGE = '198.18.0.0/15';

export interface Taint {
  key: string;
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/** What a node needs of its control plane (a LocalControlPlane's state has all of it). */
export interface ClusterAccess {
  /** The control plane's directory: its CA is `<dir>/pki/ca.crt` and `ca.key`. */
  dir: string;
  /** `https://127.0.0.1:PORT`. */
  server: string;
  /** An admin kubeconfig, to watch the node register. */
  kubeconfig: string;
  /** Directory holding kubelet and kube-proxy. */
  binDir: string;
}

export interface RealNodeOptions {
  cluster: ClusterAccess;
  /** See StartOptions.attached: die with this process (tests) or outlive it (demo). */
  attached?: boolean;
  /** Taints registered with the node; REAL_NODE_TAINT by default. */
  taints?: Taint[];
  /** Labels besides REAL_NODE_LABEL and kubernetes.io/hostname. */
  labels?: Record<string, string>;
  /** The cluster's Service range (a claimServiceRange reservation), routed from the host to this node. */
  serviceRange?: ServiceRange;
  /** A reservation made earlier (reserveNode), e.g. to know the gateway before the node starts. */
  reservation?: NodeReservation;
  /** Where the components' logs go; `<dir>/logs` by default (removed on stop). */
  logDir?: string;
}

export interface NodeReservation {
  id: string;
  dir: string;
  name: string;
  /** 198.18.N.0/25. */
  podCidr: string;
  bridgeAddress: string;
  gateway: string;
  nodeAddress: string;
  /** The claim files this node holds (released by its cleanup). */
  claims: string[];
}

export interface ServiceRange {
  cidr: string;
  /** The cluster's `kubernetes` Service address (the first in the range). */
  kubernetesServiceIp: string;
  claim: string;
}

export interface RealNodeState extends NodeReservation {
  hostInterface: string;
  nodeInterface: string;
  bridge: string;
  netns: string;
  containerdAddress: string;
  /** The host's routes through the node: its pod subnet and, if given, the Service range. */
  routes: string[];
  taints: Taint[];
  labels: Record<string, string>;
  pauseImage: string;
  attached: boolean;
  ownerPid: number;
  reaperPid?: number;
  pids: Record<string, number>;
  logDir: string;
  startedInMs: number;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/** State and process group of a process (from /proc/PID/stat), or undefined once it is gone. */
function procStat(pid: number): { state: string; pgrp: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, pgrp: Number(fields[2]) };
  } catch {
    return undefined;
  }
}

/**
 * Whether a process runs. A zombie does not: killed processes whose parent died are reparented to
 * PID 1, which may take a while to reap them, and a zombie holds no namespace, mount or socket.
 */
function alive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false;
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z';
}

/** The running (not zombie) members of process group `pgid`. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!(pid > 0)) continue;
    const stat = procStat(pid);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z') members.push(pid);
  }
  return members;
}

function groupAlive(pgid: number): boolean {
  return groupMembers(pgid).length > 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ok(file: string, args: string[]): Promise<boolean> {
  return run(file, args).then(
    () => true,
    () => false,
  );
}

function cacheRoot(): string {
  return process.env.KUBE_ACTIONS_CACHE ?? join(homedir(), '.cache', 'kube-actions');
}

function claimsDir(): string {
  return join(tmpdir(), `${DIR_PREFIX}claims`);
}

/** Mount points of the cgroup hierarchies (v1 controllers, named ones and a v2 tree). */
async function cgroupMounts(): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  return info
    .split('\n')
    .map((line) => {
      const fields = line.split(' ');
      const fsType = fields[fields.indexOf('-') + 1];
      return fsType === 'cgroup' || fsType === 'cgroup2' ? fields[4] : undefined;
    })
    .filter((p): p is string => p !== undefined);
}

/** The cgroup of CRI container `id` (containerd's default /k8s.io/<id>) in every hierarchy. */
async function cgroupDirs(ids: string[]): Promise<string[]> {
  const dirs: string[] = [];
  for (const mount of await cgroupMounts()) {
    for (const id of ids) {
      const dir = join(mount, 'k8s.io', id);
      if (existsSync(dir)) dirs.push(dir);
    }
  }
  return dirs;
}

/** The node's containers, by the ids in its runc state and containerd's task bundles. */
async function containerIds(dir: string): Promise<string[]> {
  const ids = new Set<string>();
  const sources = [
    join(dir, 'runc', 'k8s.io'),
    join(dir, 'containerd', 'state', 'io.containerd.runtime.v2.task', 'k8s.io'),
  ];
  for (const source of sources) {
    for (const id of await readdir(source).catch(() => [] as string[]))
      if (/^[0-9a-f]{64}$/.test(id)) ids.add(id);
  }
  return [...ids];
}

/** Processes in the containers' cgroups (whatever their parent). */
async function cgroupProcesses(ids: string[]): Promise<number[]> {
  const pids = new Set<number>();
  for (const dir of await cgroupDirs(ids)) {
    const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (Number(line) > 0) pids.add(Number(line));
  }
  return [...pids];
}

/** Processes whose command line mentions `needle` (the node's directory): its daemons and shims. */
async function processesMentioning(needle: string): Promise<{ pid: number; cmdline: string }[]> {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!(pid > 0) || pid === process.pid) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
    if (cmdline.includes(needle)) found.push({ pid, cmdline: cmdline.trim() });
  }
  return found;
}

/** Processes whose network namespace is `inode` (`net:[...]`). */
async function processesInNetns(inode: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!(pid > 0)) continue;
    if ((await readlink(`/proc/${pid}/ns/net`).catch(() => '')) === inode) found.push(pid);
  }
  return found;
}

async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(20);
}

async function linkExists(name: string): Promise<boolean> {
  return ok('ip', ['link', 'show', 'dev', name]);
}

// ---------------------------------------------------------------------------------------------
// Whether this machine can run a node

/** Why a real node cannot run here (for a visible test skip), or undefined when it can. */
export async function realNodeUnavailableReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `a real node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'the real node runs containerd and kubelet as root (not root here)';
  const commands: [string, string[], string][] = [
    ['runc', ['--version'], 'runc'],
    ['containerd', ['--version'], 'containerd'],
    ['ctr', ['--version'], 'containerd'],
    ['iptables', ['--version'], 'iptables'],
    ['conntrack', ['--version'], 'conntrack'],
    ['ip', ['-V'], 'iproute2'],
    ['nsenter', ['--version'], 'util-linux'],
    ['unshare', ['--version'], 'util-linux'],
  ];
  for (const [command, args, pkg] of commands) {
    if (!(await ok(command, args)))
      return `${command} is not installed (package ${pkg}; scripts/install-system-deps.sh installs it)`;
  }
  for (const plugin of CNI_PLUGINS) {
    if (!existsSync(join(CNI_BIN_DIR, plugin)))
      return `the CNI plugin ${CNI_BIN_DIR}/${plugin} is missing (package containernetworking-plugins)`;
  }
  if (!(await ok('go', ['version']))) return 'Go is not installed (the pause image is built from source)';
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (!/\toverlay$/m.test(filesystems)) return 'the kernel has no overlayfs (containerd snapshots need it)';
  const probe = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}probe-`));
  try {
    for (const d of ['lower', 'upper', 'work', 'merged']) await mkdir(join(probe, d));
    const o = `lowerdir=${probe}/lower,upperdir=${probe}/upper,workdir=${probe}/work`;
    await run('mount', ['-t', 'overlay', 'overlay', '-o', o, join(probe, 'merged')]).catch((err: Error) => {
      throw new Error(`an overlayfs mount failed here: ${err.message.trim()}`);
    });
    await run('umount', [join(probe, 'merged')]);
    // The node's own network namespace, with a veth into it.
    await writeFile(join(probe, 'netns'), '');
    await run('unshare', [`--net=${join(probe, 'netns')}`, 'true']).catch((err: Error) => {
      throw new Error(`cannot create a network namespace: ${err.message.trim()}`);
    });
    await run('umount', [join(probe, 'netns')]);
  } catch (err) {
    return (err as Error).message;
  } finally {
    for (const point of await mountsUnder(probe)) await run('umount', ['-l', point]).catch(() => undefined);
    await rm(probe, { recursive: true, force: true });
  }
  if (!(await cgroupMounts()).length) return 'no cgroup file system is mounted';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Address claims: one file per /24 (pods) or /20 (Services), holding the owning node's directory.

async function claim(kind: 'pods' | 'services', slots: number[], owner: string): Promise<[number, string]> {
  await mkdir(claimsDir(), { recursive: true });
  // Random order: concurrent starts rarely contend for the same slot.
  const order = [...slots].sort(() => Math.random() - 0.5);
  for (const slot of order) {
    const file = join(claimsDir(), `${kind}-${slot}`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(file, owner, { flag: 'wx' });
        return [slot, file];
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = await readFile(file, 'utf8').catch(() => '');
        // A holder whose directory is gone has been cleaned up without releasing (or crashed
        // before it had anything to clean): the slot is free.
        if (holder && existsSync(holder)) break;
        await unlink(file).catch(() => undefined);
      }
    }
  }
  throw new Error(`no free ${kind} range left among ${slots.length} (see ${claimsDir()})`);
}

/**
 * Reserves a Service range for a cluster that will have a real node: 198.19.16S.0/20, S in 1..15.
 * The claim belongs to `owner` (a node reservation's directory) and is released with the node.
 */
export async function claimServiceRange(owner: string): Promise<ServiceRange> {
  const [slot, file] = await claim(
    'services',
    Array.from({ length: 15 }, (_, i) => i + 1),
    owner,
  );
  return { cidr: `198.19.${slot * 16}.0/20`, kubernetesServiceIp: `198.19.${slot * 16}.1`, claim: file };
}

/** Creates a node's directory and claims its addresses; start it with RealNode.start. */
export async function reserveNode(): Promise<NodeReservation> {
  await sweepStaleNodes();
  const made = async (): Promise<[string, string]> => {
    for (;;) {
      const id = randomBytes(3).toString('hex');
      const dir = join(tmpdir(), `${DIR_PREFIX}${id}`);
      try {
        await mkdir(dir);
        return [id, dir];
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  };
  const [id, dir] = await made();
  // The owner's pid first: a sweep running now must not take a half-made node for a stale one.
  await writeFile(join(dir, 'owner.pid'), `${process.pid}\n`);
  const [n, file] = await claim(
    'pods',
    Array.from({ length: 127 }, (_, i) => i + 1),
    dir,
  );
  return {
    id,
    dir,
    name: `real-node-${id}`,
    podCidr: `198.18.${n}.0/25`,
    bridgeAddress: `198.18.${n}.1`,
    gateway: `198.18.${n}.129`,
    nodeAddress: `198.18.${n}.130`,
    claims: [file],
  };
}

// ---------------------------------------------------------------------------------------------
// The pause image: a tiny static Go program (exits on SIGTERM/SIGINT, reaps orphans, as
// Kubernetes' pause does), built with the pinned Go and layered by our own layer builder.

const PAUSE_SOURCE = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

// The pod sandbox's process: holds the pod's namespaces, exits on SIGINT/SIGTERM, and reaps
// the zombies a shared PID namespace hands it.
func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
`;
const PAUSE_RECIPE = 1;

/** An OCI image archive (for `ctr images import`) of one image; returns its path. */
async function pauseImageArchive(): Promise<{ archive: string; name: string }> {
  const { stdout: goVersion } = await run('go', ['version']);
  const key = createHash('sha256')
    .update(`${PAUSE_RECIPE}\n${goVersion}\n${PAUSE_SOURCE}`)
    .digest('hex')
    .slice(0, 16);
  const name = `kube-actions.invalid/pause:${key}`;
  const dir = join(cacheRoot(), 'images', `pause-${key}`);
  const archive = join(dir, 'pause.oci.tar');
  if (existsSync(archive)) return { archive, name };
  const work = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}pause-`));
  try {
    await writeFile(join(work, 'go.mod'), 'module pause\n\ngo 1.24\n');
    await writeFile(join(work, 'main.go'), PAUSE_SOURCE);
    await run('go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', join(work, 'pause'), '.'], {
      cwd: work,
      env: { ...process.env, CGO_ENABLED: '0', GOTOOLCHAIN: 'local', GOFLAGS: '-mod=readonly' },
    });
    await chmod(join(work, 'pause'), 0o755);
    const layer = await buildLayer({ source: join(work, 'pause'), destination: '/pause' }, { mtime: 0 });
    const created = new Date(0).toISOString();
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created,
        config: { Entrypoint: ['/pause'], User: '65535:65535' },
        rootfs: { type: 'layers', diff_ids: [layer.diffId] },
        history: [{ created, created_by: 'kube-actions pause (test/cluster/node.ts)' }],
      }),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: sha256Digest(config),
          size: config.length,
        },
        layers: [
          {
            mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
            digest: layer.digest,
            size: layer.size,
          },
        ],
      }),
    );
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: sha256Digest(manifest),
            size: manifest.length,
            platform: { architecture: 'amd64', os: 'linux' },
            annotations: {
              'io.containerd.image.name': name,
              'org.opencontainers.image.ref.name': key,
            },
          },
        ],
      }),
    );
    const files: [string, Buffer][] = [
      ['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
      ['index.json', index],
      ...[config, manifest, layer.data].map(
        (blob) => [`blobs/sha256/${sha256Digest(blob).slice(7)}`, blob] as [string, Buffer],
      ),
    ];
    const pack = tarPack();
    const chunks: Buffer[] = [];
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    const done = new Promise<void>((r, j) => {
      pack.on('end', r);
      pack.on('error', j);
    });
    for (const d of ['blobs/', 'blobs/sha256/'])
      pack.entry({ name: d, type: 'directory', mode: 0o755, mtime: new Date(0) });
    for (const [path, data] of files) pack.entry({ name: path, mode: 0o644, mtime: new Date(0) }, data);
    pack.finalize();
    await done;
    await mkdir(dir, { recursive: true });
    await writeFile(`${archive}.tmp-${process.pid}`, Buffer.concat(chunks));
    await rename(`${archive}.tmp-${process.pid}`, archive);
    return { archive, name };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration files

function toml(value: string): string {
  return JSON.stringify(value);
}

function containerdConfig(state: RealNodeState): string {
  const c = join(state.dir, 'containerd');
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    'version = 2',
    `root = ${toml(join(c, 'root'))}`,
    `state = ${toml(join(c, 'state'))}`,
    `temp = ${toml(join(c, 'tmp'))}`,
    // containerd's own OOM score stays as it is: lowering it needs CAP_SYS_RESOURCE.
    'oom_score = 0',
    // Nothing here uses them, and some probe the host (modules, file systems) at start.
    'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",',
    '  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
    '[grpc]',
    `  address = ${toml(state.containerdAddress)}`,
    '[ttrpc]',
    `  address = ${toml(`${state.containerdAddress}.ttrpc`)}`,
    '[debug]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${toml(join(c, 'opt'))}`,
    `[${cri}]`,
    `  sandbox_image = ${toml(state.pauseImage)}`,
    // Without CAP_SYS_RESOURCE no container may get a lower OOM score than containerd's.
    '  restrict_oom_score_adj = true',
    // Pod network namespaces under the node's directory, not in the shared /var/run/netns.
    '  netns_mounts_under_state_dir = true',
    '  disable_apparmor = true',
    '  disable_hugetlb_controller = true',
    '  tolerate_missing_hugetlb_controller = true',
    '  enable_unprivileged_ports = false',
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.runc.options]`,
    // runc's state of these containers apart from any other runc user's (/run/containerd/runc).
    `  Root = ${toml(join(state.dir, 'runc'))}`,
    '  SystemdCgroup = false',
    `[${cri}.cni]`,
    `  bin_dir = ${toml(CNI_BIN_DIR)}`,
    `  conf_dir = ${toml(join(state.dir, 'cni', 'net.d'))}`,
    '  max_conf_num = 1',
    `[${cri}.registry]`,
    // hosts.toml per registry (writeRegistryHosts), read at every pull: registries can be added
    // while the node runs.
    `  config_path = ${toml(join(c, 'certs.d'))}`,
    '',
  ].join('\n');
}

function cniConfig(state: RealNodeState): string {
  const n = state.bridgeAddress.split('.')[2]!;
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: `kube-actions-${state.id}`,
      plugins: [
        {
          type: 'bridge',
          bridge: state.bridge,
          isGateway: true,
          // No masquerading and (below) no default route: pods cannot leave the machine.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: join(state.dir, 'cni', 'ipam'),
            ranges: [
              [
                {
                  subnet: state.podCidr,
                  rangeStart: `198.18.${n}.2`,
                  rangeEnd: `198.18.${n}.126`,
                  gateway: state.bridgeAddress,
                },
              ],
            ],
            // Only the test range: pods, Services and the gateway.
            routes: [{ dst: TEST_ADDRESS_RANGE, gw: state.bridgeAddress }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeconfigFor(state: RealNodeState, apiPort: string, ca: string, cert: string, key: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: kube-actions-test',
    '  cluster:',
    `    server: https://${state.gateway}:${apiPort}`,
    // The forwarder on the gateway reaches the apiserver, whose certificate names localhost.
    '    tls-server-name: localhost',
    `    certificate-authority: ${ca}`,
    'users:',
    '- name: node',
    '  user:',
    `    client-certificate: ${cert}`,
    `    client-key: ${key}`,
    'contexts:',
    '- name: kube-actions-test',
    '  context: { cluster: kube-actions-test, user: node }',
    'current-context: kube-actions-test',
    '',
  ].join('\n');
}

function kubeletConfig(state: RealNodeState, caCert: string): string {
  const config = {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // cgroup v1 (see the top of this file).
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    oomScoreAdj: 0,
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${state.containerdAddress}`,
    address: state.nodeAddress,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: caCert },
    },
    authorization: { mode: 'Webhook' },
    registerWithTaints: state.taints,
    // No cluster DNS, and no host resolvers either: pods resolve nothing (they reach IPs only).
    resolvConf: '',
    clusterDomain: 'cluster.local',
    podLogsDir: join(state.dir, 'pod-logs'),
    volumePluginDir: join(state.dir, 'volume-plugins'),
    // Disk pressure from other work on the machine must not evict test pods, nor collect images.
    imageGCHighThresholdPercent: 100,
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    serializeImagePulls: false,
    // Quicker reactions than a production node needs.
    syncFrequency: '10s',
    fileCheckFrequency: '10s',
    nodeStatusUpdateFrequency: '5s',
    nodeStatusReportFrequency: '30s',
    shutdownGracePeriod: '0s',
    rotateCertificates: false,
    serverTLSBootstrap: false,
    logging: { format: 'text' },
  };
  return JSON.stringify(config, null, 2);
}

function kubeProxyConfig(state: RealNodeState, kubeconfig: string): string {
  return JSON.stringify(
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      clientConnection: { kubeconfig },
      mode: 'iptables',
      hostnameOverride: state.name,
      bindAddress: state.nodeAddress,
      healthzBindAddress: `${state.nodeAddress}:10256`,
      metricsBindAddress: '127.0.0.1:10249',
      clusterCIDR: REAL_NODE_POD_RANGE,
      nodePortAddresses: [`${state.nodeAddress}/32`],
      // Lowering its OOM score needs CAP_SYS_RESOURCE; the conntrack table size and hash are
      // machine-wide (not per namespace): leave them all alone.
      oomScoreAdj: 0,
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      iptables: { syncPeriod: '30s', minSyncPeriod: '0s', masqueradeAll: false },
      logging: { format: 'text' },
    },
    null,
    2,
  );
}

// ---------------------------------------------------------------------------------------------
// Certificates: the kubelet (system:node:<name>, group system:nodes: the Node authorizer) and
// kube-proxy (system:kube-proxy: bound to system:node-proxier by default), signed by the
// control plane's CA.

function clientCert(
  dir: string,
  stem: string,
  subject: string,
  ca: { cert: string; key: string },
): Promise<{ cert: string; key: string }> {
  return signedCert({ dir, caCert: ca.cert, caKey: ca.key }, stem, subject, CLIENT_CERT_EXTENSIONS);
}

// ---------------------------------------------------------------------------------------------
// Sysctls kubelet changes: saved by the first node on the machine, restored by the last.

function sysctlFile(): string {
  return join(claimsDir(), 'sysctls.json');
}

async function saveSysctls(): Promise<void> {
  await mkdir(claimsDir(), { recursive: true });
  const values: Record<string, string> = {};
  for (const name of KUBELET_SYSCTLS) {
    values[name] = (await readFile(`/proc/sys/${name}`, 'utf8').catch(() => '')).trim();
  }
  // Only when absent: a node already running changed them, and this file holds the originals.
  await writeFile(sysctlFile(), JSON.stringify(values), { flag: 'wx' }).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    },
  );
}

/** Whether a node other than the one in `except` is alive on this machine. */
async function otherLiveNodes(except: string): Promise<string[]> {
  const live: string[] = [];
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const dir = join(tmpdir(), name);
    if (!DIR_PATTERN.test(name) || dir === except) continue;
    if (await nodeAlive(dir)) live.push(dir);
  }
  return live;
}

async function restoreSysctls(except: string): Promise<void> {
  if (!existsSync(sysctlFile()) || (await otherLiveNodes(except)).length) return;
  const values = JSON.parse(await readFile(sysctlFile(), 'utf8')) as Record<string, string>;
  for (const [name, value] of Object.entries(values)) {
    if (value !== '') await writeFile(`/proc/sys/${name}`, value).catch(() => undefined);
  }
  await unlink(sysctlFile()).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// Cleanup: usable on a live node (stop), on one whose owner just died (the reaper) and on the
// leftovers of an earlier run (sweep). Every step is best-effort and idempotent.

async function readState(dir: string): Promise<Partial<RealNodeState>> {
  return JSON.parse(
    await readFile(join(dir, STATE_FILE), 'utf8').catch(() => '{}'),
  ) as Partial<RealNodeState>;
}

async function readPid(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8').catch(() => '')).trim());
}

/** Whether anything of the node in `dir` still runs: its owner, reaper or a component. */
async function nodeAlive(dir: string): Promise<boolean> {
  // Made a moment ago by a reserveNode that has not written its owner's pid yet.
  if (!existsSync(join(dir, 'owner.pid'))) {
    const made = await stat(dir).then(
      (s) => s.mtimeMs,
      () => 0,
    );
    if (Date.now() - made < 60_000) return true;
  }
  const state = await readState(dir);
  const pids = [
    await readPid(join(dir, 'owner.pid')),
    await readPid(join(dir, 'reaper.pid')),
    ...Object.values(state.pids ?? {}),
  ];
  // The owner of a detached node (the demo's CLI) exits after starting it; its components run on.
  return pids.some((pid) => alive(pid));
}

/** The shim sockets (`/run/containerd/s/...`) named in the node's task bundles. */
async function shimSockets(dir: string): Promise<string[]> {
  const tasks = join(dir, 'containerd', 'state', 'io.containerd.runtime.v2.task');
  const sockets: string[] = [];
  for (const ns of await readdir(tasks).catch(() => [] as string[])) {
    for (const id of await readdir(join(tasks, ns)).catch(() => [] as string[])) {
      const address = await readFile(join(tasks, ns, id, 'address'), 'utf8').catch(() => '');
      if (address.startsWith('unix://')) sockets.push(address.slice('unix://'.length).trim());
    }
  }
  return sockets;
}

async function runcContainers(root: string): Promise<string[]> {
  if (!existsSync(root)) return [];
  const { stdout } = await run('runc', ['--root', root, 'list', '--format', 'json']).catch(() => ({
    stdout: '',
  }));
  return ((JSON.parse(stdout || 'null') as { id: string }[] | null) ?? []).map((c) => c.id);
}

async function cleanUp(dir: string): Promise<void> {
  const state = await readState(dir);
  const ids = await containerIds(dir);
  const keep = new Set([process.pid]);
  // 1. The components, at once and with SIGKILL: nothing of a test node's state is kept, and
  //    kubelet then restarts nothing (graceful, it takes seconds to go).
  const groups = Object.values(state.pids ?? {}).filter((pid) => pid > 0 && groupAlive(pid));
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await killAll(groups.flatMap(groupMembers));
  // 2. The containers (their PID 1 ignores SIGTERM, so SIGKILL), through runc and by cgroup.
  const runcRoot = join(dir, 'runc', 'k8s.io');
  for (const cid of await runcContainers(runcRoot)) {
    await run('runc', ['--root', runcRoot, 'kill', cid, 'KILL']).catch(() => undefined);
  }
  await killAll((await cgroupProcesses(ids)).filter((p) => !keep.has(p)));
  for (const cid of await runcContainers(runcRoot)) {
    await run('runc', ['--root', runcRoot, 'delete', '--force', cid]).catch(() => undefined);
  }
  // 3. Shims and anything else started for the node (they name its directory), then their sockets.
  const sockets = await shimSockets(dir);
  await killAll((await processesMentioning(dir)).map((p) => p.pid).filter((p) => !keep.has(p)));
  for (const socket of sockets) await rm(socket, { force: true });
  // 4. The link (the host's routes through it go with it), then every mount: rootfs overlays,
  //    shm, pod network namespaces, kubelet's volumes and root, the node's namespace.
  if (state.hostInterface && (await linkExists(state.hostInterface))) {
    await run('ip', ['link', 'del', 'dev', state.hostInterface]).catch(() => undefined);
  }
  for (let pass = 0; pass < 3; pass++) {
    const points = await mountsUnder(dir);
    if (!points.length) break;
    for (const point of points) {
      // Lazy as a last resort: a mount still busy is detached now and freed when released.
      await run('umount', [point]).catch(() => run('umount', ['-l', point]).catch(() => undefined));
    }
  }
  // 5. The cgroups (empty now), kubelet's log links, the claims, the sysctls, the directory.
  for (const cg of await cgroupDirs(ids)) await rmdir(cg).catch(() => undefined);
  for (const link of await readdir(CONTAINER_LOG_LINKS).catch(() => [] as string[])) {
    const target = await readlink(join(CONTAINER_LOG_LINKS, link)).catch(() => '');
    if (target.startsWith(`${dir}/`)) await unlink(join(CONTAINER_LOG_LINKS, link)).catch(() => undefined);
  }
  for (const file of await cniResults(ids)) await unlink(file).catch(() => undefined);
  for (const file of [...(state.claims ?? []), ...(await claimsOf(dir))]) {
    if ((await readFile(file, 'utf8').catch(() => '')) === dir) await unlink(file).catch(() => undefined);
  }
  await restoreSysctls(dir);
  await rm(dir, { recursive: true, force: true });
  if (!(await otherLiveNodes(dir)).length) {
    // Made by kubelet, libcni and the shims at fixed paths (and shared by every node): left
    // alone while another node runs, and only when empty (or, the socket, when nobody listens).
    await rmdir(CONTAINER_LOG_LINKS).catch(() => undefined);
    await rmdir(CNI_RESULTS).catch(() => undefined);
    await rmdir(dirname(CNI_RESULTS)).catch(() => undefined);
    if (existsSync(DEVICE_PLUGIN_SOCKET) && !(await listening(DEVICE_PLUGIN_SOCKET))) {
      await unlink(DEVICE_PLUGIN_SOCKET).catch(() => undefined);
      await rmdir(dirname(DEVICE_PLUGIN_SOCKET)).catch(() => undefined);
      await rmdir(dirname(dirname(DEVICE_PLUGIN_SOCKET))).catch(() => undefined);
    }
    await rmdir('/run/containerd/s').catch(() => undefined);
    await rmdir('/run/containerd').catch(() => undefined);
    // containerd's parent cgroup of CRI containers, if empty.
    for (const mount of await cgroupMounts()) await rmdir(join(mount, 'k8s.io')).catch(() => undefined);
  }
}

/** libcni's cached results of these containers' networks. */
async function cniResults(ids: string[]): Promise<string[]> {
  const names = await readdir(CNI_RESULTS).catch(() => [] as string[]);
  return names.filter((name) => ids.some((id) => name.includes(id))).map((name) => join(CNI_RESULTS, name));
}

/** Whether a process accepts connections on the unix socket `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolveListening) => {
    const socket = connect(path, () => {
      socket.destroy();
      resolveListening(true);
    });
    socket.on('error', () => resolveListening(false));
  });
}

async function claimsOf(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const name of await readdir(claimsDir()).catch(() => [] as string[])) {
    if (!/^(pods|services)-\d+$/.test(name)) continue;
    const file = join(claimsDir(), name);
    if ((await readFile(file, 'utf8').catch(() => '')) === dir) files.push(file);
  }
  return files;
}

/**
 * Cleans up every node left by an earlier run whose owner, reaper and components are all gone
 * (SIGKILLed together, a crash), and frees claims whose node directory no longer exists.
 * Returns the directories it cleaned.
 */
export async function sweepStaleNodes(): Promise<string[]> {
  const cleaned: string[] = [];
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    const dir = join(tmpdir(), name);
    if (!DIR_PATTERN.test(name) || (await nodeAlive(dir))) continue;
    await cleanUp(dir).catch(() => undefined);
    cleaned.push(dir);
  }
  for (const name of await readdir(claimsDir()).catch(() => [] as string[])) {
    const file = join(claimsDir(), name);
    if (!/^(pods|services)-\d+$/.test(name)) continue;
    const holder = await readFile(file, 'utf8').catch(() => '');
    if (holder && !existsSync(holder)) await unlink(file).catch(() => undefined);
  }
  if (!(await otherLiveNodes('')).length) await restoreSysctls('');
  return cleaned;
}

/** Identifies what of a node could outlive it, for leftovers(). */
export interface NodeTraces {
  dir: string;
  name: string;
  hostInterface: string;
  bridge: string;
  podCidr: string;
  /** `net:[inode]` of the node's network namespace. */
  netns: string;
  shimSockets: string[];
  containerIds: string[];
}

/** What a running node would leave behind if it were killed now (see leftovers). */
export async function nodeTraces(state: RealNodeState): Promise<NodeTraces> {
  // The namespace bound at <dir>/netns: its inode is the namespace's (what /proc/*/ns/net name).
  const ino = await stat(state.netns).then(
    (s) => s.ino,
    () => 0,
  );
  const netns = ino ? `net:[${ino}]` : '';
  return {
    dir: state.dir,
    name: state.name,
    hostInterface: state.hostInterface,
    bridge: state.bridge,
    podCidr: state.podCidr,
    netns,
    shimSockets: await shimSockets(state.dir),
    containerIds: await containerIds(state.dir),
  };
}

/**
 * Everything of a node still present on the machine: processes (daemons, shims, containers),
 * mounts, its directory, cgroups, network namespace, host link and routes, shim sockets, log
 * links. Empty once the node is completely gone.
 */
export async function leftovers(traces: NodeTraces): Promise<string[]> {
  const found: string[] = [];
  for (const p of await processesMentioning(traces.dir)) found.push(`process ${p.pid}: ${p.cmdline}`);
  for (const pid of await cgroupProcesses(traces.containerIds)) found.push(`container process ${pid}`);
  if (traces.netns) {
    for (const pid of await processesInNetns(traces.netns)) found.push(`process ${pid} in the node's netns`);
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    if (info.includes(traces.netns)) found.push(`a mount of the node's network namespace ${traces.netns}`);
  }
  for (const point of await mountsUnder(traces.dir)) found.push(`mount ${point}`);
  if (existsSync(traces.dir)) found.push(`directory ${traces.dir}`);
  for (const cg of await cgroupDirs(traces.containerIds)) found.push(`cgroup ${cg}`);
  if (await linkExists(traces.hostInterface)) found.push(`link ${traces.hostInterface}`);
  if (await linkExists(traces.bridge)) found.push(`bridge ${traces.bridge} on the host`);
  const { stdout: routes } = await run('ip', ['route', 'show']).catch(() => ({ stdout: '' }));
  for (const line of routes.split('\n')) {
    if (line.startsWith(`${traces.podCidr} `) || line.includes(` dev ${traces.hostInterface} `))
      found.push(`route ${line.trim()}`);
  }
  for (const socket of traces.shimSockets) if (existsSync(socket)) found.push(`shim socket ${socket}`);
  for (const link of await readdir(CONTAINER_LOG_LINKS).catch(() => [] as string[])) {
    const target = await readlink(join(CONTAINER_LOG_LINKS, link)).catch(() => '');
    if (target.startsWith(`${traces.dir}/`)) found.push(`log link ${CONTAINER_LOG_LINKS}/${link}`);
  }
  for (const file of await claimsOf(traces.dir)) found.push(`address claim ${file}`);
  for (const file of await cniResults(traces.containerIds)) found.push(`CNI result ${file}`);
  return found;
}

/** The host's iptables chains (every table): a node's chains live in its namespace, never here. */
export async function hostIptablesChains(): Promise<string[]> {
  const { stdout } = await run('iptables-save').catch(() => ({ stdout: '' }));
  return stdout
    .split('\n')
    .filter((l) => l.startsWith(':'))
    .map((l) => l.slice(1).split(' ')[0]!);
}

// ---------------------------------------------------------------------------------------------
// TCP forwarding onto the gateway address

export interface Forwarder {
  /** `ADDRESS:PORT` it listens on. */
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Listens on `address:port` (port 0: any; a taken port falls back to any) and forwards every
 * connection to `target` (`127.0.0.1:PORT`): lets a server bound to loopback answer pods on a
 * node's gateway address. Closing it ends its connections.
 */
export async function forwardTcp(address: string, port: number, target: string): Promise<Forwarder> {
  const colon = target.lastIndexOf(':');
  const targetHost = target.slice(0, colon);
  const targetPort = Number(target.slice(colon + 1));
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const listen = (p: number) =>
    new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(p, address, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
  await listen(port).catch(async (err: NodeJS.ErrnoException) => {
    if (port === 0 || err.code !== 'EADDRINUSE') throw err;
    await listen(0);
  });
  const bound = (server.address() as { port: number }).port;
  return {
    host: `${address}:${bound}`,
    port: bound,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Lets the node's containerd pull `host` (an image reference's registry part, e.g. the test
 * registry's `127.0.0.1:PORT`) over plain HTTP from `endpoint` (`ADDRESS:PORT` it reaches, e.g.
 * the registry's gateway address; `host` itself by default). containerd reads these files at each
 * pull, so this works while the node runs.
 */
export async function writeRegistryHosts(nodeDir: string, host: string, endpoint = host): Promise<string> {
  const dir = join(nodeDir, 'containerd', 'certs.d', host);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'hosts.toml');
  await writeFile(
    file,
    [
      `server = ${toml(`http://${endpoint}`)}`,
      '',
      `[host.${toml(`http://${endpoint}`)}]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n'),
  );
  return file;
}

// ---------------------------------------------------------------------------------------------

function httpStatus(url: string): Promise<number> {
  return new Promise((resolveStatus) => {
    const req = httpRequest(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolveStatus(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolveStatus(0));
    req.end();
  });
}

async function waitFor(
  what: string,
  components: ComponentProcess[],
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const exited = new Map<string, number | string>();
  for (const c of components) void c.exited.then((code) => exited.set(c.name, code));
  let last = '';
  while (Date.now() < deadline) {
    for (const c of components) {
      if (exited.has(c.name))
        throw new Error(
          `${what}: ${c.name} exited (${exited.get(c.name)}). Log tail:\n${logTail(c.logFile, 30)}`,
        );
    }
    try {
      if (await check()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  const tails = components.map((c) => `--- ${c.name}:\n${logTail(c.logFile, 15)}`).join('\n');
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${last})` : ''}\n${tails}`);
}

/** Starts the reaper: it cleans the node up when this process dies (its stdin pipe closes). */
function startReaper(dir: string, logDir: string): number {
  const log = openSync(join(logDir, 'reaper.log'), 'a');
  const child = spawn(process.execPath, [THIS_FILE, 'reap', dir], {
    detached: true,
    stdio: ['pipe', log, log],
  });
  closeSync(log);
  if (child.pid === undefined) throw new Error('could not start the node reaper');
  child.unref();
  (child.stdin as { unref?: () => void } | null)?.unref?.();
  return child.pid;
}

export class RealNode {
  readonly state: RealNodeState;

  private constructor(state: RealNodeState) {
    this.state = state;
  }

  get name(): string {
    return this.state.name;
  }

  /** The host's address on the node's link: servers that pods must reach listen here. */
  get gateway(): string {
    return this.state.gateway;
  }

  /** A toleration of this node's taints, for pods that should run on it. */
  tolerations(): k8s.V1Toleration[] {
    return this.state.taints.map((t) => ({
      key: t.key,
      operator: t.value === undefined ? 'Exists' : 'Equal',
      ...(t.value === undefined ? {} : { value: t.value }),
      effect: t.effect,
    }));
  }

  /** A node selector for this node only. */
  nodeSelector(): Record<string, string> {
    return { 'kubernetes.io/hostname': this.state.name };
  }

  /** See writeRegistryHosts. */
  addRegistry(host: string, endpoint = host): Promise<string> {
    return writeRegistryHosts(this.state.dir, host, endpoint);
  }

  /** Re-attaches to a node started earlier (e.g. detached by the demo). */
  static async load(dir: string): Promise<RealNode> {
    return new RealNode(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as RealNodeState);
  }

  static async start(options: RealNodeOptions): Promise<RealNode> {
    const started = Date.now();
    const attached = options.attached ?? true;
    const reservation = options.reservation ?? (await reserveNode());
    const { dir, id } = reservation;
    const logDir = options.logDir ?? join(dir, 'logs');
    await mkdir(logDir, { recursive: true });
    const state: RealNodeState = {
      ...reservation,
      claims: [...reservation.claims, ...(options.serviceRange ? [options.serviceRange.claim] : [])],
      hostInterface: `ka${id}h`,
      nodeInterface: `ka${id}n`,
      bridge: `kabr${id}`,
      netns: join(dir, 'netns'),
      containerdAddress: join(dir, 'containerd', 'containerd.sock'),
      routes: [reservation.podCidr, ...(options.serviceRange ? [options.serviceRange.cidr] : [])],
      taints: options.taints ?? [REAL_NODE_TAINT],
      labels: {
        ...options.labels,
        [REAL_NODE_LABEL]: 'true',
        'kubernetes.io/hostname': reservation.name,
      },
      pauseImage: '',
      attached,
      ownerPid: process.pid,
      pids: {},
      logDir,
      startedInMs: 0,
    };
    const save = () => writeFile(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
    await save();
    if (attached) {
      state.reaperPid = startReaper(dir, logDir);
      await writeFile(join(dir, 'reaper.pid'), `${state.reaperPid}\n`);
      await save();
    }
    const node = new RealNode(state);
    const components: ComponentProcess[] = [];
    const launch = async (name: string, binary: string, args: string[], inNetns = true) => {
      const [command, argv] = inNetns
        ? ['nsenter', [`--net=${state.netns}`, binary, ...args]]
        : [binary, args];
      const p = startComponent(name, command, argv, { logDir, attached });
      components.push(p);
      state.pids[name] = p.pid;
      await save();
      return p;
    };
    try {
      const ca = {
        cert: join(options.cluster.dir, 'pki', 'ca.crt'),
        key: join(options.cluster.dir, 'pki', 'ca.key'),
      };
      const pki = join(dir, 'pki');
      await mkdir(pki);
      const [pause, kubeletCert, proxyCert] = await Promise.all([
        pauseImageArchive(),
        clientCert(pki, 'kubelet', `/O=system:nodes/CN=system:node:${state.name}`, ca),
        clientCert(pki, 'kube-proxy', '/CN=system:kube-proxy', ca),
      ]);
      state.pauseImage = pause.name;

      // The network: the namespace, the veth, addresses and the host's routes.
      await writeFile(state.netns, '');
      await run('unshare', [`--net=${state.netns}`, 'true']);
      const inNs = (args: string[]) => run('nsenter', [`--net=${state.netns}`, ...args]);
      await run('ip', [
        'link',
        'add',
        state.hostInterface,
        'type',
        'veth',
        'peer',
        'name',
        state.nodeInterface,
        'netns',
        state.netns,
      ]);
      await run('ip', ['addr', 'add', `${state.gateway}/30`, 'dev', state.hostInterface]);
      await run('ip', ['link', 'set', state.hostInterface, 'up']);
      await inNs(['ip', 'link', 'set', 'lo', 'up']);
      await inNs(['ip', 'addr', 'add', `${state.nodeAddress}/30`, 'dev', state.nodeInterface]);
      await inNs(['ip', 'link', 'set', state.nodeInterface, 'up']);
      // The node routes between its pods and the host; it has no default route at all.
      await inNs(['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']);
      for (const cidr of state.routes) {
        await run('ip', ['route', 'add', cidr, 'via', state.nodeAddress, 'dev', state.hostInterface]);
      }

      for (const d of [
        'containerd/certs.d',
        'cni/net.d',
        'cni/ipam',
        'kubelet',
        'pod-logs',
        'volume-plugins',
        'runc',
      ]) {
        await mkdir(join(dir, d), { recursive: true });
      }
      await writeFile(join(dir, 'containerd', 'config.toml'), containerdConfig(state));
      await writeFile(join(dir, 'cni', 'net.d', '10-kube-actions.conflist'), cniConfig(state));

      const containerd = await launch('containerd', 'containerd', [
        '--config',
        join(dir, 'containerd', 'config.toml'),
      ]);
      const ctr = (args: string[]) => run('ctr', ['--address', state.containerdAddress, ...args]);
      await waitFor('containerd', [containerd], () => ctr(['version']).then(() => true), 30_000);
      await ctr(['--namespace', 'k8s.io', 'images', 'import', pause.archive]);

      // kubelet and kube-proxy reach the apiserver on loopback through a forwarder on the gateway
      // (also the `kubernetes` Service's endpoint for pods, see controlplane.ts).
      const apiPort = new URL(options.cluster.server).port;
      const forwarder = await launch(
        'apiserver-forwarder',
        process.execPath,
        [THIS_FILE, 'forward', `${state.gateway}:${apiPort}`, `127.0.0.1:${apiPort}`, dir],
        false,
      );
      await waitFor(
        'the apiserver forwarder',
        [forwarder],
        () =>
          new Promise<boolean>((r) => {
            const s = connect(Number(apiPort), state.gateway, () => {
              s.destroy();
              r(true);
            });
            s.on('error', () => r(false));
          }),
        10_000,
      );

      const kubeletKubeconfig = join(dir, 'kubelet.kubeconfig');
      const proxyKubeconfig = join(dir, 'kube-proxy.kubeconfig');
      await writeFile(
        kubeletKubeconfig,
        kubeconfigFor(state, apiPort, ca.cert, kubeletCert.cert, kubeletCert.key),
      );
      await writeFile(proxyKubeconfig, kubeconfigFor(state, apiPort, ca.cert, proxyCert.cert, proxyCert.key));
      await writeFile(join(dir, 'kubelet.json'), kubeletConfig(state, ca.cert));
      await writeFile(join(dir, 'kube-proxy.json'), kubeProxyConfig(state, proxyKubeconfig));
      await saveSysctls();
      const bin = (name: string) => join(options.cluster.binDir, name);
      const kubelet = await launch('kubelet', bin('kubelet'), [
        `--config=${join(dir, 'kubelet.json')}`,
        `--kubeconfig=${kubeletKubeconfig}`,
        `--root-dir=${join(dir, 'kubelet')}`,
        `--cert-dir=${join(dir, 'kubelet', 'pki')}`,
        `--hostname-override=${state.name}`,
        `--node-ip=${state.nodeAddress}`,
        `--node-labels=${Object.entries(state.labels)
          .filter(([k]) => k !== 'kubernetes.io/hostname')
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}`,
        '--v=1',
      ]);
      const proxy = await launch('kube-proxy', bin('kube-proxy'), [
        `--config=${join(dir, 'kube-proxy.json')}`,
        '--v=1',
      ]);

      const kc = new k8s.KubeConfig();
      kc.loadFromFile(options.cluster.kubeconfig);
      const core = kc.makeApiClient(k8s.CoreV1Api);
      await waitFor(
        `node ${state.name} to register Ready`,
        [containerd, kubelet, proxy],
        async () => {
          const n = await core.readNode({ name: state.name });
          return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
        },
        60_000,
      );
      await waitFor(
        'kube-proxy /healthz',
        [proxy],
        async () => (await httpStatus(`http://${state.nodeAddress}:10256/healthz`)) === 200,
        30_000,
      );
      state.startedInMs = Date.now() - started;
      await save();
      return node;
    } catch (err) {
      await node.stop().catch(() => undefined);
      throw err;
    }
  }

  /** Whether the node's daemons are all still running. */
  running(): boolean {
    return ['containerd', 'kubelet', 'kube-proxy', 'apiserver-forwarder'].every((n) =>
      alive(this.state.pids[n]),
    );
  }

  /** Removes the node completely (see the top of this file); its Node object stays in the API. */
  stop(): Promise<void> {
    return stopNode(this.state);
  }
}

/**
 * Removes a node (or a reservation that never started) completely, given its state or only its
 * directory: what RealNode.stop does, for callers holding no RealNode.
 */
export async function stopNode(node: Pick<RealNodeState, 'dir'> & Partial<RealNodeState>): Promise<void> {
  // The reaper would do the same on its own: stop it first so the two do not race.
  const reaper = node.reaperPid ?? (await readPid(join(node.dir, 'reaper.pid')));
  if (alive(reaper)) await killAll([reaper]);
  await cleanUp(node.dir);
}

// ---------------------------------------------------------------------------------------------
// As a program (the reaper, the forwarder, and a node started from a shell or a test):
//   node test/cluster/node.ts reap <dir>                        cleans <dir> up when stdin closes
//   node test/cluster/node.ts forward <listen> <target> [tag]   forwards TCP (tag: for ps)
//   node test/cluster/node.ts start <control-plane-dir> [json]  starts an attached node, prints
//                                                              `READY <state json>`, runs until
//                                                              killed (SIGTERM or the end of a
//                                                              piped stdin: a clean stop)

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (command === 'reap') {
    const dir = resolve(args[0]!);
    const reap = async (why: string) => {
      console.log(`${new Date().toISOString()} ${why}: cleaning up ${dir}`);
      await cleanUp(dir).catch((err: Error) => console.log(`cleanup failed: ${err.message}`));
      process.exit(0);
    };
    process.stdin.resume();
    process.stdin.on('end', () => void reap('owner gone'));
    process.stdin.on('error', () => void reap('owner gone'));
    process.on('SIGTERM', () => void reap('SIGTERM'));
    return;
  }
  if (command === 'forward') {
    const [listen, target] = args as [string, string];
    const colon = listen.lastIndexOf(':');
    await forwardTcp(listen.slice(0, colon), Number(listen.slice(colon + 1)), target);
    return;
  }
  if (command === 'start') {
    const cpDir = resolve(args[0]!);
    const extra = JSON.parse(args[1] ?? '{}') as Partial<Pick<RealNodeOptions, 'taints' | 'labels'>>;
    const cp = JSON.parse(readFileSync(join(cpDir, 'state.json'), 'utf8')) as ClusterAccess;
    const started: { node?: RealNode } = {};
    // SIGTERM, or the end of a piped stdin (a test: its parent died): a clean stop. Before the
    // node is up, exiting is enough: its reaper (and the components' watchdogs) clean up.
    const stop = () => void (started.node?.stop() ?? Promise.resolve()).then(() => process.exit(0));
    process.on('SIGTERM', stop);
    const stdin = fstatSync(0);
    if (stdin.isFIFO() || stdin.isSocket()) {
      process.stdin.on('end', stop);
      process.stdin.resume();
    }
    started.node = await RealNode.start({ ...extra, cluster: cp, attached: true });
    console.log(`READY ${JSON.stringify(started.node.state)}`);
    setInterval(() => undefined, 1 << 30);
    return;
  }
  throw new Error(`usage: node.ts reap <dir> | forward <listen> <target> | start <control-plane-dir> [json]`);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  });
}
