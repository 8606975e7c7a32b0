// Controller worker behaviour with an in-memory event source standing in for an informer.
import { afterEach, describe, expect, test } from '@jest/globals';
import {
  Controller,
  enqueueObject,
  enqueueOwner,
  filter,
  generationChanged,
  type ReconcileContext,
  type Reconciler,
  type Request,
  type Result,
} from '../../../../src/controller/runtime/controller.ts';
import type { EventSource, InformerHandlers } from '../../../../src/controller/runtime/informer.ts';
import { Logger } from '../../../../src/controller/runtime/log.ts';
import { Registry } from '../../../../src/core/metrics.ts';
import type { KubeObject, OwnerReference } from '../../../../src/core/kube/objects.ts';
import { ExponentialRateLimiter } from '../../../../src/controller/runtime/workqueue.ts';

class FakeSource implements EventSource<KubeObject> {
  readonly name = 'fake';
  private readonly handlers = new Set<InformerHandlers<KubeObject>>();
  private synced = false;
  private readonly waiters: Array<() => void> = [];

  addHandlers(h: InformerHandlers<KubeObject>): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }
  hasSynced(): boolean {
    return this.synced;
  }
  async waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return;
    await new Promise<void>((resolve, reject) => {
      this.waiters.push(resolve);
      signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
    });
  }
  sync(): void {
    this.synced = true;
    for (const wake of this.waiters.splice(0)) wake();
  }
  subscribers(): number {
    return this.handlers.size;
  }
  add(obj: KubeObject): void {
    for (const h of this.handlers) h.onAdd?.(obj, { initialList: false });
  }
  update(oldObj: KubeObject, newObj: KubeObject, resync = false): void {
    for (const h of this.handlers) h.onUpdate?.(oldObj, newObj, { resync });
  }
  delete(obj: KubeObject): void {
    for (const h of this.handlers) h.onDelete?.(obj, { finalStateUnknown: false });
  }
}

function obj(
  name: string,
  extra: { generation?: number; owners?: OwnerReference[]; namespace?: string } = {},
): KubeObject {
  return {
    metadata: {
      name,
      namespace: extra.namespace ?? 'ns',
      generation: extra.generation,
      ownerReferences: extra.owners,
    },
  };
}

/** Records calls; behaviour per call is scripted by `respond`. */
class RecordingReconciler implements Reconciler {
  readonly calls: Array<{ request: Request; ctx: ReconcileContext; at: number }> = [];
  readonly inFlight = new Map<string, number>();
  overlaps = 0;
  maxParallel = 0;
  respond: (request: Request, call: number) => Promise<Result | void> = () => Promise.resolve();

  async reconcile(request: Request, ctx: ReconcileContext): Promise<Result | void> {
    const key = `${request.namespace}/${request.name}`;
    if (this.inFlight.has(key)) this.overlaps++;
    this.inFlight.set(key, 1);
    this.maxParallel = Math.max(this.maxParallel, this.inFlight.size);
    this.calls.push({ request, ctx, at: performance.now() });
    try {
      return await this.respond(request, this.calls.filter((c) => c.request.name === request.name).length);
    } finally {
      this.inFlight.delete(key);
    }
  }

  names(): string[] {
    return this.calls.map((c) => c.request.name);
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(2);
  }
}

const controllers: Controller[] = [];
afterEach(async () => {
  await Promise.all(controllers.splice(0).map((c) => c.stop()));
});

function make(
  reconciler: Reconciler,
  options: Partial<ConstructorParameters<typeof Controller>[0]> = {},
): Controller {
  const c = new Controller({
    name: 'test',
    reconciler,
    rateLimiter: new ExponentialRateLimiter({ baseMs: 5, maxMs: 100 }),
    logger: new Logger({ sink: () => undefined }),
    ...options,
  });
  controllers.push(c);
  return c;
}

describe('Controller', () => {
  test('waits for its sources to sync, then reconciles what was queued meanwhile', async () => {
    const source = new FakeSource();
    const reconciler = new RecordingReconciler();
    const controller = make(reconciler).watch(source);
    const started = controller.start();
    source.add(obj('early'));
    await delay(20);
    expect(reconciler.calls).toEqual([]);
    expect(controller.isRunning()).toBe(false);
    expect(controller.queueLength()).toBe(1);
    source.sync();
    await started;
    expect(controller.isRunning()).toBe(true);
    await until('the reconcile', () => reconciler.calls.length === 1);
    expect(reconciler.calls[0]!.request).toEqual({ namespace: 'ns', name: 'early' });
    expect(reconciler.calls[0]!.ctx.retries).toBe(0);
  });

  test('never reconciles one key twice at once, reconciles different keys in parallel, and collapses events', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    reconciler.respond = async (request) => {
      if (request.name === 'busy') await gate;
    };
    await make(reconciler, { maxConcurrentReconciles: 4 }).watch(source).start();

    source.add(obj('busy'));
    await until('busy to start', () => reconciler.inFlight.has('ns/busy'));
    // Ten updates while it is in flight: one more reconcile afterwards, not ten, and not now.
    for (let i = 0; i < 10; i++) source.update(obj('busy'), obj('busy'));
    source.add(obj('other-1'));
    source.add(obj('other-2'));
    await until(
      'the others',
      () => reconciler.names().includes('other-1') && reconciler.names().includes('other-2'),
    );
    expect(reconciler.names().filter((n) => n === 'busy')).toHaveLength(1);
    release();
    await until('the second busy', () => reconciler.names().filter((n) => n === 'busy').length === 2);
    await delay(20);
    expect(reconciler.names().filter((n) => n === 'busy')).toHaveLength(2);
    expect(reconciler.overlaps).toBe(0);
    expect(reconciler.maxParallel).toBeGreaterThan(1);
  });

  test('a reconcile that throws is retried with growing backoff; success resets it; metrics count both', async () => {
    const source = new FakeSource();
    source.sync();
    const metrics = new Registry();
    const reconciler = new RecordingReconciler();
    reconciler.respond = (_request, call) =>
      call <= 3 ? Promise.reject(new Error(`failure ${call}`)) : Promise.resolve();
    await make(reconciler, { metrics }).watch(source).start();
    source.add(obj('flaky'));
    await until('four attempts', () => reconciler.calls.length === 4);
    expect(reconciler.calls.map((c) => c.ctx.retries)).toEqual([0, 1, 2, 3]);
    const gaps = reconciler.calls.slice(1).map((c, i) => c.at - reconciler.calls[i]!.at);
    // 5, 10, 20 ms.
    expect(gaps[0]).toBeGreaterThanOrEqual(4);
    expect(gaps[1]).toBeGreaterThanOrEqual(9);
    expect(gaps[2]).toBeGreaterThanOrEqual(19);
    await delay(10);
    const text = await metrics.render();
    expect(text).toContain('controller_runtime_reconcile_total{controller="test",result="error"} 3');
    expect(text).toContain('controller_runtime_reconcile_total{controller="test",result="success"} 1');
    expect(text).toContain('controller_runtime_reconcile_errors_total{controller="test"} 3');
    expect(text).toContain('controller_runtime_reconcile_time_seconds_count{controller="test"} 4');
    expect(text).toContain('controller_runtime_active_workers{controller="test"} 0');

    // Backoff was forgotten: the next failure starts from the base delay again.
    source.add(obj('flaky'));
    await until('a fifth call', () => reconciler.calls.length === 5);
    expect(reconciler.calls[4]!.ctx.retries).toBe(0);
  });

  test('requeueAfter reconciles the request again after the delay', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    reconciler.respond = (_r, call) => Promise.resolve(call === 1 ? { requeueAfter: 40 } : undefined);
    const metrics = new Registry();
    await make(reconciler, { metrics }).watch(source).start();
    source.add(obj('poll'));
    await until('the requeue', () => reconciler.calls.length === 2);
    expect(reconciler.calls[1]!.at - reconciler.calls[0]!.at).toBeGreaterThanOrEqual(39);
    expect(await metrics.render()).toContain(
      'controller_runtime_reconcile_total{controller="test",result="requeue_after"} 1',
    );
    await delay(60);
    expect(reconciler.calls).toHaveLength(2);
  });

  test('generationChanged drops updates that keep the generation, except resyncs; creates and deletes pass', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    await make(reconciler).watch(source, enqueueObject(), generationChanged()).start();
    source.add(obj('created', { generation: 1 }));
    source.update(obj('status-only', { generation: 1 }), obj('status-only', { generation: 1 }));
    source.update(obj('spec', { generation: 1 }), obj('spec', { generation: 2 }));
    source.update(obj('resynced', { generation: 3 }), obj('resynced', { generation: 3 }), true);
    source.delete(obj('deleted', { generation: 1 }));
    await until('four reconciles', () => reconciler.calls.length === 4);
    await delay(20);
    expect(reconciler.names().sort()).toEqual(['created', 'deleted', 'resynced', 'spec']);
  });

  test('enqueueOwner maps dependents to their controlling owner; updates map old and new owners', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    await make(reconciler)
      .watch(source, enqueueOwner({ apiVersion: 'example.com/v1', kind: 'Rollout' }))
      .start();
    const owner = (name: string, controller = true, apiVersion = 'example.com/v1beta1'): OwnerReference => ({
      apiVersion,
      kind: 'Rollout',
      name,
      uid: `uid-${name}`,
      controller,
    });
    source.add(obj('pod-1', { owners: [owner('r1')] })); // another version of the group: matches
    source.add(obj('pod-2', { owners: [owner('not-controller', false)] }));
    source.add(obj('pod-3', { owners: [owner('other-group', true, 'other.com/v1')] }));
    source.add(obj('pod-4'));
    source.update(obj('pod-5', { owners: [owner('r-old')] }), obj('pod-5', { owners: [owner('r-new')] }));
    await until('three reconciles', () => reconciler.calls.length === 3);
    await delay(20);
    expect(reconciler.names().sort()).toEqual(['r-new', 'r-old', 'r1']);
    expect(reconciler.calls[0]!.request.namespace).toBe('ns');
  });

  test('enqueueOwner options: any owner reference, cluster-scoped owners', () => {
    const ref = { apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u' };
    const pod = obj('p', { owners: [ref] });
    expect(enqueueOwner({ apiVersion: 'v1', kind: 'Node' })(pod)).toEqual([]);
    expect(
      enqueueOwner({ apiVersion: 'v1', kind: 'Node', onlyController: false, clusterScoped: true })(pod),
    ).toEqual([{ namespace: '', name: 'n1' }]);
    expect(enqueueObject()({ metadata: {} })).toEqual([]);
  });

  test('filter predicates and custom map functions', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    const labelled = (o: KubeObject) => o.metadata?.labels?.managed === 'yes';
    await make(reconciler)
      .watch(source, (o) => [{ namespace: 'mapped', name: `${o.metadata?.name}-target` }], filter(labelled))
      .start();
    source.add({ metadata: { name: 'a', labels: { managed: 'yes' } } });
    source.add({ metadata: { name: 'b', labels: { managed: 'no' } } });
    // An update passes if either side matches: an object leaving the selection still reconciles.
    source.update({ metadata: { name: 'c', labels: { managed: 'yes' } } }, { metadata: { name: 'c' } });
    await until('two reconciles', () => reconciler.calls.length === 2);
    await delay(20);
    expect(reconciler.calls.map((c) => c.request)).toEqual([
      { namespace: 'mapped', name: 'a-target' },
      { namespace: 'mapped', name: 'c-target' },
    ]);
  });

  test('a throwing map function is logged and skipped, not fatal', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    const lines: string[] = [];
    await make(reconciler, { logger: new Logger({ sink: (l) => lines.push(l) }) })
      .watch(source, (o) => {
        if (o.metadata?.name === 'bad') throw new Error('boom');
        return enqueueObject()(o);
      })
      .start();
    source.add(obj('bad'));
    source.add(obj('good'));
    await until('good', () => reconciler.calls.length === 1);
    expect(reconciler.names()).toEqual(['good']);
    expect(lines.some((l) => l.includes('"map function threw"') && l.includes('boom'))).toBe(true);
  });

  test('stop() aborts the reconcilers signal, waits for reconciles in flight, and takes no more work', async () => {
    const source = new FakeSource();
    source.sync();
    const reconciler = new RecordingReconciler();
    let finished = false;
    reconciler.respond = async (_r, _call) => {
      const signal = reconciler.calls.at(-1)!.ctx.signal;
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      await delay(20); // cleanup after the abort
      finished = true;
      throw new Error('aborted');
    };
    const controller = make(reconciler).watch(source);
    await controller.start();
    source.add(obj('long'));
    await until('the reconcile to start', () => reconciler.calls.length === 1);
    source.add(obj('queued'));
    expect(source.subscribers()).toBe(1);
    await controller.stop();
    expect(finished).toBe(true);
    expect(controller.isRunning()).toBe(false);
    expect(source.subscribers()).toBe(0);
    source.add(obj('after'));
    await delay(20);
    expect(reconciler.names()).toEqual(['long']);
  });

  test('stop() before the sources synced ends start() without running workers', async () => {
    const source = new FakeSource();
    const reconciler = new RecordingReconciler();
    const controller = make(reconciler).watch(source);
    const started = controller.start();
    await controller.stop();
    await started;
    source.sync();
    source.add(obj('x'));
    await delay(20);
    expect(reconciler.calls).toEqual([]);
  });

  test('misuse is rejected: no watches, watch after start, start twice, no name', async () => {
    const reconciler = new RecordingReconciler();
    await expect(make(reconciler).start()).rejects.toThrow(/watches nothing/);
    const source = new FakeSource();
    source.sync();
    const controller = make(reconciler).watch(source);
    await controller.start();
    expect(() => controller.watch(source)).toThrow(/after start/);
    await expect(controller.start()).rejects.toThrow(/already started/);
    expect(() => new Controller({ name: '', reconciler })).toThrow(/name/);
  });
});
