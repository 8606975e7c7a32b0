// Waiting on shared work without owning it: a caller whose signal aborts stops waiting, while the
// work (one ls-remote or render serving many callers) goes on for the others.

export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolvePromise, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolvePromise(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Rejects with `error()` when `promise` has not settled within `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * One request's signal: aborted after `ms` (with a TimeoutError, as AbortSignal.timeout) or when
 * any of `signals` aborts (with its reason). Call `done()` when the request ends: the timer and
 * the listeners go at once. AbortSignal.timeout() and AbortSignal.any() would do the same, but
 * each keeps its timer, signal and weak references alive until the timeout fires: at 400
 * requests a second with a 30 s timeout, 12,000 of them, 5 MiB held for nothing during a sync.
 */
export function requestDeadline(
  ms: number,
  signals: readonly AbortSignal[],
): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException(`The operation timed out after ${ms} ms`, 'TimeoutError')),
    ms,
  );
  const listeners: [AbortSignal, () => void][] = [];
  const done = () => {
    clearTimeout(timer);
    for (const [s, l] of listeners) s.removeEventListener('abort', l);
    listeners.length = 0;
  };
  for (const s of signals) {
    if (s.aborted) {
      controller.abort(s.reason);
      done();
      break;
    }
    const l = () => {
      controller.abort(s.reason);
      done();
    };
    s.addEventListener('abort', l, { once: true });
    listeners.push([s, l]);
  }
  return { signal: controller.signal, done };
}
