// requestDeadline: one request's signal from a timeout and the caller's signals, released at once.
import { describe, expect, test } from '@jest/globals';
import { getEventListeners } from 'node:events';
import { requestDeadline } from '../../src/core/abort.ts';

describe('requestDeadline', () => {
  test('aborts with a TimeoutError when the time is up', async () => {
    const { signal } = requestDeadline(10, []);
    await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
    expect((signal.reason as DOMException).name).toBe('TimeoutError');
  });

  test("aborts with a caller's reason, and one already aborted aborts it at once", () => {
    const caller = new AbortController();
    const fence = new AbortController();
    const { signal } = requestDeadline(60_000, [caller.signal, fence.signal]);
    expect(signal.aborted).toBe(false);
    fence.abort(new Error('lost the lease'));
    expect((signal.reason as Error).message).toBe('lost the lease');
    // The other listener went with it.
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);

    const early = requestDeadline(60_000, [fence.signal]);
    expect((early.signal.reason as Error).message).toBe('lost the lease');
  });

  test('done() removes its listeners from long-lived signals and stops the timer', async () => {
    const fence = new AbortController();
    for (let i = 0; i < 100; i++) requestDeadline(20, [fence.signal]).done();
    expect(getEventListeners(fence.signal, 'abort')).toHaveLength(0);
    const { signal, done } = requestDeadline(20, []);
    done();
    await new Promise((r) => setTimeout(r, 40));
    expect(signal.aborted).toBe(false);
    fence.abort(new Error('late'));
    expect(signal.aborted).toBe(false);
  });
});
