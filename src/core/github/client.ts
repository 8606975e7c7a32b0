// A GitHub REST client for the core libraries: Octokit pointed at github.com, GitHub Enterprise
// Server (GITHUB_API_URL) or a test stand-in, with errors turned into messages that say what to
// do and never carry the token. Every request goes through @octokit/plugin-throttling (primary and
// secondary rate limits: a 403/429 is retried only after its Retry-After or x-ratelimit-reset) and
// @octokit/plugin-retry (5xx and network errors, with backoff).
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import { VERSION } from '../../version.ts';

export type GitHubClient = Octokit;

export interface GitHubRepo {
  owner: string;
  repo: string;
}

/** A rate-limited response, as the throttling plugin saw it. */
export interface RateLimitEvent {
  /** `primary`: the hourly budget is spent (x-ratelimit-remaining: 0); `secondary`: GitHub's abuse limits. */
  kind: 'primary' | 'secondary';
  /** Seconds until a retry is allowed (Retry-After, or until x-ratelimit-reset). */
  retryAfterSeconds: number;
  method: string;
  url: string;
  /** False when the wait is longer than allowed or the retries are used up: the request fails. */
  retrying: boolean;
}

export interface GitHubClientOptions {
  token: string;
  apiURL?: string;
  /**
   * How long one second of a server-given wait lasts here, in ms (default 1000): Retry-After,
   * the time to x-ratelimit-reset and the retry plugin's backoff (1 s, 4 s, 9 s) are multiplied
   * by it. Tests shrink it so that waits the server asks for stay short but still happen.
   */
  secondMs?: number;
  /** Retries of a request that failed with a 5xx or a network error (default 3; writes that must not repeat opt out per request). */
  retries?: number;
  /** Retries after a rate-limited response (default 3), and the longest wait accepted for one (default 600 s). */
  rateLimit?: { maxRetries?: number; maxWaitSeconds?: number };
  /** Told about every rate-limited response, e.g. to log the wait. */
  onRateLimit?: (event: RateLimitEvent) => void;
}

const PluggedOctokit = Octokit.plugin(retry, throttling);

/**
 * The throttling plugin paces writes one second apart (and notification-triggering ones three
 * seconds) across every client of the process. That turns a promotion's parallel blob uploads
 * into one per second; we rely instead on the callers' own bounded concurrency and on the plugin's
 * reaction to the limits GitHub actually signals. A Bottleneck group's duck type: key(id).schedule().
 */
const UNPACED = {
  key: () => ({
    schedule: (_options: unknown, task: (...args: unknown[]) => unknown, ...args: unknown[]) =>
      Promise.resolve().then(() => task(...args)),
  }),
} as unknown as NonNullable<
  NonNullable<ConstructorParameters<typeof PluggedOctokit>[0]>['throttle']
>['write'];

export function createGitHubClient(options: GitHubClientOptions): GitHubClient {
  const secondMs = options.secondMs ?? 1000;
  const maxRetries = options.rateLimit?.maxRetries ?? 3;
  const maxWaitSeconds = options.rateLimit?.maxWaitSeconds ?? 600;
  const onLimit =
    (kind: RateLimitEvent['kind']) =>
    (
      retryAfterSeconds: number,
      request: { method: string; url: string },
      _octokit: unknown,
      retryCount: number,
    ) => {
      const retrying = retryCount < maxRetries && retryAfterSeconds <= maxWaitSeconds;
      options.onRateLimit?.({ kind, retryAfterSeconds, method: request.method, url: request.url, retrying });
      return retrying;
    };
  return new PluggedOctokit({
    auth: options.token,
    baseUrl: (options.apiURL ?? 'https://api.github.com').replace(/\/+$/, ''),
    userAgent: `kube-actions/${VERSION}`,
    // Octokit logs failed requests itself at `error`; callers report failures with context.
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    retry: {
      retries: options.retries ?? 3,
      retryAfterBaseValue: secondMs,
      // 429 and 403 are the throttling plugin's: it waits for Retry-After, this plugin would not.
      doNotRetry: [400, 401, 403, 404, 409, 410, 422, 429, 451],
    },
    throttle: {
      retryAfterBaseValue: secondMs,
      write: UNPACED,
      notifications: UNPACED,
      onRateLimit: onLimit('primary'),
      onSecondaryRateLimit: onLimit('secondary'),
    },
  });
}

/** `text` with every occurrence of each secret (and its base64 form) replaced by ***. */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret || secret.length < 4) continue;
    for (const form of [secret, Buffer.from(secret).toString('base64'), encodeURIComponent(secret)]) {
      out = out.split(form).join('***');
    }
  }
  return out;
}

/** `owner/name`, or an https clone URL of it (`https://host/owner/name(.git)`). */
export function parseRepository(repository: string): GitHubRepo {
  const short = /^([\w.-]+)\/([\w.-]+)$/.exec(repository);
  if (short) return { owner: short[1]!, repo: short[2]!.replace(/\.git$/, '') };
  let url: URL | undefined;
  try {
    url = new URL(repository);
  } catch {
    // falls through to the error below
  }
  const parts = url?.pathname.replace(/^\/+|\/+$/g, '').split('/') ?? [];
  if (
    url &&
    /^https?:$/.test(url.protocol) &&
    parts.length === 2 &&
    parts.every((p) => /^[\w.-]+$/.test(p))
  ) {
    return { owner: parts[0]!, repo: parts[1]!.replace(/\.git$/, '') };
  }
  throw new Error(`repository must be owner/name or https://host/owner/name, got "${repository}"`);
}

/** The HTTP status of an Octokit request error (0 when there was no response). */
export function httpStatus(err: unknown): number {
  return typeof err === 'object' && err !== null && typeof (err as { status?: unknown }).status === 'number'
    ? (err as { status: number }).status
    : 0;
}

/** GitHub's own message from an error response body, e.g. "Update is not a fast forward". */
export function apiMessage(err: unknown): string {
  const data = (err as { response?: { data?: unknown } }).response?.data;
  if (typeof data === 'object' && data !== null) {
    const { message, errors } = data as { message?: unknown; errors?: unknown };
    const details = Array.isArray(errors)
      ? errors
          .map((e) =>
            typeof e === 'string'
              ? e
              : ((e as { message?: string; code?: string }).message ?? (e as { code?: string }).code),
          )
          .filter(Boolean)
      : [];
    if (typeof message === 'string') return details.length ? `${message} (${details.join('; ')})` : message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A failed request, described for a person: what was attempted, GitHub's reason, what to check. */
export function describeRequestError(what: string, err: unknown): string {
  const status = httpStatus(err);
  const hint =
    status === 401
      ? ': the token was rejected (expired or invalid)'
      : status === 403
        ? `: the token lacks permission (${apiMessage(err)}); it needs contents: write${what.includes('pull request') ? ' and pull-requests: write' : ''}`
        : status === 404
          ? ': not found, or the token cannot see the repository'
          : `: ${apiMessage(err)}`;
  return `${what} failed${status ? ` (HTTP ${status})` : ''}${hint}`;
}
