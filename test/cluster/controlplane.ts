// A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, TLS, service-account
// tokens), kube-controller-manager, kube-scheduler, and kwok simulating nodes and the kubelets on
// them; optionally a real kubelet node beside them (node.ts). Everything runs as local processes
// built by build-binaries.sh; nothing is faked.
//
// Addresses are all in 198.18.0.0/15 (RFC 2544's benchmarking range, never a private range):
// kwok's pods get 198.18.128.0/17, a real node's pods its own 198.18.N.0/25, and Services
// 198.19.0.0/20, or with a real node a claimed 198.19.16S.0/20 that the host routes to it.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import {
  claimServiceRange,
  DEFAULT_SERVICE_CIDR,
  KWOK_POD_CIDR,
  RealNode,
  reserveNode,
  stopNode,
  type NodeReservation,
  type RealNodeState,
  type Taint,
} from './node.ts';
import { createPki, type Pki } from './pki.ts';
import { freePort } from './ports.ts';
import { logTail, startComponent, stopProcessGroup, type ComponentProcess } from './process.ts';

const run = promisify(execFile);
const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

export interface ControlPlaneOptions {
  /** Directory for certificates, data, logs and kubeconfigs; created, and removed on stop. */
  dir: string;
  /** See StartOptions.attached: die with this process (tests) or outlive it (demo). */
  attached?: boolean;
  /** Number of kwok nodes. */
  nodes?: number;
  /** kube-apiserver --min-request-timeout (seconds): watches end after 1-2x this. */
  minRequestTimeoutSeconds?: number;
  /** kube-apiserver --etcd-compaction-interval, e.g. "10s": how soon old resourceVersions expire. */
  etcdCompactionInterval?: string;
  /** Directory holding the binaries; by default build-binaries.sh builds or finds them. */
  binDir?: string;
  /**
   * Also start a real kubelet node (node.ts): containerd, runc, CNI and kube-proxy, so pods that
   * tolerate its taint run real containers. Check realNodeUnavailableReason() first.
   */
  realNode?: boolean | { taints?: Taint[]; labels?: Record<string, string> };
  /**
   * Write the apiserver's audit log (JSON lines, logs/audit.log): every write at Metadata level
   * with its user agent, and Lease writes with their bodies, so a test can check who wrote what
   * while holding which Lease.
   */
  auditLog?: boolean;
  /**
   * kube-controller-manager's --kube-api-qps (burst twice that). Its default, 20, is what bounds
   * hundreds of concurrent rollouts (every pod the ReplicaSet controller creates or deletes is a
   * request), so a bench comparing two rollout controllers raises it to measure them, not it.
   */
  controllerManagerQPS?: number;
}

/** The audit policy of `auditLog`: no reads, Lease bodies, every other write's metadata. */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [get, list, watch]
  - level: None
    userGroups: ['system:nodes']
  - level: RequestResponse
    resources: [{ group: coordination.k8s.io, resources: [leases] }]
  - level: Metadata
`;

export interface ControlPlaneState {
  dir: string;
  kubeconfig: string;
  server: string;
  binDir: string;
  pids: Record<string, number>;
  kubernetesVersion: string;
  startedInMs: number;
  /** kube-apiserver's --service-cluster-ip-range. */
  serviceCidr: string;
  /** The real node, when started with `realNode`. */
  realNode?: RealNodeState;
  /** The apiserver's audit log, when started with `auditLog`. */
  auditLogPath?: string;
  /** How the apiserver was launched, so restartApiserver() can launch it again. */
  apiserverArgs?: string[];
  logDir?: string;
  attached?: boolean;
}

const STATE_FILE = 'state.json';

/** Builds (first run) or finds the cached binaries and returns their directory. */
export async function ensureBinaries(): Promise<string> {
  const script = join(REPO_ROOT, 'test', 'cluster', 'build-binaries.sh');
  const { stdout } = await run(script, [], { maxBuffer: 64 * 1024 * 1024, timeout: 60 * 60 * 1000 }).catch(
    (err: Error & { stderr?: string }) => {
      throw new Error(`building the test control plane binaries failed:\n${err.stderr ?? err.message}`);
    },
  );
  return stdout.trim().split('\n').pop()!;
}

function kubeconfig(server: string, pki: Pki, client: string): string {
  const { cert, key } = pki.clients[client]!;
  // File references rather than embedded data keep the files small and readable.
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: kube-actions-test',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority: ${pki.caCert}`,
    'users:',
    `- name: ${client}`,
    '  user:',
    `    client-certificate: ${cert}`,
    `    client-key: ${key}`,
    'contexts:',
    '- name: kube-actions-test',
    '  context:',
    '    cluster: kube-actions-test',
    `    user: ${client}`,
    'current-context: kube-actions-test',
    '',
  ].join('\n');
}

interface Probe {
  url: string;
  /** Client certificate and the CA to verify the server with; `ca: undefined` skips verification
   * (the scheduler's and controller manager's self-signed loopback serving certificates). */
  tls?: { ca?: Buffer; cert: Buffer; key: Buffer };
}

/** One GET; resolves to the status code and body, or rejects on a connection error. */
function get(probe: Probe): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const callback = (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
    };
    const req = probe.tls
      ? httpsRequest(
          probe.url,
          { ...probe.tls, rejectUnauthorized: probe.tls.ca !== undefined, timeout: 5000 },
          callback,
        )
      : httpRequest(probe.url, { timeout: 5000 }, callback);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(
  what: string,
  component: ComponentProcess | undefined,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: number | string | undefined;
  void component?.exited.then((code) => (exited = code));
  let lastError = '';
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new Error(
        `${what}: ${component!.name} exited (${exited}). Log tail:\n${logTail(component!.logFile)}`,
      );
    }
    try {
      if (await check()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const tail = component ? `\nLog tail of ${component.name}:\n${logTail(component.logFile)}` : '';
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (${lastError})` : ''}${tail}`,
  );
}

export class LocalControlPlane {
  readonly state: ControlPlaneState;

  private constructor(state: ControlPlaneState) {
    this.state = state;
  }

  get kubeconfig(): string {
    return this.state.kubeconfig;
  }

  /** Re-attaches to a control plane started earlier (e.g. detached by the demo CLI). */
  static async load(dir: string): Promise<LocalControlPlane> {
    const state = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as ControlPlaneState;
    return new LocalControlPlane(state);
  }

  static async start(options: ControlPlaneOptions): Promise<LocalControlPlane> {
    const started = Date.now();
    const attached = options.attached ?? true;
    const dir = resolve(options.dir);
    const binDir = options.binDir ?? (await ensureBinaries());
    const bin = (name: string) => join(binDir, name);
    const logDir = join(dir, 'logs');
    await rm(dir, { recursive: true, force: true });
    await mkdir(logDir, { recursive: true });

    const processes: ComponentProcess[] = [];
    const pids: Record<string, number> = {};
    let reservation: NodeReservation | undefined;
    let realNode: RealNode | undefined;
    const launch = (name: string, args: string[]): ComponentProcess => {
      const p = startComponent(name, bin(name), args, { logDir, attached });
      processes.push(p);
      pids[name] = p.pid;
      return p;
    };

    try {
      // A real node's addresses are claimed first: the Service range goes into the apiserver's
      // flags and certificate (pods reach it at the `kubernetes` Service's address).
      reservation = options.realNode ? await reserveNode() : undefined;
      const serviceRange = reservation ? await claimServiceRange(reservation.dir) : undefined;
      const serviceCidr = serviceRange?.cidr ?? DEFAULT_SERVICE_CIDR;
      const kubernetesServiceIp = serviceRange?.kubernetesServiceIp ?? '198.19.0.1';
      const [etcdPort, etcdPeerPort, apiPort, kcmPort, schedulerPort, kwokPort] = await Promise.all(
        Array.from({ length: 6 }, freePort),
      );
      const server = `https://127.0.0.1:${apiPort}`;
      const pki = await createPki(
        join(dir, 'pki'),
        [
          'DNS:localhost',
          'DNS:kubernetes',
          'DNS:kubernetes.default',
          'DNS:kubernetes.default.svc',
          'IP:127.0.0.1',
          `IP:${kubernetesServiceIp}`,
        ],
        {
          admin: { user: 'kube-actions-admin', groups: ['system:masters'] },
          'kube-controller-manager': { user: 'system:kube-controller-manager', groups: [] },
          'kube-scheduler': { user: 'system:kube-scheduler', groups: [] },
          // kwok plays every kubelet: it writes node and pod status and node leases.
          kwok: { user: 'kwok', groups: ['system:masters'] },
          // The apiserver's identity towards kubelets (logs, exec, port-forward).
          'apiserver-kubelet-client': { user: 'kube-apiserver-kubelet-client', groups: ['system:masters'] },
        },
      );
      const kubeconfigs: Record<string, string> = {};
      for (const client of Object.keys(pki.clients)) {
        kubeconfigs[client] = join(dir, `${client}.kubeconfig`);
        await writeFile(kubeconfigs[client], kubeconfig(server, pki, client));
      }

      const etcd = launch('etcd', [
        '--name=kube-actions-test',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=kube-actions-test=http://127.0.0.1:${etcdPeerPort}`,
        // A throwaway test store: durability across power loss buys nothing and costs fsyncs.
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ]);
      await waitFor(
        'etcd health',
        etcd,
        async () => {
          const { status, body } = await get({ url: `http://127.0.0.1:${etcdPort}/health` });
          return status === 200 && body.includes('"true"');
        },
        30_000,
      );

      const auditLogPath = options.auditLog ? join(logDir, 'audit.log') : undefined;
      if (auditLogPath) await writeFile(join(dir, 'audit-policy.yaml'), AUDIT_POLICY);
      const apiserverArgs = [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${pki.serverCert}`,
        `--tls-private-key-file=${pki.serverKey}`,
        `--client-ca-file=${pki.caCert}`,
        '--authorization-mode=Node,RBAC',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${pki.serviceAccountPub}`,
        `--service-account-signing-key-file=${pki.serviceAccountKey}`,
        `--service-cluster-ip-range=${serviceCidr}`,
        `--kubelet-client-certificate=${pki.clients['apiserver-kubelet-client']!.cert}`,
        `--kubelet-client-key=${pki.clients['apiserver-kubelet-client']!.key}`,
        // Kubelets by address only: a node's Hostname would be looked up in the machine's DNS.
        '--kubelet-preferred-address-types=InternalIP',
        '--allow-privileged=true',
        // The "kubernetes" Service would point at 127.0.0.1, which Endpoints reject: not
        // reconciled; with a real node its endpoint is the node's forwarder (see below).
        '--endpoint-reconciler-type=none',
        `--min-request-timeout=${options.minRequestTimeoutSeconds ?? 1800}`,
        `--etcd-compaction-interval=${options.etcdCompactionInterval ?? '5m'}`,
        '--profiling=false',
        '--v=1',
        ...(auditLogPath
          ? [
              `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
              `--audit-log-path=${auditLogPath}`,
              '--audit-log-format=json',
              '--audit-log-mode=blocking',
              '--audit-log-maxsize=0',
            ]
          : []),
      ];
      const apiserver = launch('kube-apiserver', apiserverArgs);
      const adminTls = {
        ca: await readFile(pki.caCert),
        cert: await readFile(pki.clients.admin!.cert),
        key: await readFile(pki.clients.admin!.key),
      };
      await waitFor(
        'kube-apiserver /readyz',
        apiserver,
        async () => {
          const { status } = await get({ url: `${server}/readyz`, tls: adminTls });
          return status === 200;
        },
        90_000,
      );

      const componentKubeconfig = (name: string) => [
        `--kubeconfig=${kubeconfigs[name]}`,
        `--authentication-kubeconfig=${kubeconfigs[name]}`,
        `--authorization-kubeconfig=${kubeconfigs[name]}`,
        '--bind-address=127.0.0.1',
        '--leader-elect=false',
      ];
      launch('kube-controller-manager', [
        ...componentKubeconfig('kube-controller-manager'),
        `--secure-port=${kcmPort}`,
        `--root-ca-file=${pki.caCert}`,
        `--service-account-private-key-file=${pki.serviceAccountKey}`,
        // Each controller acts as its own service account, so RBAC is exercised as in a real cluster.
        '--use-service-account-credentials=true',
        `--cert-dir=${join(dir, 'kcm-certs')}`,
        ...(options.controllerManagerQPS
          ? [
              `--kube-api-qps=${options.controllerManagerQPS}`,
              `--kube-api-burst=${2 * options.controllerManagerQPS}`,
            ]
          : []),
        '--v=1',
      ]);
      launch('kube-scheduler', [
        ...componentKubeconfig('kube-scheduler'),
        `--secure-port=${schedulerPort}`,
        `--cert-dir=${join(dir, 'scheduler-certs')}`,
        '--v=1',
      ]);
      launch('kwok', [
        `--kubeconfig=${kubeconfigs.kwok}`,
        `--config=${bin('kwok-stages.yaml')}`,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--node-ip=127.0.0.1',
        `--cidr=${KWOK_POD_CIDR}`,
        `--server-address=127.0.0.1:${kwokPort}`,
        '--node-lease-duration-seconds=40',
      ]);

      const state: ControlPlaneState = {
        dir,
        kubeconfig: kubeconfigs.admin!,
        server,
        binDir,
        pids,
        kubernetesVersion: '',
        startedInMs: 0,
        serviceCidr,
        apiserverArgs,
        logDir,
        attached,
        ...(auditLogPath ? { auditLogPath } : {}),
      };
      const cluster = new LocalControlPlane(state);
      const nodes = options.nodes ?? 3;
      const byName = (name: string) => processes.find((p) => p.name === name);
      const core = cluster.client().makeApiClient(k8s.CoreV1Api);
      await cluster.createNodes(core, nodes);
      await waitFor(
        'kwok to mark the nodes Ready',
        byName('kwok'),
        async () => {
          const list = await core.listNode();
          const ready = list.items.filter((n) =>
            n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
          );
          return ready.length >= nodes;
        },
        60_000,
      );
      // Pods need their namespace's default ServiceAccount (admission), which the controller
      // manager creates: once it exists, the controllers are running.
      await waitFor(
        'the default ServiceAccount (kube-controller-manager)',
        byName('kube-controller-manager'),
        async () => {
          await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
          return true;
        },
        60_000,
      );
      const loopbackTls = { cert: adminTls.cert, key: adminTls.key };
      for (const [name, port] of [
        ['kube-scheduler', schedulerPort],
        ['kube-controller-manager', kcmPort],
      ] as const) {
        await waitFor(
          `${name} /healthz`,
          byName(name),
          async () => {
            const { status } = await get({ url: `https://127.0.0.1:${port}/healthz`, tls: loopbackTls });
            return status === 200;
          },
          60_000,
        );
      }

      if (reservation && serviceRange) {
        const nodeOptions = typeof options.realNode === 'object' ? options.realNode : {};
        realNode = await RealNode.start({
          ...nodeOptions,
          cluster: { dir, server, kubeconfig: kubeconfigs.admin!, binDir },
          attached,
          reservation,
          serviceRange,
          logDir: join(logDir, 'real-node'),
        });
        state.realNode = realNode.state;
        await cluster.pointKubernetesServiceAt(core, realNode.gateway, Number(apiPort));
      }

      const version = JSON.parse((await get({ url: `${server}/version`, tls: adminTls })).body) as {
        gitVersion: string;
      };
      state.kubernetesVersion = version.gitVersion;
      state.startedInMs = Date.now() - started;
      await writeFile(join(dir, STATE_FILE), JSON.stringify(state, null, 2));
      return cluster;
    } catch (err) {
      await realNode?.stop().catch(() => undefined);
      await Promise.all(processes.map((p) => stopProcessGroup(p.pid)));
      // A node that failed to start has cleaned up after itself; one never started holds claims.
      if (reservation && !realNode) await stopNode(reservation);
      throw err;
    }
  }

  /**
   * Makes the `kubernetes` Service (which pods' in-cluster configuration dials) reach the
   * apiserver: its endpoint is the node's forwarder on the gateway, since Endpoints may not be
   * loopback addresses.
   */
  private async pointKubernetesServiceAt(core: k8s.CoreV1Api, address: string, port: number): Promise<void> {
    const discovery = this.client().makeApiClient(k8s.DiscoveryV1Api);
    await discovery.createNamespacedEndpointSlice({
      namespace: 'default',
      body: {
        metadata: {
          name: 'kubernetes',
          labels: {
            'kubernetes.io/service-name': 'kubernetes',
            'endpointslice.kubernetes.io/managed-by': 'kube-actions-test-harness',
          },
        },
        addressType: 'IPv4',
        endpoints: [{ addresses: [address], conditions: { ready: true } }],
        ports: [{ name: 'https', port, protocol: 'TCP' }],
      },
    });
    await core.createNamespacedEndpoints({
      namespace: 'default',
      body: {
        metadata: { name: 'kubernetes', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } },
        subsets: [{ addresses: [{ ip: address }], ports: [{ name: 'https', port, protocol: 'TCP' }] }],
      },
    });
  }

  /** The real node started with `realNode`, if any. */
  async realNode(): Promise<RealNode | undefined> {
    return this.state.realNode ? RealNode.load(this.state.realNode.dir) : undefined;
  }

  /** A client for this cluster, authenticated as the admin (system:masters). */
  client(): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(this.state.kubeconfig);
    return kc;
  }

  private async createNodes(core: k8s.CoreV1Api, count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      await core.createNode({
        body: {
          metadata: {
            name: `kwok-node-${i}`,
            // kwok manages only nodes carrying this annotation (see its --manage-nodes-with-... flag).
            annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
            labels: {
              'kubernetes.io/hostname': `kwok-node-${i}`,
              'kubernetes.io/os': 'linux',
              'kubernetes.io/arch': 'amd64',
              type: 'kwok',
            },
          },
          status: {
            allocatable: { cpu: '32', memory: '256Gi', pods: '250' },
            capacity: { cpu: '32', memory: '256Gi', pods: '250' },
          },
        },
      });
    }
  }

  /**
   * Stops the apiserver and starts it again with the same flags (etcd keeps the data; watches
   * break, clients reconnect), as a control-plane upgrade or crash would. Resolves once ready.
   */
  async restartApiserver(): Promise<void> {
    const { apiserverArgs, logDir, binDir } = this.state;
    if (!apiserverArgs || !logDir) throw new Error('this control plane was not started with restart support');
    const pid = this.state.pids['kube-apiserver'];
    if (pid !== undefined) await stopProcessGroup(pid);
    const p = startComponent('kube-apiserver', join(binDir, 'kube-apiserver'), apiserverArgs, {
      logDir,
      attached: this.state.attached ?? true,
    });
    this.state.pids['kube-apiserver'] = p.pid;
    await writeFile(join(this.state.dir, STATE_FILE), JSON.stringify(this.state, null, 2));
    const kc = this.client();
    const user = kc.getCurrentUser()!;
    const tls = {
      ca: await readFile(kc.getCurrentCluster()!.caFile!),
      cert: await readFile(user.certFile!),
      key: await readFile(user.keyFile!),
    };
    await waitFor(
      'kube-apiserver /readyz after a restart',
      p,
      async () => (await get({ url: `${this.state.server}/readyz`, tls })).status === 200,
      90_000,
    );
  }

  /** Whether every component recorded in the state is still alive. */
  running(): boolean {
    const node = Object.values(this.state.realNode?.pids ?? {});
    return [...Object.values(this.state.pids), ...node].every((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
  }

  async stop(options: { keepDir?: boolean } = {}): Promise<void> {
    // The real node first (its kubelet is an apiserver client too), then in reverse start order.
    if (this.state.realNode) await stopNode(this.state.realNode);
    const order = ['kwok', 'kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'];
    for (const name of order) {
      const pid = this.state.pids[name];
      if (pid !== undefined) await stopProcessGroup(pid);
    }
    if (!options.keepDir) await rm(this.state.dir, { recursive: true, force: true });
  }
}
