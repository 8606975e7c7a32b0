// A rate-limited work queue with client-go's semantics, which is what makes level-triggered
// controllers correct:
// - a key added many times while it waits is processed once (events collapse into one reconcile);
// - a key is never handed to two workers at once; if it is added while being processed it is
//   marked dirty and queued again when the worker calls done() (the newer state gets its turn);
// - failures back off per key, exponentially, until forget() (a success) resets the key;
// - addAfter() schedules a key; an earlier addAfter for the same key wins.
import type { Registry } from '../../core/metrics.ts';
import { MAX_TIMER_MS } from '../../core/duration.ts';

/** Decides how long a key waits before its next retry. */
export interface RateLimiter {
  /** The delay for the next retry of `key`; counts one more failure. */
  when(key: string): number;
  /** Clears the failure history of `key`. */
  forget(key: string): void;
  /** How many failures `key` has had since it was last forgotten. */
  retries(key: string): number;
}

export interface ExponentialRateLimiterOptions {
  /** Delay after the first failure; client-go's default is 5 ms. */
  baseMs?: number;
  /** Delay cap; client-go's default is 1000 s. */
  maxMs?: number;
}

/** base * 2^failures, capped: 5 ms, 10 ms, 20 ms, ... 1000 s (client-go's per-item limiter). */
export class ExponentialRateLimiter implements RateLimiter {
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly failures = new Map<string, number>();

  constructor(options: ExponentialRateLimiterOptions = {}) {
    this.baseMs = options.baseMs ?? 5;
    this.maxMs = options.maxMs ?? 1_000_000;
    if (!(this.baseMs > 0) || !(this.maxMs >= this.baseMs)) {
      throw new Error('ExponentialRateLimiter needs 0 < baseMs <= maxMs');
    }
  }

  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    // 2 ** n overflows to Infinity for large n, which Math.min caps.
    return Math.min(this.maxMs, this.baseMs * 2 ** n);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

export interface WorkQueueOptions {
  /** Name for metrics and logs. */
  name?: string;
  rateLimiter?: RateLimiter;
  /** Registers workqueue_* series (depth, adds, retries, wait and work durations). */
  metrics?: Registry;
}

/** A FIFO with O(1) push and shift (Array#shift is O(n) on large arrays). */
class Fifo {
  private items: string[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: string): void {
    this.items.push(item);
  }

  shift(): string | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export class WorkQueue {
  readonly name: string;
  readonly rateLimiter: RateLimiter;
  private readonly queue = new Fifo();
  /** Keys that need processing: queued, or added again while being processed. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  /** Delayed keys: when each becomes ready and the timer that will add it. */
  private readonly waiting = new Map<string, { readyAt: number; timer: NodeJS.Timeout }>();
  /** When each queued key was added, for the wait-duration histogram. */
  private readonly addedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private readonly getters: Array<() => void> = [];
  private shuttingDown = false;
  private drained?: { promise: Promise<void>; resolve: () => void };
  private readonly metrics?: {
    depth: (n: number) => void;
    adds: () => void;
    retries: () => void;
    wait: (seconds: number) => void;
    work: (seconds: number) => void;
  };

  constructor(options: WorkQueueOptions = {}) {
    this.name = options.name ?? 'queue';
    this.rateLimiter = options.rateLimiter ?? new ExponentialRateLimiter();
    const registry = options.metrics;
    if (registry) {
      const labels = { name: this.name };
      const depth = registry
        .gauge({ name: 'workqueue_depth', help: 'Keys waiting in the work queue.', labelNames: ['name'] })
        .with(labels);
      const adds = registry
        .counter({
          name: 'workqueue_adds_total',
          help: 'Keys added to the work queue.',
          labelNames: ['name'],
        })
        .with(labels);
      const retries = registry
        .counter({
          name: 'workqueue_retries_total',
          help: 'Keys re-added after a failure (rate limited).',
          labelNames: ['name'],
        })
        .with(labels);
      const buckets = [0.001, 0.01, 0.1, 1, 10, 100, 1000];
      const wait = registry
        .histogram({
          name: 'workqueue_queue_duration_seconds',
          help: 'Time a key waits in the queue before a worker takes it.',
          labelNames: ['name'],
          buckets,
        })
        .with(labels);
      const work = registry
        .histogram({
          name: 'workqueue_work_duration_seconds',
          help: 'Time a worker holds a key.',
          labelNames: ['name'],
          buckets,
        })
        .with(labels);
      this.metrics = {
        depth: (n) => depth.set(n),
        adds: () => adds.inc(),
        retries: () => retries.inc(),
        wait: (s) => wait.observe(s),
        work: (s) => work.observe(s),
      };
    }
  }

  /** Queues `key` unless it is already waiting; ignored after shutDown(). */
  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.dirty.has(key)) return;
    this.metrics?.adds();
    this.dirty.add(key);
    // Being processed: done() queues it again, so one worker never races another on a key.
    if (this.processing.has(key)) return;
    this.enqueue(key);
  }

  /** Adds `key` after `delayMs`. If the key is already scheduled, the earlier time wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (!(delayMs > 0)) {
      this.add(key);
      return;
    }
    const readyAt = performance.now() + delayMs;
    const existing = this.waiting.get(key);
    if (existing) {
      if (existing.readyAt <= readyAt) return;
      clearTimeout(existing.timer);
    }
    // Node fires a delay over 2^31-1 ms after 1 ms: a hot loop. Wake then instead (the
    // reconciler, asked again early, simply asks for the rest).
    const timer = setTimeout(
      () => {
        this.waiting.delete(key);
        this.add(key);
      },
      Math.min(delayMs, MAX_TIMER_MS),
    );
    this.waiting.set(key, { readyAt, timer });
  }

  /**
   * What a reconcile that just finished says: `key` is next due after `delayMs` (undefined: only
   * when an event adds it), whatever an earlier reconcile had scheduled. That schedule was made
   * from an older state (a missing branch retried in 30 s, say) and would wake the key for nothing.
   */
  reschedule(key: string, delayMs: number | undefined): void {
    const existing = this.waiting.get(key);
    if (existing) {
      clearTimeout(existing.timer);
      this.waiting.delete(key);
    }
    if (delayMs !== undefined) this.addAfter(key, delayMs);
  }

  /** Adds `key` after the rate limiter's delay for it (one more failure). */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.metrics?.retries();
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Resets the failure backoff of `key` (call after a successful reconcile). */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.rateLimiter.retries(key);
  }

  /**
   * The next key to process, waiting for one if the queue is empty; undefined once the queue is
   * shut down. The caller owns the key until it calls done(key).
   */
  async get(): Promise<string | undefined> {
    for (;;) {
      if (this.shuttingDown) return undefined;
      const key = this.queue.shift();
      if (key !== undefined) {
        this.dirty.delete(key);
        this.processing.add(key);
        const now = performance.now();
        const added = this.addedAt.get(key);
        this.addedAt.delete(key);
        if (added !== undefined) this.metrics?.wait((now - added) / 1000);
        this.startedAt.set(key, now);
        this.metrics?.depth(this.queue.length);
        return key;
      }
      await new Promise<void>((resolve) => this.getters.push(resolve));
    }
  }

  /** Marks `key` as processed; if it was added meanwhile it is queued again. */
  done(key: string): void {
    if (!this.processing.delete(key)) return;
    const started = this.startedAt.get(key);
    this.startedAt.delete(key);
    if (started !== undefined) this.metrics?.work((performance.now() - started) / 1000);
    if (this.dirty.has(key) && !this.shuttingDown) this.enqueue(key);
    if (this.shuttingDown && this.processing.size === 0) this.drained?.resolve();
  }

  /** Keys waiting to be handed out (not those being processed or scheduled for later). */
  len(): number {
    return this.queue.length;
  }

  /** Keys currently held by workers. */
  inFlight(): number {
    return this.processing.size;
  }

  /** Keys scheduled by addAfter/addRateLimited that are not yet due. */
  pendingLater(): number {
    return this.waiting.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Stops the queue: adds are ignored, get() returns undefined, queued and scheduled keys are
   * dropped. Resolves once every key being processed is done(). Dropping queued keys is safe for
   * level-triggered controllers: whoever runs next lists everything and enqueues it again; it
   * also lets a process that lost its lease stop writing quickly.
   */
  shutDown(): Promise<void> {
    if (!this.drained) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.drained = { promise, resolve };
      this.shuttingDown = true;
      for (const { timer } of this.waiting.values()) clearTimeout(timer);
      this.waiting.clear();
      this.queue.clear();
      this.dirty.clear();
      this.addedAt.clear();
      this.metrics?.depth(0);
      for (const wake of this.getters.splice(0)) wake();
      if (this.processing.size === 0) resolve();
    }
    return this.drained.promise;
  }

  private enqueue(key: string): void {
    this.queue.push(key);
    this.addedAt.set(key, performance.now());
    this.metrics?.depth(this.queue.length);
    this.getters.shift()?.();
  }
}
