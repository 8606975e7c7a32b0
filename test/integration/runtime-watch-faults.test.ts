// The informer under the faults it exists to survive, on a control plane of its own whose
// apiserver ends every watch after 2-4 s (--min-request-timeout=2) and compacts etcd every 2 s:
// - server-side watch timeouts: resume from the last resourceVersion, lose no update, no relist;
// - a silently dead connection (a TCP proxy that stops forwarding): the watchdog restarts it;
// - a partition long enough for the resourceVersion to be compacted: 410 Gone, relist, and the
//   diff emits the deletes/updates/adds that happened meanwhile.
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeClient, isGone } from '../../src/core/kube/client.ts';
import { Informer, type InformerOptions } from '../../src/controller/runtime/informer.ts';
import type { KubeObject } from '../../src/core/kube/objects.ts';
import { LocalControlPlane } from '../cluster/controlplane.ts';
import { eventually } from '../cluster/testing.ts';

/** eventually() for a synchronous check. */
function poll<T>(what: string, check: () => T | undefined, timeoutMs?: number): Promise<T> {
  return eventually(what, () => Promise.resolve(check()), timeoutMs);
}

/**
 * A TCP proxy to the apiserver that can go silent: frozen connections stay open but forward
 * nothing (what a dead NAT entry or a half-open connection looks like to the client), and while
 * partitioned new connections are reset.
 */
class FaultyProxy {
  readonly port: number;
  private readonly server: Server;
  private readonly connections = new Set<{ client: Socket; upstream: Socket; frozen: boolean }>();
  private refuse = false;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.port = port;
  }

  static async start(target: URL): Promise<FaultyProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new FaultyProxy(server, (server.address() as { port: number }).port);
    server.on('connection', (client) => proxy.accept(client, target));
    return proxy;
  }

  private accept(client: Socket, target: URL): void {
    if (this.refuse) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    const conn = { client, upstream, frozen: false };
    this.connections.add(conn);
    const forward = (from: Socket, to: Socket) => {
      from.on('data', (chunk) => {
        if (!conn.frozen) to.write(chunk);
      });
      from.on('close', () => {
        if (!conn.frozen) to.destroy();
        this.connections.delete(conn);
      });
      from.on('error', () => undefined);
    };
    forward(client, upstream);
    forward(upstream, client);
  }

  /** Existing connections go silent in both directions, without closing. */
  freeze(): void {
    for (const conn of this.connections) conn.frozen = true;
  }

  /** Freezes existing connections and resets new ones until heal(). */
  partition(): void {
    this.freeze();
    this.refuse = true;
  }

  heal(): void {
    this.refuse = false;
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.connections) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** A copy of `kc` that talks to the apiserver through this proxy. */
  kubeConfig(kc: k8s.KubeConfig): k8s.KubeConfig {
    const proxied = new k8s.KubeConfig();
    proxied.loadFromOptions({
      clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${this.port}` })),
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
    return proxied;
  }
}

let plane: LocalControlPlane;
let kc: k8s.KubeConfig;
let proxy: FaultyProxy;
const namespace = 'faults';

beforeAll(async () => {
  plane = await LocalControlPlane.start({
    dir: join(tmpdir(), `kube-actions-runtime-faults-${process.pid}`),
    attached: true,
    nodes: 0,
    minRequestTimeoutSeconds: 2,
    etcdCompactionInterval: '2s',
    binDir: process.env.KUBE_ACTIONS_BIN_DIR,
  });
  kc = plane.client();
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  proxy = await FaultyProxy.start(new URL(kc.getCurrentCluster()!.server));
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await plane?.stop();
}, 60_000);

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function startInformer<T extends KubeObject>(config: k8s.KubeConfig, options: InformerOptions): Informer<T> {
  const client = new KubeClient(config);
  const informer = new Informer<T>(client, options);
  informer.start();
  cleanup.push(async () => {
    await informer.stop();
    await client.close();
  });
  return informer;
}

describe('Informer under watch faults', () => {
  test('server-side watch timeouts: every update arrives exactly once, in order, without relisting', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'counter' }, data: { n: '0' } },
    });
    const informer = startInformer<k8s.V1ConfigMap>(kc, {
      resource: { apiVersion: 'v1', resource: 'configmaps' },
      namespace,
      fieldSelector: 'metadata.name=counter',
      // Let the server pick the watch timeout: --min-request-timeout=2 makes it 2-4 s.
      watchTimeoutSeconds: 0,
    });
    const seen: number[] = [];
    informer.addHandlers({ onUpdate: (_old, cm) => seen.push(Number(cm.data?.n)) });
    await informer.waitForSync();

    // Write for ~10 s: several watch lifetimes.
    const deadline = Date.now() + 10_000;
    let n = 0;
    while (Date.now() < deadline) {
      n++;
      await core.patchNamespacedConfigMap(
        { name: 'counter', namespace, body: { data: { n: String(n) } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
      await new Promise((r) => setTimeout(r, 50));
    }
    await poll('the last update', () => (seen.at(-1) === n ? true : undefined));
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(informer.stats.watchRestarts).toBeGreaterThanOrEqual(2);
    expect(informer.stats.relists).toBe(0);
    expect(informer.stats.errors).toBe(0);
    // The watch cache sends a bookmark shortly before each watch times out.
    expect(informer.stats.bookmarks).toBeGreaterThan(0);
  });

  test('the watchdog restarts a watch whose connection went silent', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const informer = startInformer<k8s.V1ConfigMap>(proxy.kubeConfig(kc), {
      resource: { apiVersion: 'v1', resource: 'configmaps' },
      namespace,
      labelSelector: 'watchdog=yes',
      watchdogMs: 1500,
      // A long watch: only the watchdog can end it while its connection is frozen.
      watchTimeoutSeconds: 600,
    });
    await informer.waitForSync();
    // An object that arrives through the watch proves the watch connection exists before it freezes.
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'before-freeze', labels: { watchdog: 'yes' } } },
    });
    await poll('an object through the watch', () => informer.get(namespace, 'before-freeze'));
    const restartsBefore = informer.stats.watchdogRestarts;
    proxy.freeze();
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'during-freeze', labels: { watchdog: 'yes' } } },
    });
    await poll('the object created while the watch was frozen', () =>
      informer.get(namespace, 'during-freeze'),
    );
    expect(informer.stats.watchdogRestarts).toBeGreaterThan(restartsBefore);
    expect(informer.stats.relists).toBe(0);
  });

  test('410 Gone after a partition: relist and emit the deletes, updates and adds it missed', async () => {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const event = (name: string, message: string): k8s.CoreV1Event => ({
      metadata: { name },
      involvedObject: { kind: 'ConfigMap', name: 'counter', namespace },
      reason: 'Test',
      message,
      type: 'Normal',
    });
    for (const name of ['e1', 'e2']) {
      await core.createNamespacedEvent({ namespace, body: event(name, 'first') });
    }
    // Events bypass the apiserver's watch cache, so a watch from a compacted resourceVersion
    // reaches etcd and fails with 410 (cached resources keep minutes of history instead).
    const events = { apiVersion: 'v1', resource: 'events' };
    const informer = startInformer<k8s.CoreV1Event>(proxy.kubeConfig(kc), {
      resource: events,
      namespace,
      watchdogMs: 1500,
      watchTimeoutSeconds: 600,
      backoff: { initialMs: 100, maxMs: 500 },
    });
    const changes: string[] = [];
    informer.addHandlers({
      onAdd: (e, info) => {
        if (!info.initialList) changes.push(`add ${e.metadata?.name}`);
      },
      onUpdate: (_o, e) => changes.push(`update ${e.metadata?.name} ${e.message}`),
      onDelete: (e, info) =>
        changes.push(`delete ${e.metadata?.name} finalStateUnknown=${info.finalStateUnknown}`),
    });
    await informer.waitForSync();
    // e3 arrives through the watch: the watch connection exists when the partition starts.
    await core.createNamespacedEvent({ namespace, body: event('e3', 'first') });
    await poll('e3 through the watch', () => informer.get(namespace, 'e3'));
    expect(informer.keys().sort()).toEqual(['e1', 'e2', 'e3'].map((n) => `${namespace}/${n}`));
    const before = informer.resourceVersion();
    const watchdogBefore = informer.stats.watchdogRestarts;

    proxy.partition();
    changes.length = 0;
    await core.deleteNamespacedEvent({ name: 'e1', namespace });
    await core.patchNamespacedEvent(
      { name: 'e2', namespace, body: { message: 'second' } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await core.createNamespacedEvent({ namespace, body: event('e4', 'first') });
    // Wait (directly, not through the proxy) until etcd has compacted the informer's version.
    const direct = new KubeClient(kc);
    cleanup.push(() => direct.close());
    await eventually(
      `resourceVersion ${before} to be compacted`,
      async () => {
        try {
          const lines = await direct.watchLines(
            `/api/v1/namespaces/${namespace}/events`,
            { resourceVersion: before, timeoutSeconds: 1 },
            AbortSignal.timeout(3000),
          );
          for await (const line of lines) {
            const ev = JSON.parse(line) as { type: string; object: { code?: number } };
            return ev.type === 'ERROR' && ev.object.code === 410 ? true : undefined;
          }
          return undefined;
        } catch (err) {
          return isGone(err) ? true : undefined;
        }
      },
      30_000,
    );
    expect(informer.stats.goneRelists).toBe(0);
    proxy.heal();

    await poll('the relist after 410', () => (informer.stats.goneRelists > 0 ? true : undefined));
    expect(informer.keys().sort()).toEqual(['e2', 'e3', 'e4'].map((n) => `${namespace}/${n}`));
    expect(informer.get(namespace, 'e2')?.message).toBe('second');
    expect(changes.sort()).toEqual(['add e4', 'delete e1 finalStateUnknown=true', 'update e2 second']);
    // Only the watchdog can end the frozen watch; then new connections fail until heal().
    expect(informer.stats.watchdogRestarts).toBeGreaterThan(watchdogBefore);
    expect(informer.stats.errors).toBeGreaterThan(0);
  });

  test('a request that timed out on a dead connection does not wedge the requests after it', async () => {
    const client = new KubeClient(proxy.kubeConfig(kc));
    cleanup.push(() => client.close());
    const path = `/api/v1/namespaces/${namespace}`;
    await client.request('GET', path); // opens the pooled connection
    proxy.freeze();
    const timedOut = await client.request('GET', path, { timeoutMs: 500 }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(timedOut?.name).toBe('TimeoutError');
    // undici keeps the dead connection and would queue the next request behind it; the client
    // retired that pool, so this one gets a new connection.
    const ns = await client.request<{ metadata?: { name?: string } }>('GET', path, { timeoutMs: 5000 });
    expect(ns.metadata?.name).toBe(namespace);
  });
});
