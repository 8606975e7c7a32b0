// Pacing for polling GitHub: a backoff from 2 s to 30 s that stretches while nothing changes and
// shortens when something does, stretched further when the rate-limit headers say the hourly
// budget would otherwise run out before it resets. Pure, with the clock injected.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms))),
};

export interface BackoffOptions {
  /** First and shortest interval (default 2000 ms). */
  initialMs?: number;
  /** Longest interval while nothing changes (default 30000 ms). */
  maxMs?: number;
  /** Growth per unchanged poll (default 1.5). */
  factor?: number;
}

/** The next interval: grows by `factor` up to `maxMs` while nothing changes, halves (not below `initialMs`) on a change. */
export function nextBackoff(currentMs: number, changed: boolean, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 2000;
  const max = Math.max(initial, options.maxMs ?? 30_000);
  const factor = options.factor ?? 1.5;
  return changed ? Math.max(initial, currentMs / 2) : Math.min(max, Math.max(initial, currentMs * factor));
}

/** What GitHub's x-ratelimit-* headers and Date said about the budget after a response. */
export interface RateLimitState {
  limit: number;
  remaining: number;
  /** Epoch seconds at which the budget resets. */
  resetSeconds: number;
  /** The server's time of the response (Date header), epoch ms: the reset is measured from it, so clock skew does not matter. */
  serverNowMs: number;
}

/** Requests left untouched for other steps of the job (and other tools sharing the token). */
export const RATE_LIMIT_RESERVE = 20;

/** Reads the rate-limit headers of a response (undefined when they are absent or malformed). */
export function rateLimitFromHeaders(headers: Record<string, unknown>): RateLimitState | undefined {
  const num = (name: string) => {
    const v = headers[name];
    const n = typeof v === 'string' || typeof v === 'number' ? Number(v) : NaN;
    return Number.isFinite(n) ? n : undefined;
  };
  const limit = num('x-ratelimit-limit');
  const remaining = num('x-ratelimit-remaining');
  const resetSeconds = num('x-ratelimit-reset');
  const date = typeof headers.date === 'string' ? Date.parse(headers.date) : NaN;
  if (limit === undefined || remaining === undefined || resetSeconds === undefined || Number.isNaN(date))
    return undefined;
  return { limit, remaining, resetSeconds, serverNowMs: date };
}

/**
 * The shortest interval that keeps polling within the budget until it resets, leaving
 * RATE_LIMIT_RESERVE requests: the time to reset spread over the requests that may still be
 * spent; at or under the reserve, the time to reset itself (plus a second). 0 when unconstrained.
 */
export function rateLimitInterval(state: RateLimitState | undefined): number {
  if (!state) return 0;
  const untilReset = Math.max(0, state.resetSeconds * 1000 - state.serverNowMs);
  if (untilReset === 0) return 0;
  const spendable = state.remaining - RATE_LIMIT_RESERVE;
  if (spendable <= 0) return untilReset + 1000;
  return Math.ceil(untilReset / spendable);
}

/** The wait before the next poll: the backoff, or longer when the rate limit requires it. */
export function pollDelay(backoffMs: number, rateLimit: RateLimitState | undefined): number {
  return Math.max(backoffMs, rateLimitInterval(rateLimit));
}

/** "1m 05s"-style duration for people: 0s, 42s, 3m 07s, 1h 02m. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Parses `90`, `90s`, `30m`, `1h30m`, `500ms` into milliseconds (a bare number is seconds). */
export function parseDuration(text: string, what = 'duration'): number {
  const t = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of t.matchAll(re)) {
    if (m.index !== consumed) break;
    consumed += m[0].length;
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  if (t === '' || consumed !== t.length) {
    throw new Error(`${what} must be a duration like 90s, 30m or 1h30m, got "${text}"`);
  }
  return total;
}
