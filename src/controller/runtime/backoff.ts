// Exponential backoff and abortable sleeps shared by the informer and the leader elector.

export interface BackoffOptions {
  /** Delay after the first failure. */
  initialMs: number;
  /** Upper bound of the delay (before jitter is applied it is capped, after it too). */
  maxMs: number;
  /** Growth per consecutive failure; default 2. */
  factor?: number;
  /**
   * Spread as a fraction of the delay: 0.2 gives delay * [0.8, 1.2). Many clients that failed
   * together (an apiserver restart) must not retry in lockstep.
   */
  jitter?: number;
  /** Injectable randomness for tests, returning [0, 1). */
  random?: () => number;
}

/** The delay before retry number `failures` (1 = first failure). */
export function backoffDelay(failures: number, options: BackoffOptions): number {
  const factor = options.factor ?? 2;
  const jitter = options.jitter ?? 0.2;
  const random = options.random ?? Math.random;
  const exponent = Math.max(0, failures - 1);
  const base = Math.min(options.maxMs, options.initialMs * factor ** exponent);
  const spread = base * jitter * (random() * 2 - 1);
  return Math.max(0, Math.min(options.maxMs, base + spread));
}

/**
 * Resolves after `ms`, or as soon as `signal` aborts (resolving, not rejecting: callers check
 * their own stop flag, which keeps shutdown paths free of try/catch).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
