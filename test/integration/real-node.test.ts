// The real kubelet node beside the kwok ones (test/cluster/node.ts): it registers Ready and
// tainted, runs a pod from an image our layers builder pushed to the test registry (pulled by its
// containerd over plain HTTP through the gateway), the pod's IP and a ClusterIP Service (through
// kube-proxy's iptables rules) answer HTTP from the host, pods reach the host's servers and the
// apiserver, and a node whose runner is SIGKILLed leaves nothing on the machine.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildLayersImage } from '../../src/core/image/layers-builder.ts';
import { pushBusyboxBase } from '../cluster/base-images.ts';
import { GitServer } from '../cluster/git-server.ts';
import {
  forwardTcp,
  hostIptablesChains,
  leftovers,
  nodeTraces,
  REAL_NODE_LABEL,
  REAL_NODE_TAINT,
  sweepStaleNodes,
  writeRegistryHosts,
  type Forwarder,
  type NodeTraces,
  type RealNodeState,
} from '../cluster/node.ts';
import { OciRegistry } from '../cluster/registry.ts';
import { describeOnRealNode, eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('real-node');
const NODE_TS = resolve(import.meta.dirname, '..', 'cluster', 'node.ts');

/** Whether an IPv4 address is in 198.18.0.0/15 (the only range the harness gives pods and Services). */
function inTestRange(ip: string | undefined): boolean {
  const [a, b] = (ip ?? '').split('.').map(Number);
  return a === 198 && (b === 18 || b === 19);
}

/** GET from the host, bounded: one attempt of at most 3 s. */
async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  return { status: res.status, body: await res.text() };
}

describeOnRealNode('a real kubelet node', (node) => {
  const core = () => ns.kc.makeApiClient(k8s.CoreV1Api);
  let registry: OciRegistry;
  let git: GitServer;
  let web: { image: string; digest: string; token: string };
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'kube-actions-real-node-test-'));
    registry = await OciRegistry.start({ gateway: node.gateway });
    await node.addRegistry(registry.host, registry.gatewayHost);
    git = await GitServer.start({ gateway: node.gateway });
    await git.createRepo('config', { 'hello.txt': 'hello from the host\n' });
    // An image of ours: Debian's busybox as the base, a page and busybox httpd on top.
    const base = await pushBusyboxBase(registry, 'real-node/busybox', '1');
    const token = `served-${randomBytes(4).toString('hex')}`;
    await mkdir(join(work, 'www'));
    await writeFile(join(work, 'www', 'index.html'), `${token}\n`);
    const built = await buildLayersImage({
      base: base.reference,
      layers: [{ source: join(work, 'www'), destination: '/www' }],
      images: [`${registry.host}/real-node/web`],
      tags: ['1'],
      config: {
        entrypoint: ['/bin/busybox', 'httpd', '-f', '-v', '-p', '8080', '-h', '/www'],
        ports: ['8080'],
      },
      sourceDateEpoch: 0,
    });
    web = { image: built.images[0]!, digest: built.digest, token };
  }, 120_000);

  afterAll(async () => {
    await registry?.stop();
    await git?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('registers Ready with its taint and label, beside the kwok nodes, which untolerating pods keep to', async () => {
    const n = await core().readNode({ name: node.name });
    expect(n.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(n.spec?.taints).toContainEqual(expect.objectContaining(REAL_NODE_TAINT));
    expect(n.metadata?.labels?.[REAL_NODE_LABEL]).toBe('true');
    const internal = n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    expect(inTestRange(internal)).toBe(true);
    expect(n.status?.nodeInfo?.containerRuntimeVersion).toMatch(/^containerd:\/\//);
    expect(n.status?.nodeInfo?.kubeletVersion).toMatch(/^v1\.35\./);

    // A pod that asks for this node but does not tolerate its taint is refused by the scheduler.
    await core().createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'untolerating' },
        spec: {
          nodeSelector: node.nodeSelector,
          containers: [{ name: 'c', image: web.image }],
        },
      },
    });
    const unschedulable = await eventually('the scheduler to refuse the untolerating pod', async () => {
      const p = await core().readNamespacedPod({ name: 'untolerating', namespace: ns.name });
      return p.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable');
    });
    expect(unschedulable.message).toMatch(/untolerated taint/);
    await core().deleteNamespacedPod({ name: 'untolerating', namespace: ns.name, gracePeriodSeconds: 0 });
  });

  test('runs a pod of our image; its IP and a ClusterIP Service answer HTTP from the host', async () => {
    const labels = { app: 'web' };
    await core().createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'web', labels },
        spec: {
          tolerations: node.tolerations,
          nodeSelector: node.nodeSelector,
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: 'web',
              image: web.image,
              ports: [{ containerPort: 8080 }],
              readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
            },
          ],
        },
      },
    });
    const pod = await eventually(
      'the pod to be Ready on the real node',
      async () => {
        const p = await core().readNamespacedPod({ name: 'web', namespace: ns.name });
        const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
        if (waiting && /ErrImage|ImagePullBackOff|CrashLoop|CreateContainer/.test(waiting.reason ?? '')) {
          throw new Error(`${waiting.reason}: ${waiting.message}`);
        }
        return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
      },
      90_000,
    );
    expect(pod.spec?.nodeName).toBe(node.name);
    const status = pod.status!.containerStatuses![0]!;
    expect(status.state?.running).toBeDefined();
    // containerd pulled exactly what we pushed.
    expect(status.imageID).toContain(web.digest);
    const podIP = pod.status!.podIP!;
    expect(inTestRange(podIP)).toBe(true);
    expect(await get(`http://${podIP}:8080/`)).toEqual({ status: 200, body: `${web.token}\n` });

    await core().createNamespacedService({
      namespace: ns.name,
      body: {
        metadata: { name: 'web' },
        spec: { selector: labels, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    const service = await core().readNamespacedService({ name: 'web', namespace: ns.name });
    const clusterIP = service.spec!.clusterIP!;
    expect(inTestRange(clusterIP)).toBe(true);
    // kube-proxy programs the rule once it sees the EndpointSlice: poll, boundedly.
    const answer = await eventually(
      'the ClusterIP to answer through kube-proxy',
      async () => {
        const r = await get(`http://${clusterIP}/`).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      },
      30_000,
    );
    expect(answer.body).toBe(`${web.token}\n`);
  });

  test('pods reach a Service, the host on the gateway and the apiserver as the kubernetes Service, nothing else', async () => {
    const gitUrl = `${git.gatewayBaseUrl}/config.git/info/refs?service=git-upload-pack`;
    // The previous test's Service, from a pod on the same bridge (kube-proxy's DNAT, hairpin-safe).
    const service = await core().readNamespacedService({ name: 'web', namespace: ns.name });
    const script = [
      'echo "== routes"; ip route',
      `echo "== service"; wget -q -O- 'http://${service.spec!.clusterIP}/'`,
      `echo "== git"; wget -q -O- '${gitUrl}' | grep -o 'refs/heads/main'`,
      // The apiserver's /version is public; busybox wget's TLS cannot verify, so only the
      // connection through the Service's ClusterIP (kube-proxy -> the gateway) is checked here.
      'echo "== api"; nc -w 3 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" </dev/null && echo connected',
      'echo "== done"',
    ].join('; ');
    await core().createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'client' },
        spec: {
          tolerations: node.tolerations,
          nodeSelector: node.nodeSelector,
          restartPolicy: 'Never',
          containers: [{ name: 'client', image: web.image, command: ['/bin/sh', '-c', script] }],
        },
      },
    });
    const phase = await eventually(
      'the client pod to finish',
      async () => {
        const p = await core().readNamespacedPod({ name: 'client', namespace: ns.name });
        return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' ? p.status.phase : undefined;
      },
      90_000,
    );
    // Read through the apiserver from the kubelet (its InternalIP, port 10250, client certificate).
    const log = await core().readNamespacedPodLog({ name: 'client', namespace: ns.name });
    expect(phase).toBe('Succeeded');
    const section = (name: string) => log.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';
    // One route besides the pod's own subnet: the test range via the bridge. No default route.
    const routes = section('routes').trim().split('\n');
    expect(routes.some((r) => r.startsWith('default'))).toBe(false);
    expect(routes.every((r) => r.startsWith('198.18.'))).toBe(true);
    expect(routes).toContainEqual(expect.stringMatching(/^198\.18\.0\.0\/15 via 198\.18\.\d+\.1 /));
    expect(section('service').trim()).toBe(web.token);
    expect(section('git')).toContain('refs/heads/main');
    expect(section('api')).toContain('connected');
  });

  // A second, throwaway node of the same cluster in a child process (`node node.ts start`), with a
  // pod of its own, whose process is then SIGKILLed.
  const THROWAWAY_TAINT = {
    key: 'kube-actions.dev/throwaway-node',
    value: 'true',
    effect: 'NoSchedule',
  } as const;

  async function startThrowaway(): Promise<{
    child: ChildProcess;
    state: RealNodeState;
    forwarder: Forwarder;
  }> {
    const cpDir = process.env.KUBE_ACTIONS_TEST_CLUSTER_DIR;
    if (!cpDir) throw new Error('KUBE_ACTIONS_TEST_CLUSTER_DIR is not set');
    const child = spawn(
      process.execPath,
      [
        NODE_TS,
        'start',
        cpDir,
        JSON.stringify({ taints: [THROWAWAY_TAINT], labels: { 'kube-actions.dev/throwaway': 'true' } }),
      ],
      // stdin a pipe from this worker: the child stops its node if the worker dies.
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let output = '';
    const state = await new Promise<RealNodeState>((resolveState, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the throwaway node did not start:\n${output}`)),
        90_000,
      );
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
        const line = output.split('\n').find((l) => l.startsWith('READY '));
        if (line) {
          clearTimeout(timer);
          resolveState(JSON.parse(line.slice('READY '.length)) as RealNodeState);
        }
      });
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the throwaway node's process exited (${code}):\n${output}`));
      });
    });
    // Its containerd pulls through its own gateway.
    const forwarder = await forwardTcp(state.gateway, 0, registry.host);
    await writeRegistryHosts(state.dir, registry.host, forwarder.host);
    return { child, state, forwarder };
  }

  /** A pod on the throwaway node whose PID 1 ignores SIGTERM (busybox sleep). */
  async function runPodOn(state: RealNodeState, name: string): Promise<void> {
    await core().createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name },
        spec: {
          tolerations: [{ ...THROWAWAY_TAINT, operator: 'Equal' }],
          nodeSelector: { 'kubernetes.io/hostname': state.name },
          containers: [{ name: 'sleep', image: web.image, command: ['/bin/busybox', 'sleep', '3600'] }],
        },
      },
    });
    await eventually(
      `${name} to run on ${state.name}`,
      async () => {
        const p = await core().readNamespacedPod({ name, namespace: ns.name });
        return p.status?.containerStatuses?.[0]?.state?.running ? true : undefined;
      },
      90_000,
    );
  }

  async function forget(state: RealNodeState, pod: string): Promise<void> {
    await core()
      .deleteNamespacedPod({ name: pod, namespace: ns.name, gracePeriodSeconds: 0 })
      .catch(() => undefined);
    await core()
      .deleteNode({ name: state.name })
      .catch(() => undefined);
  }

  async function tracesWhileRunning(state: RealNodeState): Promise<NodeTraces> {
    const traces = await nodeTraces(state);
    // The proof below means something only if there was something to leave: check that first.
    const present = await leftovers(traces);
    const kinds = [
      'process',
      'container process',
      'mount',
      'directory',
      'cgroup',
      'link',
      'route',
      'shim socket',
      'CNI result',
    ];
    const missing = kinds.filter((kind) => !present.some((l) => l.startsWith(`${kind} `)));
    expect({ missing, present }).toEqual({ missing: [], present });
    expect(traces.netns).toMatch(/^net:\[\d+\]$/);
    return traces;
  }

  test('a node whose runner is SIGKILLed leaves nothing: no daemon, shim, container, mount, chain or link', async () => {
    const chainsBefore = await hostIptablesChains();
    const { child, state, forwarder } = await startThrowaway();
    try {
      await runPodOn(state, 'doomed');
      const traces = await tracesWhileRunning(state);
      child.kill('SIGKILL');
      // The reaper (started with the node, its stdin a pipe from the runner) cleans up at once.
      const remaining = await eventually(
        'the killed node to be gone',
        async () => {
          const left = await leftovers(traces);
          return left.length === 0 ? left : undefined;
        },
        30_000,
      ).catch(async (err: Error) => {
        throw new Error(`${err.message}\nleft:\n${(await leftovers(traces)).join('\n')}`);
      });
      expect(remaining).toEqual([]);
      // Its kube-proxy's chains (and the bridge) were in its namespace, gone with it: the host's
      // own tables have no chain they did not have before.
      expect((await hostIptablesChains()).filter((c) => !chainsBefore.includes(c))).toEqual([]);
    } finally {
      child.kill('SIGKILL');
      await forwarder.close();
      await forget(state, 'doomed');
    }
  });

  test('a node whose runner and reaper are both SIGKILLed is swept by the next start', async () => {
    const { child, state, forwarder } = await startThrowaway();
    try {
      await runPodOn(state, 'orphaned');
      const traces = await tracesWhileRunning(state);
      process.kill(state.reaperPid!, 'SIGKILL');
      child.kill('SIGKILL');
      // Nobody cleans up now: the watchdogs stop the daemons, but shims and containers run on
      // (they are in no process group of the runner's), and the mounts and the namespace stay.
      await new Promise((r) => setTimeout(r, 1500));
      const left = await leftovers(traces);
      expect(left.some((l) => l.startsWith('container process '))).toBe(true);
      expect(left.some((l) => l.startsWith('mount '))).toBe(true);
      // What the next node's start runs first (reserveNode): once the daemons' watchdogs are done,
      // the node counts as stale and is cleaned up.
      await eventually(
        'the sweep to clean the stale node',
        async () => ((await sweepStaleNodes()).includes(state.dir) ? true : undefined),
        30_000,
      );
      expect(await leftovers(traces)).toEqual([]);
    } finally {
      child.kill('SIGKILL');
      await forwarder.close();
      await forget(state, 'orphaned');
    }
  });
});
