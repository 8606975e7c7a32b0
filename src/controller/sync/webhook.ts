// The Git webhook: GitHub (and Gitea/Gitee-compatible) push events refresh the applications that
// follow the pushed branch at once, instead of at the next poll. Every request must carry a valid
// X-Hub-Signature-256 HMAC of its body under the shared secret: unsigned or forged requests are
// refused, and without a configured secret the endpoint refuses everything.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** GitHub's largest webhook payload is 25 MB. */
const MAX_BODY = 25 * 1024 * 1024;

export interface PushEvent {
  /** Every URL the repository is known by in the payload (clone, html, ssh, git). */
  repoURLs: string[];
  /** The pushed ref, e.g. refs/heads/main or refs/tags/v1. */
  ref: string;
  defaultBranch?: string;
  after?: string;
}

export function signature(secret: string, body: Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Constant-time check of an X-Hub-Signature-256 header. */
export function verifySignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (!secret || !header || !header.startsWith('sha256=')) return false;
  const expected = Buffer.from(signature(secret, body));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A repository URL reduced to host/path, so https, ssh and scp-like forms of one repo compare equal. */
export function normalizeRepoURL(url: string): string {
  let s = url.trim();
  const scp = /^([\w.-]+@)?([\w.-]+):(?!\/\/)(.+)$/.exec(s);
  if (scp && !/^[a-z]+:\/\//i.test(s)) s = `${scp[2]}/${scp[3]}`;
  else {
    try {
      const u = new URL(s);
      s = `${u.host}${u.pathname}`;
    } catch {
      // not a URL: compare as given
    }
  }
  return s
    .toLowerCase()
    .replace(/\/+$/, '')
    .replace(/\.git$/, '');
}

export function parsePushEvent(payload: unknown): PushEvent | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const p = payload as {
    ref?: unknown;
    after?: unknown;
    repository?: Record<string, unknown>;
  };
  if (typeof p.ref !== 'string' || !p.repository) return undefined;
  const repoURLs = ['clone_url', 'html_url', 'ssh_url', 'git_url', 'url']
    .map((k) => p.repository![k])
    .filter((v): v is string => typeof v === 'string' && v !== '');
  return {
    repoURLs,
    ref: p.ref,
    ...(typeof p.repository.default_branch === 'string'
      ? { defaultBranch: p.repository.default_branch }
      : {}),
    ...(typeof p.after === 'string' ? { after: p.after } : {}),
  };
}

/**
 * Whether a push concerns an application following `repoURL` at `targetRevision`: same repository,
 * and the revision is the pushed branch or tag, or HEAD and the default branch was pushed.
 */
export function pushMatches(event: PushEvent, repoURL: string, targetRevision: string | undefined): boolean {
  const repo = normalizeRepoURL(repoURL);
  if (!event.repoURLs.some((u) => normalizeRepoURL(u) === repo)) return false;
  const revision = (targetRevision ?? '').trim() || 'HEAD';
  if (revision === 'HEAD') return !event.defaultBranch || event.ref === `refs/heads/${event.defaultBranch}`;
  return (
    event.ref === revision || event.ref === `refs/heads/${revision}` || event.ref === `refs/tags/${revision}`
  );
}

export interface WebhookOptions {
  /** The shared secret; empty disables the endpoint (every request is refused). */
  secret: string;
  /** Called for each verified push; returns how many applications it refreshed. */
  onPush: (event: PushEvent) => number | Promise<number>;
}

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(`${JSON.stringify({ message })}\n`);
}

/** An HTTP handler for POST requests from GitHub's webhooks. */
export function webhookHandler(
  options: WebhookOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    if (req.method !== 'POST') return reply(res, 405, 'webhooks are POSTed');
    if (!options.secret) return reply(res, 403, 'the webhook is disabled: no secret is configured');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY) return reply(res, 413, 'payload too large');
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    const header = req.headers['x-hub-signature-256'];
    if (!verifySignature(options.secret, body, Array.isArray(header) ? header[0] : header)) {
      return reply(res, 401, 'missing or invalid X-Hub-Signature-256');
    }
    const event = req.headers['x-github-event'] ?? req.headers['x-gitea-event'];
    if (event === 'ping') return reply(res, 200, 'pong');
    if (event !== 'push') return reply(res, 202, `event ${String(event)} ignored`);
    let payload: unknown;
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch {
      return reply(res, 400, 'the body is not JSON');
    }
    const push = parsePushEvent(payload);
    if (!push) return reply(res, 400, 'not a push event payload');
    const refreshed = await options.onPush(push);
    reply(res, 200, `refreshed ${refreshed} application(s)`);
  };
}
