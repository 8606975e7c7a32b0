import { describe, expect, test } from '@jest/globals';
import { Registry } from '../../../../src/core/metrics.ts';
import { ExponentialRateLimiter, WorkQueue } from '../../../../src/controller/runtime/workqueue.ts';

const tick = () => new Promise((r) => setImmediate(r));
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves to the key, or to "pending" if get() has not returned after a few event-loop turns. */
async function getOrPending(queue: WorkQueue): Promise<string | undefined> {
  const result = await Promise.race([
    queue.get(),
    (async () => {
      for (let i = 0; i < 5; i++) await tick();
      return 'pending';
    })(),
  ]);
  return result;
}

describe('WorkQueue', () => {
  test('a key added many times while waiting is handed out once, in FIFO order', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('b');
    queue.add('a');
    queue.add('a');
    expect(queue.len()).toBe(2);
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
    expect(queue.len()).toBe(0);
    expect(queue.inFlight()).toBe(2);
  });

  test('a key being processed is not handed out again; added meanwhile, it is requeued on done()', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    expect(await queue.get()).toBe('a');
    queue.add('a');
    queue.add('a');
    // Dirty, but not queued while a worker holds it.
    expect(queue.len()).toBe(0);
    const next = queue.get();
    let got: string | undefined;
    void next.then((k) => (got = k));
    await tick();
    expect(got).toBeUndefined();
    queue.done('a');
    expect(await next).toBe('a');
    queue.done('a');
    // Not dirty any more: done() does not requeue.
    expect(queue.len()).toBe(0);
    expect(await getOrPending(queue)).toBe('pending');
  });

  test('concurrent workers never hold the same key at once, and the last add of each key is processed', async () => {
    const queue = new WorkQueue();
    const holding = new Set<string>();
    let overlaps = 0;
    let maxParallel = 0;
    const lastAdd = new Map<string, number>();
    const lastStart = new Map<string, number>();
    let clock = 0;
    const workers = Array.from({ length: 4 }, async () => {
      for (;;) {
        const key = await queue.get();
        if (key === undefined) return;
        if (holding.has(key)) overlaps++;
        holding.add(key);
        maxParallel = Math.max(maxParallel, holding.size);
        lastStart.set(key, ++clock);
        await delay(Math.random() * 3);
        holding.delete(key);
        queue.done(key);
      }
    });
    for (let i = 0; i < 200; i++) {
      const key = `k${i % 5}`;
      queue.add(key);
      lastAdd.set(key, ++clock);
      if (i % 7 === 0) await delay(1);
    }
    // Wait until idle, then every key's last processing started after its last add.
    while (queue.len() > 0 || queue.inFlight() > 0) await delay(2);
    await queue.shutDown();
    await Promise.all(workers);
    expect(overlaps).toBe(0);
    expect(maxParallel).toBeGreaterThan(1);
    for (const [key, added] of lastAdd) expect(lastStart.get(key)!).toBeGreaterThan(added);
  });

  test('addAfter delays a key; the earliest of several addAfter calls wins', async () => {
    const queue = new WorkQueue();
    const started = performance.now();
    queue.addAfter('late', 60);
    queue.addAfter('early', 20);
    queue.addAfter('x', 300);
    queue.addAfter('x', 40); // earlier: replaces the 300 ms schedule
    queue.addAfter('x', 500); // later: ignored
    expect(queue.len()).toBe(0);
    expect(queue.pendingLater()).toBe(3);
    const order: Array<[string, number]> = [];
    for (let i = 0; i < 3; i++) {
      const key = (await queue.get())!;
      order.push([key, performance.now() - started]);
      queue.done(key);
    }
    expect(order.map(([k]) => k)).toEqual(['early', 'x', 'late']);
    expect(order[0]![1]).toBeGreaterThanOrEqual(19);
    // Before 'late' (60 ms): the 40 ms schedule replaced the 300 ms one.
    expect(order[1]![1]).toBeGreaterThanOrEqual(39);
    expect(order[2]![1]).toBeGreaterThanOrEqual(59);
    expect(queue.pendingLater()).toBe(0);
  });

  test('a delay longer than a Node timer holds (2^31 ms, 30 days) waits, instead of firing after 1 ms', async () => {
    const queue = new WorkQueue();
    queue.addAfter('later', 2 ** 31);
    queue.addAfter('month', 30 * 24 * 3_600_000);
    await delay(30);
    expect(queue.len()).toBe(0);
    expect(queue.pendingLater()).toBe(2);
    await queue.shutDown();
  });

  test("reschedule: a finished reconcile's answer replaces an earlier schedule, sooner or later", async () => {
    const queue = new WorkQueue();
    queue.addAfter('retry', 30); // an old answer: look again in 30 ms
    queue.reschedule('retry', 10_000); // the newer one: not before 10 s
    queue.addAfter('idle', 30);
    queue.reschedule('idle', undefined); // nothing due: only an event adds it again
    queue.addAfter('soon', 5_000);
    queue.reschedule('soon', 20);
    const started = performance.now();
    expect(await queue.get()).toBe('soon');
    expect(performance.now() - started).toBeLessThan(1_000);
    queue.done('soon');
    await delay(80);
    expect(queue.len()).toBe(0);
    expect(queue.pendingLater()).toBe(1); // 'retry', at 10 s
    await queue.shutDown();
  });

  test('addAfter with no delay adds at once', async () => {
    const queue = new WorkQueue();
    queue.addAfter('now', 0);
    expect(queue.len()).toBe(1);
    expect(await queue.get()).toBe('now');
  });

  test('addRateLimited backs off exponentially per key and forget() resets it', async () => {
    const queue = new WorkQueue({ rateLimiter: new ExponentialRateLimiter({ baseMs: 10, maxMs: 1000 }) });
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      queue.addRateLimited('a');
      expect(queue.len()).toBe(0);
      const key = (await queue.get())!;
      waits.push(performance.now() - started);
      queue.done(key);
    }
    // 10, 20, 40 ms.
    expect(waits[0]).toBeGreaterThanOrEqual(9);
    expect(waits[1]).toBeGreaterThanOrEqual(19);
    expect(waits[2]).toBeGreaterThanOrEqual(39);
    expect(queue.numRequeues('a')).toBe(3);
    expect(queue.numRequeues('b')).toBe(0);
    queue.forget('a');
    expect(queue.numRequeues('a')).toBe(0);
    // Forgotten, 'a' waits the base 10 ms again, not the 80 ms a fourth failure would: it comes
    // before a marker due at 50 ms.
    queue.addAfter('marker', 50);
    queue.addRateLimited('a');
    expect(await queue.get()).toBe('a');
  });

  test('shutDown wakes waiting getters, drops queued and scheduled keys, and resolves once in-flight keys are done', async () => {
    const queue = new WorkQueue();
    queue.add('held');
    expect(await queue.get()).toBe('held');
    queue.add('queued');
    queue.addAfter('later', 10_000);
    const waiting = queue.get(); // takes "queued"
    expect(await waiting).toBe('queued');
    const idle = queue.get();

    let drained = false;
    const shutdown = queue.shutDown().then(() => (drained = true));
    expect(await idle).toBeUndefined();
    expect(queue.isShuttingDown()).toBe(true);
    expect(queue.pendingLater()).toBe(0);
    queue.add('ignored');
    expect(queue.len()).toBe(0);
    expect(await queue.get()).toBeUndefined();

    queue.done('held');
    await tick();
    expect(drained).toBe(false); // "queued" is still being processed
    queue.done('queued');
    await shutdown;
    expect(drained).toBe(true);
    // Idempotent.
    await queue.shutDown();
  });

  test('reports depth, adds and retries as metrics', async () => {
    const metrics = new Registry();
    const queue = new WorkQueue({
      name: 'things',
      metrics,
      rateLimiter: new ExponentialRateLimiter({ baseMs: 1 }),
    });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    let text = await metrics.render();
    expect(text).toContain('workqueue_depth{name="things"} 2');
    expect(text).toContain('workqueue_adds_total{name="things"} 2');
    const key = (await queue.get())!;
    queue.done(key);
    queue.addRateLimited('c');
    text = await metrics.render();
    expect(text).toContain('workqueue_depth{name="things"} 1');
    expect(text).toContain('workqueue_retries_total{name="things"} 1');
    expect(text).toContain('workqueue_work_duration_seconds_count{name="things"} 1');
    expect(text).toContain('workqueue_queue_duration_seconds_count{name="things"} 1');
  });
});

describe('ExponentialRateLimiter', () => {
  test('defaults to client-go: 5 ms doubling per failure, capped at 1000 s, per key', () => {
    const limiter = new ExponentialRateLimiter();
    const delays = Array.from({ length: 5 }, () => limiter.when('a'));
    expect(delays).toEqual([5, 10, 20, 40, 80]);
    expect(limiter.when('b')).toBe(5);
    for (let i = 0; i < 100; i++) limiter.when('a');
    expect(limiter.when('a')).toBe(1_000_000);
    expect(limiter.retries('a')).toBe(106);
    limiter.forget('a');
    expect(limiter.retries('a')).toBe(0);
    expect(limiter.when('a')).toBe(5);
  });

  test('rejects nonsensical bounds', () => {
    expect(() => new ExponentialRateLimiter({ baseMs: 0 })).toThrow();
    expect(() => new ExponentialRateLimiter({ baseMs: 10, maxMs: 5 })).toThrow();
  });
});
