// A small client for the OCI distribution API: what pushing and pulling images needs, no more.
// No maintained JavaScript library does push with mounts and chunked uploads (see the commit),
// so this follows the spec and go-containerregistry's remote package:
// - auth: anonymous, Basic, and the bearer token flow from WWW-Authenticate (realm, service,
//   scope), tokens cached per scope set and reused until they expire;
// - blobs: HEAD before upload, cross-repository mount (falling back to an upload), monolithic or
//   chunked uploads honouring OCI-Chunk-Min-Length;
// - manifests: GET with the accept list, PUT after their blobs;
// - retries with backoff on 429, 5xx and network errors, honouring Retry-After.
import { createHash } from 'node:crypto';
import type { CredentialSource, RegistryCredentials } from './credentials.ts';
import { isLoopbackRegistry, registryApiHost } from './reference.ts';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerList,
  MEDIA_TYPES.dockerManifest,
];

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export class RegistryError extends Error {
  readonly status: number;
  readonly code: string | undefined;
  constructor(message: string, status: number, code?: string) {
    super(message);
    this.name = 'RegistryError';
    this.status = status;
    this.code = code;
  }
}

export interface RegistryClientOptions {
  /** The registry as written in references (`ghcr.io`, `127.0.0.1:5000`, `docker.io`). */
  registry: string;
  credentials?: CredentialSource;
  /** Plain HTTP. Default: only for loopback registries. */
  insecure?: boolean;
  /** Blobs larger than this are uploaded in chunks (default 64 MiB). */
  chunkSize?: number;
  retries?: number;
  /** Base delay of the retry backoff (doubles per try, with jitter). */
  retryDelayMs?: number;
  userAgent?: string;
  fetch?: typeof fetch;
}

interface Challenge {
  scheme: 'basic' | 'bearer';
  realm?: string;
  service?: string;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (quoted or bare values). */
export function parseChallenge(header: string): Challenge & { scope?: string; error?: string } {
  const space = header.indexOf(' ');
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  for (const m of header.slice(space + 1).matchAll(/([A-Za-z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
  }
  return {
    scheme: scheme === 'bearer' ? 'bearer' : 'basic',
    ...(params.realm ? { realm: params.realm } : {}),
    ...(params.service ? { service: params.service } : {}),
    ...(params.scope ? { scope: params.scope } : {}),
    ...(params.error ? { error: params.error } : {}),
  };
}

/** What one blob push did: found it already there, mounted it from another repository, or uploaded it. */
export type BlobPushResult = 'exists' | 'mounted' | 'uploaded';

export interface Manifest {
  mediaType: string;
  digest: string;
  body: Buffer;
}

type Actions = 'pull' | 'pull,push';

interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** The token scopes this request needs, e.g. ['repository:acme/web:pull,push']. */
  scopes: string[];
  /** Statuses that are answers, not errors. */
  ok?: number[];
  /** Retry on 5xx/429/network errors (idempotent requests only). */
  retry?: boolean;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RegistryClient {
  readonly registry: string;
  private readonly base: string;
  private readonly credentials: CredentialSource;
  private readonly chunkSize: number;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly userAgent: string;
  private readonly fetchImpl: typeof fetch;
  private challenge: Promise<Challenge | undefined> | undefined;
  private creds: Promise<RegistryCredentials | undefined> | undefined;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  /** Requests sent, by method (the benchmark and tests count them). */
  readonly requests: Record<string, number> = {};

  constructor(options: RegistryClientOptions) {
    this.registry = options.registry;
    const insecure = options.insecure ?? isLoopbackRegistry(options.registry);
    this.base = `${insecure ? 'http' : 'https'}://${registryApiHost(options.registry)}`;
    this.credentials = options.credentials ?? (() => Promise.resolve(undefined));
    this.chunkSize = options.chunkSize ?? 64 * 1024 * 1024;
    this.retries = options.retries ?? 4;
    this.retryDelayMs = options.retryDelayMs ?? 500;
    this.userAgent = options.userAgent ?? 'kube-actions';
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Learns how the registry authenticates (GET /v2/), once; later requests go out authorised. */
  async prepare(): Promise<void> {
    this.challenge ??= this.ping();
    await this.challenge;
  }

  /** Whether the repository already has the blob. */
  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const res = await this.request(`/v2/${repository}/blobs/${digest}`, {
      method: 'HEAD',
      scopes: [scope(repository, 'pull')],
      ok: [200, 404],
      retry: true,
    });
    return res.status === 200;
  }

  /** The blob, checked against its digest; more than `maxBytes` (when given) is refused unread. */
  async getBlob(repository: string, digest: string, maxBytes?: number): Promise<Buffer> {
    const res = await this.request(`/v2/${repository}/blobs/${digest}`, {
      scopes: [scope(repository, 'pull')],
      retry: true,
    });
    const body =
      maxBytes === undefined ? Buffer.from(await res.arrayBuffer()) : await readAtMost(res, maxBytes);
    if (sha256Digest(body) !== digest) {
      throw new RegistryError(
        `${this.registry}/${repository}: blob ${digest} arrived with another digest`,
        0,
      );
    }
    return body;
  }

  /**
   * Makes sure the repository has the blob: HEAD first, then a cross-repository mount when
   * `mountFrom` (a repository of the same registry) has it, else an upload.
   */
  async pushBlob(
    repository: string,
    blob: { digest: string; data: Uint8Array | (() => Promise<Uint8Array>) },
    mountFrom?: string,
  ): Promise<BlobPushResult> {
    if (await this.hasBlob(repository, blob.digest)) return 'exists';
    const scopes = [scope(repository, 'pull,push')];
    let query = '';
    if (mountFrom && mountFrom !== repository) {
      scopes.push(scope(mountFrom, 'pull'));
      query = `?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(mountFrom)}`;
    }
    return this.withRetries(async () => {
      // A 201 means mounted; a 202 starts an upload session (mount refused or not attempted).
      let start = await this.request(`/v2/${repository}/blobs/uploads/${query}`, {
        method: 'POST',
        scopes,
        ok: [201, 202, ...(query ? [400, 401, 403, 404] : [])],
      });
      if (start.status === 201) return 'mounted';
      if (start.status !== 202) {
        // Some registries refuse mount parameters outright (ggcr retries without them).
        start = await this.request(`/v2/${repository}/blobs/uploads/`, { method: 'POST', scopes, ok: [202] });
      }
      const data = typeof blob.data === 'function' ? await blob.data() : blob.data;
      if (sha256Digest(data) !== blob.digest)
        throw new Error(`blob ${blob.digest}: its content has another digest`);
      await this.upload(repository, start, data, blob.digest, scopes);
      return 'uploaded';
    });
  }

  private async upload(
    repository: string,
    start: Response,
    data: Uint8Array,
    digest: string,
    scopes: string[],
  ) {
    let location = this.location(start, repository);
    const minChunk = Number(start.headers.get('oci-chunk-min-length') ?? 0);
    const chunk = Math.max(this.chunkSize, minChunk);
    if (data.length <= chunk) {
      await this.request(withQuery(location, `digest=${encodeURIComponent(digest)}`), {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body: data,
        scopes,
        ok: [201],
      });
      return;
    }
    for (let offset = 0; offset < data.length; offset += chunk) {
      const part = data.subarray(offset, Math.min(offset + chunk, data.length));
      const res = await this.request(location, {
        method: 'PATCH',
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${offset}-${offset + part.length - 1}`,
          'content-length': String(part.length),
        },
        body: part,
        scopes,
        ok: [202],
      });
      location = this.location(res, repository);
    }
    await this.request(withQuery(location, `digest=${encodeURIComponent(digest)}`), {
      method: 'PUT',
      scopes,
      ok: [201],
    });
  }

  private location(res: Response, repository: string): string {
    const location = res.headers.get('location');
    if (!location)
      throw new RegistryError(
        `${this.registry}/${repository}: upload answered without a Location`,
        res.status,
      );
    return new URL(location, this.base).toString();
  }

  async getManifest(repository: string, reference: string, accept = MANIFEST_ACCEPT): Promise<Manifest> {
    const res = await this.request(`/v2/${repository}/manifests/${reference}`, {
      headers: { accept: accept.join(', ') },
      scopes: [scope(repository, 'pull')],
      retry: true,
    });
    const body = Buffer.from(await res.arrayBuffer());
    const digest = sha256Digest(body);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new RegistryError(
        `${this.registry}/${repository}: manifest ${reference} arrived with digest ${digest}`,
        0,
      );
    }
    const mediaType =
      (JSON.parse(body.toString('utf8')) as { mediaType?: string }).mediaType ??
      res.headers.get('content-type')?.split(';')[0] ??
      MEDIA_TYPES.ociManifest;
    return { mediaType, digest, body };
  }

  /**
   * The repository's tags (GET /v2/<name>/tags/list), following the `Link: <...>; rel="next"`
   * pages of registries that paginate; at most `limit`, so a hostile registry cannot make it
   * endless.
   */
  async listTags(repository: string, limit = 10_000): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repository}/tags/list?n=1000`;
    for (let page = 0; path && tags.length < limit && page < 100; page++) {
      const res = await this.request(path, { scopes: [scope(repository, 'pull')], retry: true });
      const text = (await readAtMost(res, 16 * 1024 * 1024)).toString('utf8');
      const body = JSON.parse(text) as { tags?: unknown } | null;
      if (Array.isArray(body?.tags)) for (const t of body.tags) if (typeof t === 'string') tags.push(t);
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1];
      // The next page is on the same registry: an absolute link elsewhere is not followed.
      path = next && (next.startsWith('/v2/') || next.startsWith(`${this.base}/v2/`)) ? next : undefined;
    }
    return tags.slice(0, limit);
  }

  /** PUTs a manifest under a tag or its digest; returns its digest. */
  async putManifest(repository: string, reference: string, body: Buffer, mediaType: string): Promise<string> {
    const digest = sha256Digest(body);
    await this.request(`/v2/${repository}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body,
      scopes: [scope(repository, 'pull,push')],
      ok: [201],
      retry: true,
    });
    return digest;
  }

  // ---- transport and auth ----

  private async request(path: string, options: RequestOptions): Promise<Response> {
    const send = () => this.send(path, options);
    return options.retry ? this.withRetries(send) : send();
  }

  private async send(path: string, options: RequestOptions, renewed = false): Promise<Response> {
    const method = options.method ?? 'GET';
    const url = path.startsWith('http') ? path : `${this.base}${path}`;
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...options.headers };
    const authorization = await this.authorization(options.scopes);
    if (authorization) headers.authorization = authorization;
    this.requests[method] = (this.requests[method] ?? 0) + 1;
    let res: Response;
    try {
      res = await this.fetchImpl(url, {
        method,
        headers,
        ...(options.body ? { body: options.body } : {}),
        redirect: 'follow',
      });
    } catch (err) {
      throw new RetryableError(
        `${this.registry}: ${method} ${this.redact(path)} failed: ${(err as Error).message}`,
      );
    }
    if (res.status === 401 && !renewed) {
      // The first 401 tells us how this registry authenticates (or that a token lacks a scope).
      const header = res.headers.get('www-authenticate');
      await res.body?.cancel();
      if (header) {
        this.challenge = Promise.resolve(parseChallenge(header));
        this.tokens.clear();
        return this.send(path, options, true);
      }
    }
    if (res.ok || options.ok?.includes(res.status)) return res;
    const text = await res.text().catch(() => '');
    const { message, code } = registryErrorMessage(text);
    const what = `${this.registry}: ${method} ${this.redact(path)}: HTTP ${res.status}${message ? ` ${message}` : ''}`;
    if (res.status === 429 || res.status >= 500) {
      throw new RetryableError(what, retryAfterMs(res.headers.get('retry-after')));
    }
    if (res.status === 401) {
      throw new RegistryError(
        `${what} (the credentials for ${this.registry} were rejected or are missing)`,
        401,
        code,
      );
    }
    if (res.status === 403) throw new RegistryError(`${what} (access denied)`, 403, code);
    throw new RegistryError(what, res.status, code);
  }

  private async withRetries<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof RetryableError) || attempt >= this.retries) {
          if (err instanceof RetryableError)
            throw new RegistryError(`${err.message} (gave up after ${attempt + 1} tries)`, 0);
          throw err;
        }
        const backoff = this.retryDelayMs * 2 ** attempt * (0.5 + Math.random() / 2);
        await sleep(Math.max(backoff, err.retryAfterMs ?? 0));
      }
    }
  }

  private redact(path: string): string {
    // Upload locations carry session state; keep errors short and free of it.
    return path.replace(/^https?:\/\/[^/]+/, '').replace(/\?.*$/, '');
  }

  /** GET /v2/ once: 200 means anonymous access, a 401 carries the challenge to answer. */
  private async ping(): Promise<Challenge | undefined> {
    this.requests.GET = (this.requests.GET ?? 0) + 1;
    const res = await this.fetchImpl(`${this.base}/v2/`, { headers: { 'user-agent': this.userAgent } }).catch(
      (err: Error & { cause?: Error }) => {
        this.challenge = undefined;
        throw new RegistryError(
          `registry ${this.registry} (${this.base}) is unreachable: ${err.cause?.message ?? err.message}`,
          0,
        );
      },
    );
    await res.body?.cancel();
    const header = res.headers.get('www-authenticate');
    return res.status === 401 && header ? parseChallenge(header) : undefined;
  }

  private async authorization(scopes: string[]): Promise<string | undefined> {
    this.challenge ??= this.ping();
    const challenge = await this.challenge;
    if (!challenge) return undefined;
    this.creds ??= this.credentials(this.registry);
    const creds = await this.creds;
    if (challenge.scheme === 'basic') {
      return creds
        ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
        : undefined;
    }
    const key = [...scopes].sort().join(' ');
    let cached = this.tokens.get(key);
    if (cached) {
      const token = await cached.catch(() => undefined);
      if (!token || token.expiresAt <= Date.now()) cached = undefined;
    }
    if (!cached) {
      cached = this.fetchToken(challenge, scopes, creds);
      this.tokens.set(key, cached);
      cached.catch(() => this.tokens.delete(key));
    }
    return `Bearer ${(await cached).token}`;
  }

  private async fetchToken(
    challenge: Challenge,
    scopes: string[],
    creds: RegistryCredentials | undefined,
  ): Promise<CachedToken> {
    if (!challenge.realm) throw new RegistryError(`${this.registry}: bearer challenge without a realm`, 401);
    const url = new URL(challenge.realm);
    let res: Response;
    const now = Date.now();
    if (creds?.identityToken) {
      // docker's OAuth2 refresh-token exchange.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: creds.identityToken,
        client_id: this.userAgent,
      });
      if (challenge.service) form.set('service', challenge.service);
      form.set('scope', scopes.join(' '));
      this.requests.TOKEN = (this.requests.TOKEN ?? 0) + 1;
      res = await this.fetchImpl(url, {
        method: 'POST',
        body: form,
        headers: { 'user-agent': this.userAgent },
      });
    } else {
      if (challenge.service) url.searchParams.set('service', challenge.service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = { 'user-agent': this.userAgent };
      if (creds)
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      this.requests.TOKEN = (this.requests.TOKEN ?? 0) + 1;
      res = await this.fetchImpl(url, { headers }).catch((err: Error) => {
        throw new RegistryError(
          `${this.registry}: token server ${url.origin} unreachable: ${err.message}`,
          0,
        );
      });
    }
    if (!res.ok) {
      const { message } = registryErrorMessage(await res.text().catch(() => ''));
      const why = res.status === 401 || res.status === 403 ? ' (the credentials were rejected)' : '';
      throw new RegistryError(
        `${this.registry}: token server ${url.origin} answered HTTP ${res.status}${why}${message ? `: ${message}` : ''}`,
        res.status,
      );
    }
    const body = (await res.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token;
    if (!token)
      throw new RegistryError(`${this.registry}: token server ${url.origin} answered without a token`, 0);
    // The spec's default lifetime is 60 s; renew a little early.
    return { token, expiresAt: now + Math.max((body.expires_in ?? 60) - 10, 1) * 1000 };
  }
}

/** The body, refused once it passes `limit` bytes (declared or read). */
async function readAtMost(res: Response, limit: number): Promise<Buffer> {
  // A blob may redirect to storage whose URL is signed in its query: never in a message.
  const where = res.url.replace(/\?.*$/, '');
  if (Number(res.headers.get('content-length') ?? 0) > limit) {
    await res.body?.cancel();
    throw new RegistryError(`${where}: the answer is larger than the ${limit} bytes allowed`, 0);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += (chunk as Uint8Array).length;
    if (size > limit)
      throw new RegistryError(`${where}: the answer is larger than the ${limit} bytes allowed`, 0);
    chunks.push(Buffer.from(chunk as Uint8Array));
  }
  return Buffer.concat(chunks);
}

class RetryableError extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

function scope(repository: string, actions: Actions): string {
  return `repository:${repository}:${actions}`;
}

function withQuery(url: string, query: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${query}`;
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.min(seconds, 60) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.min(Math.max(at - Date.now(), 0), 60_000);
}

/** The spec's error body: {"errors":[{"code","message"}]}. */
function registryErrorMessage(text: string): { message: string; code?: string } {
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = body.errors?.[0];
    if (first)
      return {
        message: `${first.code ?? ''}${first.message ? `: ${first.message}` : ''}`.trim(),
        ...(first.code ? { code: first.code } : {}),
      };
  } catch {
    /* not JSON */
  }
  return { message: text.trim().slice(0, 200) };
}
