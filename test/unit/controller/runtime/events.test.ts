// EventRecorder: recording queues and returns at once; a few senders write in the background; the
// same event is sent once per dedupe window; a full queue drops; flush waits for the queue. An
// in-memory API stands in for the apiserver (the integration tests read real Events).
import { describe, expect, test } from '@jest/globals';
import { EventRecorder } from '../../../../src/controller/runtime/events.ts';
import { Logger } from '../../../../src/controller/runtime/log.ts';

interface Posted {
  path: string;
  body: { reason: string; note: string; regarding: { name: string } };
}

/** An API whose POSTs wait until released, so a test sees what is in flight. */
function slowAPI(fail = false) {
  const posted: Posted[] = [];
  const waiting: (() => void)[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const client = {
    request: async (_method: string, path: string, options?: { body?: unknown }) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((resolve) => waiting.push(resolve));
      inFlight--;
      if (fail) throw new Error('apiserver says no');
      posted.push({ path, body: options?.body as Posted['body'] });
      return {} as never;
    },
  } as unknown as ConstructorParameters<typeof EventRecorder>[0]['client'];
  const release = async () => {
    while (waiting.length) {
      waiting.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { client, posted, release, inFlight: () => inFlight, maxInFlight: () => maxInFlight };
}

const app = (name: string) => ({
  apiVersion: 'kube-actions.dev/v1alpha1',
  kind: 'Application',
  metadata: { name, namespace: 'ns', uid: `uid-${name}` },
});

describe('EventRecorder', () => {
  test('recording returns before the Event is sent, and flush waits until it is', async () => {
    const api = slowAPI();
    const events = new EventRecorder({
      client: api.client,
      reportingController: 'c',
      reportingInstance: 'i',
    });
    await events.record(app('a'), 'Normal', 'OperationStarted', 'sync started');
    expect(api.posted).toHaveLength(0);
    expect(api.inFlight()).toBe(1);
    let flushed = false;
    const flushing = events.flush().then(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false);
    await api.release();
    await flushing;
    expect(api.posted).toEqual([
      expect.objectContaining({
        path: '/apis/events.k8s.io/v1/namespaces/ns/events',
        body: expect.objectContaining({
          reason: 'OperationStarted',
          regarding: expect.objectContaining({ name: 'a' }),
        }),
      }),
    ]);
  });

  test('at most `senders` at once; the rest wait in order', async () => {
    const api = slowAPI();
    const events = new EventRecorder({
      client: api.client,
      reportingController: 'c',
      reportingInstance: 'i',
      senders: 2,
    });
    for (let i = 0; i < 5; i++) await events.record(app(`a${i}`), 'Normal', 'R', 'm');
    expect(api.inFlight()).toBe(2);
    const flushing = events.flush();
    await api.release();
    await flushing;
    expect(api.maxInFlight()).toBe(2);
    expect(api.posted.map((p) => p.body.regarding.name)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
  });

  test('the same event within the dedupe window is sent once; another object or reason is not deduped', async () => {
    const api = slowAPI();
    let now = 0;
    const events = new EventRecorder({
      client: api.client,
      reportingController: 'c',
      reportingInstance: 'i',
      dedupeMs: 1000,
      now: () => new Date(now),
    });
    await events.record(app('a'), 'Warning', 'SyncFailed', 'boom');
    await events.record(app('a'), 'Warning', 'SyncFailed', 'boom');
    await events.record(app('b'), 'Warning', 'SyncFailed', 'boom');
    await events.record(app('a'), 'Warning', 'ComparisonError', 'boom');
    now = 1500;
    await events.record(app('a'), 'Warning', 'SyncFailed', 'boom');
    const flushing = events.flush();
    await api.release();
    await flushing;
    expect(api.posted.map((p) => `${p.body.regarding.name}:${p.body.reason}`)).toEqual([
      'a:SyncFailed',
      'b:SyncFailed',
      'a:ComparisonError',
      'a:SyncFailed',
    ]);
  });

  test('a full queue drops new events with one warning; a failed send is logged, never thrown', async () => {
    const api = slowAPI(true);
    const lines: string[] = [];
    const logger = new Logger({ level: 'warn', sink: (line) => lines.push(line) });
    const events = new EventRecorder({
      client: api.client,
      reportingController: 'c',
      reportingInstance: 'i',
      senders: 1,
      maxQueued: 2,
      logger,
    });
    // One in flight, two queued, the rest dropped.
    for (let i = 0; i < 6; i++) await events.record(app(`a${i}`), 'Normal', 'R', 'm');
    expect(events.dropped).toBe(3);
    expect(lines.filter((l) => l.includes('event queue full'))).toHaveLength(1);
    const flushing = events.flush();
    await api.release();
    await flushing;
    expect(lines.filter((l) => l.includes('could not record event'))).toHaveLength(3);
  });

  test('flush gives up after its timeout when the API never answers', async () => {
    const api = slowAPI();
    const events = new EventRecorder({
      client: api.client,
      reportingController: 'c',
      reportingInstance: 'i',
    });
    await events.record(app('a'), 'Normal', 'R', 'm');
    const started = Date.now();
    await events.flush(50);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(api.posted).toHaveLength(0);
    await api.release();
  });
});
