// A controller: watches turn events into requests (namespace/name) on a rate-limited work queue,
// and N workers reconcile them. The reconciler is level-triggered: it is told which object to
// look at, not what happened, so collapsed or missed events cannot make it wrong.
import type { EventSource } from './informer.ts';
import { silentLogger, type Logger } from './log.ts';
import type { Counter, Gauge, HistogramChild, Registry } from '../../core/metrics.ts';
import { groupOf, parseKey, requestKey, type KubeObject, type Request } from '../../core/kube/objects.ts';
import { WorkQueue, type RateLimiter } from './workqueue.ts';

export type { Request } from '../../core/kube/objects.ts';

export interface Result {
  /** Reconcile this object again after this many milliseconds (e.g. to poll an external state). */
  requeueAfter?: number;
}

export interface ReconcileContext {
  /** Aborted when the controller stops (shutdown, lost leadership): stop writing, return. */
  signal: AbortSignal;
  log: Logger;
  /** Failures of this request since its last success (0 on a first attempt). */
  retries: number;
}

export interface Reconciler {
  /**
   * Brings the world in line with the object named by `request` (which may no longer exist).
   * Throwing requeues the request with per-key exponential backoff; returning resets the backoff.
   */
  reconcile(request: Request, ctx: ReconcileContext): Promise<Result | void>;
}

/** Maps an object from a watch to the requests to reconcile (none, one or several). */
export type MapFunc<T> = (obj: T) => Request[];

/** Filters events before they are mapped; a missing function lets that kind of event through. */
export interface Predicate<T> {
  create?(obj: T): boolean;
  update?(oldObj: T, newObj: T, info: { resync: boolean }): boolean;
  delete?(obj: T): boolean;
}

/** Reconcile the object itself (the usual map for the primary resource). */
export function enqueueObject<T extends KubeObject>(): MapFunc<T> {
  return (obj) => {
    const name = obj.metadata?.name;
    return name ? [{ namespace: obj.metadata?.namespace ?? '', name }] : [];
  };
}

export interface OwnerOptions {
  /** The owner's apiVersion; only its group is compared, as owner references survive version changes. */
  apiVersion: string;
  kind: string;
  /** Only the managing owner (controller: true), as controller-runtime's Owns(); default true. */
  onlyController?: boolean;
  /** Owners are cluster-scoped (their requests get an empty namespace); default false. */
  clusterScoped?: boolean;
}

/** Reconcile the owner of the object: a change to a dependent (a Secret, a Pod) wakes its owner. */
export function enqueueOwner<T extends KubeObject>(owner: OwnerOptions): MapFunc<T> {
  const group = groupOf(owner.apiVersion);
  const onlyController = owner.onlyController ?? true;
  return (obj) =>
    (obj.metadata?.ownerReferences ?? [])
      .filter((ref) => ref.kind === owner.kind && groupOf(ref.apiVersion) === group)
      .filter((ref) => !onlyController || ref.controller === true)
      .map((ref) => ({
        namespace: owner.clusterScoped ? '' : (obj.metadata?.namespace ?? ''),
        name: ref.name,
      }));
}

/**
 * Lets updates through only when metadata.generation changed, i.e. the spec changed and not just
 * the status or metadata. Creates, deletes and periodic resyncs always pass: a resync exists to
 * repair drift, which a generation check would filter out. Kinds without a generation (ConfigMap)
 * never change it: do not use this predicate for them.
 */
export function generationChanged<T extends KubeObject>(): Predicate<T> {
  return {
    update: (oldObj, newObj, info) =>
      info.resync || oldObj.metadata?.generation !== newObj.metadata?.generation,
  };
}

/** Lets through only objects for which `test` holds (on updates: either the old or the new one). */
export function filter<T>(test: (obj: T) => boolean): Predicate<T> {
  return {
    create: test,
    update: (oldObj, newObj) => test(oldObj) || test(newObj),
    delete: test,
  };
}

export interface ControllerOptions {
  /** Names the queue, the metrics series and the log lines. */
  name: string;
  reconciler: Reconciler;
  /** Workers reconciling in parallel (never the same key at once); default 1. */
  maxConcurrentReconciles?: number;
  /** Per-key failure backoff; default 5 ms doubling to 1000 s (client-go's). */
  rateLimiter?: RateLimiter;
  metrics?: Registry;
  logger?: Logger;
}

interface Watch {
  source: EventSource<KubeObject>;
  map: MapFunc<KubeObject>;
  predicates: Array<Predicate<KubeObject>>;
}

export class Controller {
  readonly name: string;
  private readonly options: ControllerOptions;
  private readonly log: Logger;
  private readonly watches: Watch[] = [];
  private readonly unsubscribes: Array<() => void> = [];
  private queue?: WorkQueue;
  private workers: Array<Promise<void>> = [];
  private abort?: AbortController;
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  private readonly metrics?: {
    total: Counter;
    errors: Counter;
    time: HistogramChild;
    active: Gauge;
  };

  constructor(options: ControllerOptions) {
    if (!options.name) throw new Error('a controller needs a name');
    this.name = options.name;
    this.options = options;
    this.log = (options.logger ?? silentLogger).child({ controller: options.name });
    const registry = options.metrics;
    if (registry) {
      const labelNames = ['controller'];
      this.metrics = {
        total: registry.counter({
          name: 'controller_runtime_reconcile_total',
          help: 'Reconciles by result: success, error or requeue_after.',
          labelNames: ['controller', 'result'],
        }),
        errors: registry.counter({
          name: 'controller_runtime_reconcile_errors_total',
          help: 'Reconciles that threw.',
          labelNames,
        }),
        time: registry
          .histogram({
            name: 'controller_runtime_reconcile_time_seconds',
            help: 'Duration of reconciles.',
            labelNames,
            buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
          })
          .with({ controller: this.name }),
        active: registry.gauge({
          name: 'controller_runtime_active_workers',
          help: 'Workers reconciling right now.',
          labelNames,
        }),
      };
    }
  }

  /**
   * Reconciles requests mapped from the events of `source`, after `predicates` (all must pass).
   * Call before start().
   */
  watch<T extends KubeObject>(
    source: EventSource<T>,
    map: MapFunc<T> = enqueueObject<T>(),
    ...predicates: Array<Predicate<T>>
  ): this {
    if (this.state !== 'new') throw new Error(`controller ${this.name}: watch() after start()`);
    this.watches.push({
      source: source,
      map: map as MapFunc<KubeObject>,
      predicates: predicates,
    });
    return this;
  }

  /** Requests waiting in the queue (not in flight). */
  queueLength(): number {
    return this.queue?.len() ?? 0;
  }

  isRunning(): boolean {
    return this.state === 'running';
  }

  /**
   * Waits until every watched source has synced (so reconcilers see a complete cache), then
   * starts the workers. Resolves once they run; a controller starts once.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`controller ${this.name} was already started`);
    if (this.watches.length === 0) throw new Error(`controller ${this.name} watches nothing`);
    this.state = 'starting';
    this.abort = new AbortController();
    const queue = new WorkQueue({
      name: this.name,
      rateLimiter: this.options.rateLimiter,
      metrics: this.options.metrics,
    });
    this.queue = queue;
    for (const watch of this.watches) this.unsubscribes.push(this.subscribe(watch, queue));
    try {
      await Promise.all(this.watches.map((w) => w.source.waitForSync(this.abort!.signal)));
    } catch (err) {
      if (this.abort.signal.aborted) return;
      throw err;
    }
    if (this.abort.signal.aborted) return;
    const workers = this.options.maxConcurrentReconciles ?? 1;
    this.workers = Array.from({ length: workers }, () => this.work(queue));
    this.state = 'running';
    this.log.info('controller started', { workers });
  }

  /**
   * Stops taking work, aborts the reconcilers' signal and waits for reconciles in flight to
   * return. Queued requests are dropped (whoever runs next relists and requeues everything).
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasRunning = this.state !== 'new';
    this.state = 'stopped';
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
    this.abort?.abort();
    await this.queue?.shutDown();
    await Promise.all(this.workers);
    if (wasRunning) this.log.info('controller stopped');
  }

  private subscribe(watch: Watch, queue: WorkQueue): () => void {
    const enqueue = (obj: KubeObject) => {
      let requests: Request[];
      try {
        requests = watch.map(obj);
      } catch (err) {
        this.log.error('map function threw', { source: watch.source.name, error: err });
        return;
      }
      for (const request of requests) queue.add(requestKey(request));
    };
    const pass = (check: (p: Predicate<KubeObject>) => boolean) => watch.predicates.every(check);
    return watch.source.addHandlers({
      onAdd: (obj) => {
        if (pass((p) => p.create?.(obj) ?? true)) enqueue(obj);
      },
      onUpdate: (oldObj, newObj, info) => {
        if (!pass((p) => p.update?.(oldObj, newObj, info) ?? true)) return;
        // Both: an update can move an object from one owner (or mapped key) to another.
        enqueue(oldObj);
        enqueue(newObj);
      },
      onDelete: (obj) => {
        if (pass((p) => p.delete?.(obj) ?? true)) enqueue(obj);
      },
    });
  }

  private async work(queue: WorkQueue): Promise<void> {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await this.reconcileKey(queue, key);
      } finally {
        queue.done(key);
      }
    }
  }

  private async reconcileKey(queue: WorkQueue, key: string): Promise<void> {
    const request = parseKey(key);
    const signal = this.abort!.signal;
    const log = this.log.child({ namespace: request.namespace, name: request.name });
    const labels = { controller: this.name };
    const started = performance.now();
    this.metrics?.active.with(labels).inc();
    try {
      const result = await this.options.reconciler.reconcile(request, {
        signal,
        log,
        retries: queue.numRequeues(key),
      });
      queue.forget(key);
      const after = result?.requeueAfter;
      // This reconcile's answer replaces what an earlier one scheduled for the key.
      queue.reschedule(key, after !== undefined && after > 0 ? after : undefined);
      if (after !== undefined && after > 0) {
        this.metrics?.total.inc({ ...labels, result: 'requeue_after' });
      } else {
        this.metrics?.total.inc({ ...labels, result: 'success' });
      }
    } catch (err) {
      this.metrics?.total.inc({ ...labels, result: 'error' });
      this.metrics?.errors.inc(labels);
      if (signal.aborted) {
        log.info('reconcile ended by shutdown', { error: err });
        return;
      }
      log.error('reconcile failed', { error: err, retries: queue.numRequeues(key) + 1 });
      queue.addRateLimited(key);
    } finally {
      this.metrics?.active.with(labels).dec();
      this.metrics?.time.observe((performance.now() - started) / 1000);
    }
  }
}
