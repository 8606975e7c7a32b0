// A GitHub REST client for the core libraries: Octokit pointed at github.com, GitHub Enterprise
// Server (GITHUB_API_URL) or a test stand-in, with errors turned into messages that say what to
// do and never carry the token.
import { Octokit } from '@octokit/rest';
import { VERSION } from '../../version.ts';

export type GitHubClient = Octokit;

export interface GitHubRepo {
  owner: string;
  repo: string;
}

export function createGitHubClient(options: { token: string; apiURL?: string }): GitHubClient {
  return new Octokit({
    auth: options.token,
    baseUrl: (options.apiURL ?? 'https://api.github.com').replace(/\/+$/, ''),
    userAgent: `kube-actions/${VERSION}`,
    // Octokit logs failed requests itself at `error`; callers report failures with context.
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
  });
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
