// An informer: a local cache of one resource kept current by LIST then WATCH, with the failure
// handling client-node's makeInformer lacks (it neither restarts nor notices a silent watch):
// - a watch that ends (server timeout, network error) resumes from the last resourceVersion, which
//   BOOKMARK events keep fresh, so nothing is missed and nothing is listed again;
// - 410 Gone (that version is compacted away), as an HTTP status or an ERROR event, relists, and
//   the new list is diffed against the cache so handlers see the deletes and updates they missed;
// - failures back off exponentially with jitter;
// - a watchdog restarts a watch that has been silent too long (a half-open TCP connection looks
//   exactly like a quiet resource);
// - an optional periodic relist emits an update for every object, so reconcilers repair drift
//   that no event announces (someone changed the world outside the API).
import * as k8s from '../../core/kube/client-node.ts';
import { backoffDelay, sleep, type BackoffOptions } from './backoff.ts';
import { isGone, type KubeClient, type Query } from '../../core/kube/client.ts';
import { silentLogger, type Logger } from './log.ts';
import type { Counter, Gauge, Registry } from '../../core/metrics.ts';
import { objectKey, resourcePath, type KubeObject, type ResourceRef } from '../../core/kube/objects.ts';

export interface InformerOptions {
  resource: ResourceRef;
  /** Only this namespace; empty or omitted watches all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Name for logs and metrics; default "<resource>" plus the namespace. */
  name?: string;
  /** LIST page size (limit/continue); default 500. */
  pageSize?: number;
  /** Relist everything this often and emit updates for all objects; 0 (default) disables. */
  resyncPeriodMs?: number;
  /**
   * Restart a watch that delivered nothing (no event, no bookmark) for this long; default 2 min.
   * The apiserver's watch cache sends a bookmark about every minute, so a healthy watch is never
   * silent that long; watches served from etcd directly (events) send none and merely restart.
   */
  watchdogMs?: number;
  /**
   * timeoutSeconds asked of the server for each watch; default a random 5-10 min like client-go,
   * so watches are re-established regularly (and spread across apiservers). 0 leaves it to the
   * server's --min-request-timeout.
   */
  watchTimeoutSeconds?: number;
  /**
   * Cache metadata only (PartialObjectMetadata, as controller-runtime's metadata informers): for
   * kinds where existence and labels are all a controller needs, e.g. Secrets, whose values then
   * never sit in this process's memory.
   */
  metadataOnly?: boolean;
  /**
   * Cache objects without metadata.managedFields, as controller-runtime's
   * TransformStripManagedFields: for controllers that never read them (the Rollout controller's
   * ReplicaSets, Services and Rollouts), which otherwise hold every field's owner of every
   * object, often more bytes than the fields themselves.
   */
  dropManagedFields?: boolean;
  /** Retry delays after failures; default 800 ms doubling to 30 s, jitter 0.2. */
  backoff?: Partial<BackoffOptions>;
  logger?: Logger;
  metrics?: Registry;
}

export interface AddInfo {
  /** True for objects from the initial list or replayed to a handler added later. */
  initialList: boolean;
}
export interface UpdateInfo {
  /** True when emitted by a periodic resync for an object that did not change. */
  resync: boolean;
}
export interface DeleteInfo {
  /**
   * True when the deletion was found by a relist rather than seen as a watch event: the object
   * passed is the last state the cache knew, which may be older than the final one.
   */
  finalStateUnknown: boolean;
}

/** Handlers run synchronously, in event order; they must not mutate the objects. */
export interface InformerHandlers<T> {
  onAdd?(obj: T, info: AddInfo): void;
  onUpdate?(oldObj: T, newObj: T, info: UpdateInfo): void;
  onDelete?(obj: T, info: DeleteInfo): void;
}

/** What a controller watches: an informer, or a fake in unit tests. */
export interface EventSource<T> {
  readonly name: string;
  /** Registers handlers; existing objects are replayed as adds. Returns an unsubscribe function. */
  addHandlers(handlers: InformerHandlers<T>): () => void;
  hasSynced(): boolean;
  waitForSync(signal?: AbortSignal): Promise<void>;
}

export interface InformerStats {
  /** LIST rounds, including the first one. */
  lists: number;
  /** LIST rounds after the first (410 Gone, resync, errors). */
  relists: number;
  /** Relists caused by 410 Gone. */
  goneRelists: number;
  /** Relists caused by the periodic resync. */
  resyncs: number;
  /** Watch requests made. */
  watches: number;
  /** Watches started again after one ended (server timeout, error, watchdog). */
  watchRestarts: number;
  /** Watches the watchdog aborted for silence. */
  watchdogRestarts: number;
  /** Watch events received, bookmarks included. */
  events: number;
  bookmarks: number;
  /** Failed list or watch attempts. */
  errors: number;
}

type WatchEnd = 'closed' | 'gone' | 'watchdog' | 'resync' | 'stopped';

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; message?: string; reason?: string };
}

interface ListPage {
  kind?: string;
  apiVersion?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

export class Informer<T extends KubeObject = KubeObject> implements EventSource<T> {
  readonly name: string;
  readonly resource: ResourceRef;
  readonly namespace: string;
  readonly stats: InformerStats = {
    lists: 0,
    relists: 0,
    goneRelists: 0,
    resyncs: 0,
    watches: 0,
    watchRestarts: 0,
    watchdogRestarts: 0,
    events: 0,
    bookmarks: 0,
    errors: 0,
  };

  private readonly client: KubeClient;
  private readonly options: InformerOptions;
  private readonly backoff: BackoffOptions;
  private readonly log: Logger;
  private readonly store = new Map<string, T>();
  private readonly handlers = new Set<InformerHandlers<T>>();
  private readonly stopController = new AbortController();
  private readonly syncWaiters = new Set<() => void>();
  private running?: Promise<void>;
  private synced = false;
  private lastResourceVersion = '';
  private metrics?: {
    lists: Counter;
    watchRestarts: Counter;
    events: Counter;
    objects: Gauge;
  };

  constructor(client: KubeClient, options: InformerOptions) {
    this.client = client;
    this.options = options;
    this.resource = options.resource;
    this.namespace = options.resource.namespaced === false ? '' : (options.namespace ?? '');
    this.name =
      options.name ??
      (this.namespace ? `${options.resource.resource}/${this.namespace}` : options.resource.resource);
    this.backoff = { initialMs: 800, maxMs: 30_000, jitter: 0.2, ...options.backoff };
    this.log = (options.logger ?? silentLogger).child({ informer: this.name });
    const registry = options.metrics;
    if (registry) {
      const labelNames = ['informer'];
      this.metrics = {
        lists: registry.counter({
          name: 'informer_lists_total',
          help: 'LIST rounds, by cause.',
          labelNames: ['informer', 'cause'],
        }),
        watchRestarts: registry.counter({
          name: 'informer_watch_restarts_total',
          help: 'Watches started again, by why the previous one ended.',
          labelNames: ['informer', 'reason'],
        }),
        events: registry.counter({
          name: 'informer_events_total',
          help: 'Watch events received, by type.',
          labelNames: ['informer', 'type'],
        }),
        objects: registry.gauge({
          name: 'informer_objects',
          help: 'Objects in the informer cache.',
          labelNames,
        }),
      };
    }
  }

  /** Starts listing and watching in the background; idempotent. */
  start(): void {
    if (this.stopController.signal.aborted) throw new Error(`informer ${this.name} was stopped`);
    this.running ??= this.run();
  }

  /** Aborts the current request and waits for the loop to end. The cache keeps its contents. */
  async stop(): Promise<void> {
    this.stopController.abort();
    for (const wake of this.syncWaiters) wake();
    await this.running;
  }

  isRunning(): boolean {
    return this.running !== undefined && !this.stopController.signal.aborted;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves after the first complete list; rejects if the informer stops or `signal` aborts first. */
  async waitForSync(signal?: AbortSignal): Promise<void> {
    while (!this.synced) {
      if (this.stopController.signal.aborted)
        throw new Error(`informer ${this.name} stopped before it synced`);
      if (signal?.aborted) throw new Error(`gave up waiting for informer ${this.name} to sync`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.syncWaiters.delete(wake);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.syncWaiters.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  /** The resourceVersion the next watch would start from. */
  resourceVersion(): string {
    return this.lastResourceVersion;
  }

  get(namespace: string, name: string): T | undefined {
    return this.store.get(namespace ? `${namespace}/${name}` : name);
  }

  getByKey(key: string): T | undefined {
    return this.store.get(key);
  }

  /** Cached objects, optionally of one namespace. */
  list(namespace?: string): T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => (o.metadata?.namespace ?? '') === namespace);
  }

  keys(): string[] {
    return [...this.store.keys()];
  }

  /**
   * Records an object this process just wrote (the API's answer), so a read right after the write
   * never returns an older copy while the watch catches up. Handlers see it now, as the watch
   * would show it (other controllers share this informer), and the watch's own event for the
   * same version later changes nothing. A cached copy that is already newer stays.
   */
  written(written: T): void {
    if (!written?.metadata?.name || !written.metadata.resourceVersion) return;
    // The writer keeps its object: the copy cached is ours to trim.
    const obj = this.options.dropManagedFields
      ? this.trim({ ...written, metadata: { ...written.metadata } })
      : written;
    const key = objectKey(obj);
    const cached = this.store.get(key);
    if (cached && !newerThan(obj, cached)) return;
    this.store.set(key, obj);
    if (cached) this.emit('onUpdate', (h) => h.onUpdate?.(cached, obj, { resync: false }));
    else this.emit('onAdd', (h) => h.onAdd?.(obj, { initialList: false }));
    this.metrics?.objects.set({ informer: this.name }, this.store.size);
  }

  addHandlers(handlers: InformerHandlers<T>): () => void {
    this.handlers.add(handlers);
    // Like client-go: a handler added late still sees every object once, as an add.
    for (const obj of this.store.values())
      this.call('onAdd', () => handlers.onAdd?.(obj, { initialList: true }));
    return () => this.handlers.delete(handlers);
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  private async run(): Promise<void> {
    let listCause: 'initial' | 'gone' | 'resync' | 'error' | undefined = 'initial';
    let failures = 0;
    let nextResyncAt = Infinity;
    const resyncPeriod = this.options.resyncPeriodMs ?? 0;
    while (!this.stopped) {
      try {
        if (listCause) {
          await this.listAndReplace(listCause);
          listCause = undefined;
          if (resyncPeriod > 0) nextResyncAt = performance.now() + resyncPeriod;
        }
        const { end, healthy } = await this.watch(nextResyncAt);
        if (end === 'stopped') break;
        if (end === 'gone') listCause = 'gone';
        else if (end === 'resync') listCause = 'resync';
        else {
          this.stats.watchRestarts++;
          if (end === 'watchdog') {
            this.stats.watchdogRestarts++;
            this.client.resetConnections();
          }
          this.metrics?.watchRestarts.inc({ informer: this.name, reason: end });
          this.log.debug('watch ended; resuming', { reason: end, resourceVersion: this.lastResourceVersion });
        }
        // Failures are forgiven only by a watch that worked; a server that ends every watch at
        // once (or answers every new one with 410) must not turn this loop into a busy loop.
        if (healthy) failures = 0;
        else {
          failures++;
          // The first 410 relists at once; a second in a row waits like any failure.
          if (end !== 'gone' || failures > 1) {
            await sleep(backoffDelay(failures, this.backoff), this.stopController.signal);
          }
        }
      } catch (err) {
        if (this.stopped) break;
        this.stats.errors++;
        failures++;
        if (listCause === undefined && !(err instanceof WatchProtocolError)) {
          // Could not (re)open the watch: retry it from the same resourceVersion. Unless the
          // server answered, the network is suspect, and so are the pooled connections.
          if (!(err instanceof k8s.ApiException)) this.client.resetConnections();
          this.stats.watchRestarts++;
          this.metrics?.watchRestarts.inc({ informer: this.name, reason: 'error' });
        } else {
          // A failed list (an expired continue token included) starts over from the first page.
          listCause ??= 'error';
        }
        const delay = backoffDelay(failures, this.backoff);
        this.log.warn('list/watch failed; retrying', { error: err, retryInMs: Math.round(delay), failures });
        await sleep(delay, this.stopController.signal);
      }
    }
  }

  private async listAndReplace(cause: 'initial' | 'gone' | 'resync' | 'error'): Promise<void> {
    const path = resourcePath(this.resource, this.namespace);
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion = '';
    do {
      // No resourceVersion: a consistent (quorum) read, so the list is never older than the cache.
      const page = await this.client.request<ListPage>('GET', path, {
        query: { ...this.selectors(), limit: this.options.pageSize ?? 500, continue: continueToken },
        ...(this.options.metadataOnly ? { headers: { Accept: METADATA_LIST_ACCEPT } } : {}),
        signal: this.stopController.signal,
        timeoutMs: 60_000,
      });
      // List items carry no kind/apiVersion; watch events do. Fill them in for one shape.
      const kind = this.options.metadataOnly
        ? 'PartialObjectMetadata'
        : page.kind?.endsWith('List')
          ? page.kind.slice(0, -4)
          : undefined;
      for (const item of page.items ?? []) {
        items.push(this.trim({ apiVersion: page.apiVersion, kind, ...item } as T));
      }
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      continueToken = page.metadata?.continue || undefined;
    } while (continueToken);
    if (this.stopped) return;

    this.stats.lists++;
    if (cause !== 'initial') this.stats.relists++;
    if (cause === 'gone') this.stats.goneRelists++;
    if (cause === 'resync') this.stats.resyncs++;
    this.metrics?.lists.inc({ informer: this.name, cause });
    this.replace(items, cause === 'resync');
    this.lastResourceVersion = resourceVersion;
    this.log.debug('listed', { cause, objects: items.length, resourceVersion });
    if (!this.synced) {
      this.synced = true;
      for (const wake of this.syncWaiters) wake();
    }
  }

  /** Replaces the cache with a fresh list, emitting what changed (and, on resync, everything). */
  private replace(items: T[], resync: boolean): void {
    const fresh = new Map<string, T>();
    for (const item of items) fresh.set(objectKey(item), item);
    for (const [key, old] of this.store) {
      if (fresh.has(key)) continue;
      this.store.delete(key);
      this.emit('onDelete', (h) => h.onDelete?.(old, { finalStateUnknown: true }));
    }
    const initialList = !this.synced;
    for (const [key, obj] of fresh) {
      const old = this.store.get(key);
      // A list that started before one of our writes landed must not take the write back.
      if (old && newerThan(old, obj)) continue;
      this.store.set(key, obj);
      if (!old) this.emit('onAdd', (h) => h.onAdd?.(obj, { initialList }));
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) {
        this.emit('onUpdate', (h) => h.onUpdate?.(old, obj, { resync: false }));
      } else if (resync) this.emit('onUpdate', (h) => h.onUpdate?.(old, obj, { resync: true }));
    }
    this.metrics?.objects.set({ informer: this.name }, this.store.size);
  }

  /** One watch request, from the last resourceVersion until it ends; returns why it ended. */
  private async watch(resyncAt: number): Promise<{ end: WatchEnd; healthy: boolean }> {
    const abort = new AbortController();
    let reason: WatchEnd | undefined;
    const stopWatch = (why: WatchEnd) => {
      reason ??= why;
      abort.abort();
    };
    const onStop = () => stopWatch('stopped');
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    const watchdogMs = this.options.watchdogMs ?? 120_000;
    let watchdog = setTimeout(() => stopWatch('watchdog'), watchdogMs);
    const resyncTimer =
      resyncAt === Infinity
        ? undefined
        : setTimeout(() => stopWatch('resync'), Math.max(0, resyncAt - performance.now()));
    const started = performance.now();
    let received = 0;
    const healthy = () => received > 0 || performance.now() - started > 1000;
    const gone = (message: string | undefined) => {
      this.log.info('watch expired (410 Gone); relisting', { message });
      return { end: 'gone' as const, healthy: healthy() };
    };
    try {
      if (this.stopped) return { end: 'stopped', healthy: true };
      this.stats.watches++;
      const lines = await this.client.watchLines(
        resourcePath(this.resource, this.namespace),
        this.watchQuery(),
        abort.signal,
        this.options.metadataOnly ? { Accept: METADATA_ACCEPT } : undefined,
      );
      for await (const line of lines) {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => stopWatch('watchdog'), watchdogMs);
        let event: WatchEvent;
        try {
          event = JSON.parse(line) as WatchEvent;
        } catch {
          throw new WatchProtocolError(`unparseable watch event: ${line.slice(0, 100)}`);
        }
        if (event.type === 'ERROR') {
          const status = event.object;
          if (status.code === 410) return gone(status.message);
          throw new k8s.ApiException(
            status.code ?? 500,
            `watch error: ${status.message ?? 'unknown'}`,
            status,
            {},
          );
        }
        this.apply(event);
        received++;
      }
      return { end: reason ?? 'closed', healthy: healthy() };
    } catch (err) {
      if (reason) return { end: reason, healthy: healthy() };
      if (isGone(err)) return gone((err as Error).message);
      throw err;
    } finally {
      clearTimeout(watchdog);
      clearTimeout(resyncTimer);
      this.stopController.signal.removeEventListener('abort', onStop);
      abort.abort();
    }
  }

  /** The object as this cache keeps it (dropManagedFields); objects it parsed itself, in place. */
  private trim(obj: T): T {
    if (this.options.dropManagedFields && obj?.metadata)
      delete (obj.metadata as { managedFields?: unknown }).managedFields;
    return obj;
  }

  private apply(event: WatchEvent): void {
    this.stats.events++;
    this.metrics?.events.inc({ informer: this.name, type: event.type });
    const obj = this.trim(event.object as T);
    const rv = obj.metadata?.resourceVersion;
    switch (event.type) {
      case 'BOOKMARK':
        this.stats.bookmarks++;
        break;
      case 'ADDED':
      case 'MODIFIED': {
        const key = objectKey(obj);
        const old = this.store.get(key);
        // The watch is behind one of our own writes (written()): it will deliver that one too.
        if (old && newerThan(old, obj)) break;
        this.store.set(key, obj);
        // Our own write, which handlers were shown when it was written.
        if (old && old.metadata?.resourceVersion === rv) break;
        if (old) this.emit('onUpdate', (h) => h.onUpdate?.(old, obj, { resync: false }));
        else this.emit('onAdd', (h) => h.onAdd?.(obj, { initialList: false }));
        break;
      }
      case 'DELETED': {
        const key = objectKey(obj);
        this.store.delete(key);
        this.emit('onDelete', (h) => h.onDelete?.(obj, { finalStateUnknown: false }));
        break;
      }
      default:
        throw new WatchProtocolError(`unknown watch event type ${String(event.type)}`);
    }
    // Only after the event is applied: a watch resumed from here must not skip it.
    if (rv) this.lastResourceVersion = rv;
    this.metrics?.objects.set({ informer: this.name }, this.store.size);
  }

  private watchQuery(): Query {
    const configured = this.options.watchTimeoutSeconds;
    const timeoutSeconds = configured ?? Math.floor(300 * (1 + Math.random()));
    return {
      ...this.selectors(),
      resourceVersion: this.lastResourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: timeoutSeconds > 0 ? timeoutSeconds : undefined,
    };
  }

  private selectors(): Query {
    return { labelSelector: this.options.labelSelector, fieldSelector: this.options.fieldSelector };
  }

  private emit(kind: keyof InformerHandlers<T>, call: (h: InformerHandlers<T>) => void): void {
    for (const handlers of this.handlers) this.call(kind, () => call(handlers));
  }

  private call(kind: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // One broken handler must not stop the informer or starve the other handlers.
      this.log.error('event handler threw', { handler: kind, error: err });
    }
  }
}

const METADATA_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';
const METADATA_LIST_ACCEPT =
  'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

/**
 * Whether `a` is a later version of the same object than `b`. resourceVersions are etcd revisions
 * (decimal); anything else compares as not newer, so the informer behaves as it did without it.
 */
export function newerThan(a: KubeObject, b: KubeObject): boolean {
  const x = a.metadata?.resourceVersion;
  const y = b.metadata?.resourceVersion;
  if (!x || !y || !/^\d+$/.test(x) || !/^\d+$/.test(y)) return false;
  if (a.metadata?.uid && b.metadata?.uid && a.metadata.uid !== b.metadata.uid) return false;
  return BigInt(x) > BigInt(y);
}

/** The watch stream was not what the API promises; relist rather than trust the cache. */
class WatchProtocolError extends Error {
  override name = 'WatchProtocolError';
}
