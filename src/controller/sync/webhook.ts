// The Git webhook: GitHub (and Gitea/Gitee-compatible) push events refresh the applications that
// follow the pushed branch at once, instead of at the next poll. Every request must carry a valid
// X-Hub-Signature-256 HMAC of its body under the shared secret: unsigned or forged requests are
// refused, and without a configured secret the endpoint refuses everything.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * GitHub caps payloads at 25 MB, but a push event is kilobytes (GitHub lists at most 20 commits
 * in it): 2 MiB by default leaves room and keeps a flood of large bodies from holding memory.
 */
export const DEFAULT_MAX_BODY = 2 * 1024 * 1024;
/** Requests read at once; more are told to come back (GitHub redelivers on a 503). */
export const DEFAULT_MAX_IN_FLIGHT = 16;
/** How long a delivery id is remembered, to ignore GitHub's redeliveries and replays. */
export const DELIVERY_WINDOW_MS = 10 * 60 * 1000;
const MAX_REMEMBERED_DELIVERIES = 10_000;

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
  /** Largest body read, in bytes (default DEFAULT_MAX_BODY). */
  maxBodyBytes?: number;
  /** Requests read at the same time (default DEFAULT_MAX_IN_FLIGHT). */
  maxInFlight?: number;
  now?: () => number;
}

/** Header timeouts for the webhook's server: a client that sends slowly is cut off. */
export const WEBHOOK_SERVER_OPTIONS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
};

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(`${JSON.stringify({ message })}\n`);
}

/**
 * An HTTP handler for POST requests from GitHub's webhooks. Everything that can be refused is
 * refused before the body is read (no signature, a declared length over the cap, too many
 * requests at once); a body is read only up to the cap; a delivery id seen in the last ten
 * minutes (GitHub's X-GitHub-Delivery) is acknowledged without refreshing again.
 */
export function webhookHandler(
  options: WebhookOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const now = options.now ?? Date.now;
  const deliveries = new Map<string, number>();
  let inFlight = 0;
  const seen = (id: string): boolean => {
    const at = now();
    for (const [key, when] of deliveries) {
      // Insertion order is time order: stop at the first one still inside the window.
      if (at - when < DELIVERY_WINDOW_MS && deliveries.size < MAX_REMEMBERED_DELIVERIES) break;
      deliveries.delete(key);
    }
    if (deliveries.has(id)) return true;
    deliveries.set(id, at);
    return false;
  };
  return async (req, res) => {
    const refuse = (status: number, message: string, headers: Record<string, string> = {}) => {
      // The body is not read: close the connection rather than drain it.
      res.setHeader('Connection', 'close');
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      reply(res, status, message);
      req.destroy();
    };
    if (req.method !== 'POST') return refuse(405, 'webhooks are POSTed', { Allow: 'POST' });
    if (!options.secret) return refuse(403, 'the webhook is disabled: no secret is configured');
    const provider = unsupportedProvider(req.headers);
    if (provider)
      return refuse(
        400,
        `${provider} webhooks are not supported: only GitHub push webhooks (X-GitHub-Event, signed with X-Hub-Signature-256; Gitea and Gogs send them too)`,
      );
    const header = first(req.headers['x-hub-signature-256']);
    if (!header?.startsWith('sha256=')) return refuse(401, 'missing or invalid X-Hub-Signature-256');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBody) return refuse(413, `payload too large (limit ${maxBody} bytes)`);
    if (inFlight >= maxInFlight)
      return refuse(503, 'too many webhook requests at once', { 'Retry-After': '1' });
    inFlight++;
    try {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > maxBody) return refuse(413, `payload too large (limit ${maxBody} bytes)`);
        chunks.push(chunk as Buffer);
      }
      const body = Buffer.concat(chunks);
      if (!verifySignature(options.secret, body, header)) {
        return reply(res, 401, 'missing or invalid X-Hub-Signature-256');
      }
      // Only after the signature: an unsigned request cannot fill the delivery memory.
      const delivery = first(req.headers['x-github-delivery']) ?? first(req.headers['x-gitea-delivery']);
      if (delivery && seen(delivery)) return reply(res, 200, `delivery ${delivery} already handled`);
      const event = req.headers['x-github-event'] ?? req.headers['x-gitea-event'];
      if (event === 'ping') return reply(res, 200, 'pong');
      if (event !== 'push')
        return reply(
          res,
          400,
          event === undefined
            ? 'no X-GitHub-Event header: only push events are handled'
            : `event ${String(event)} is not handled: only push (and ping) events are; subscribe the webhook to pushes only`,
        );
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
    } finally {
      inFlight--;
    }
  };
}

/** Another provider's webhook, told apart by its headers as Argo CD tells them apart. */
function unsupportedProvider(headers: IncomingMessage['headers']): string | undefined {
  if (headers['x-github-event'] || headers['x-gitea-event']) return undefined;
  if (headers['x-gitlab-event']) return 'GitLab';
  if (headers['x-hook-uuid'] || headers['x-event-key']) return 'Bitbucket';
  if (headers['x-vss-activityid']) return 'Azure DevOps';
  return undefined;
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
