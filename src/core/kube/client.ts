// A thin REST client over client-node's transport, used by informers, leader election and
// reconcilers. Why not only client-node's generated APIs: informers need raw list pages and a
// streamed watch of any resource, and every request should be counted by verb and status code for
// /metrics. Generated API clients made through makeApiClient() share the same counting transport.
import * as k8s from './client-node.ts';
import { requestDeadline } from '../abort.ts';
import type { Registry } from '../metrics.ts';
import { resourcePath, type KubeObject, type ResourceRef } from './objects.ts';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
type Dispatcher = NonNullable<ReturnType<k8s.RequestContext['getDispatcher']>>;
export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  /** Serialized as JSON unless it is a string. */
  body?: unknown;
  /** Default application/json when a body is given. */
  contentType?: string;
  /** Further request headers (e.g. for a request the apiserver proxies to a Service). */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Aborts the request after this long; default 30 s. Watches have no timeout. */
  timeoutMs?: number;
  /** Not subject to the write guard (the leader elector's own Lease writes). */
  unguarded?: boolean;
}

export const PatchType = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;
export type PatchType = (typeof PatchType)[keyof typeof PatchType];

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** A write refused because the client was fenced (see KubeClient.fenceWrites). */
export class WritesFencedError extends Error {
  override name = 'WritesFencedError';
}

/** The HTTP status of an API error (client-node's ApiException), if there is one. */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code;
  // Anything else carrying a numeric HTTP code (a test's fake API, a wrapped error); system
  // errors' codes are strings (ECONNRESET) and never match.
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}
/** The Status reason the apiserver gave (AlreadyExists, Conflict, Invalid…), if any. */
export function statusReason(err: unknown): string | undefined {
  if (!(err instanceof k8s.ApiException)) return undefined;
  const body = (err as k8s.ApiException<unknown>).body as { reason?: unknown } | string | undefined;
  if (typeof body === 'object' && body && typeof body.reason === 'string') return body.reason;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { reason?: unknown };
      if (typeof parsed.reason === 'string') return parsed.reason;
    } catch {
      // not a Status
    }
  }
  return undefined;
}
// One place for telling API errors apart, so every controller treats them alike.
export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;
/** 409 of either kind: a stale resourceVersion (Conflict) or a create of an existing name (AlreadyExists). */
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;
export const isAlreadyExists = (err: unknown): boolean =>
  statusCode(err) === 409 && statusReason(err) === 'AlreadyExists';
/** 422: the object (or patch) is invalid; sending it again will not help. */
export const isInvalid = (err: unknown): boolean => statusCode(err) === 422;
export const isGone = (err: unknown): boolean => statusCode(err) === 410;

/**
 * The Kubernetes verb of a request, as the apiserver's audit log names it: list vs get and
 * delete vs deletecollection are told apart by whether the path names a collection.
 */
export function requestVerb(method: string, url: string): string {
  const u = new URL(url, 'https://placeholder');
  const segments = u.pathname.split('/').filter(Boolean);
  let rest: string[];
  if (segments[0] === 'api') rest = segments.slice(2);
  else if (segments[0] === 'apis') rest = segments.slice(3);
  else return method.toLowerCase();
  if (rest[0] === 'namespaces' && rest.length >= 3) rest = rest.slice(2);
  const collection = rest.length === 1;
  const watch = u.searchParams.get('watch');
  switch (method.toUpperCase()) {
    case 'GET':
      if (watch === 'true' || watch === '1') return 'watch';
      return collection ? 'list' : 'get';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return collection ? 'deletecollection' : 'delete';
    default:
      return method.toLowerCase();
  }
}

/**
 * client-node's transport without fetch: the request goes to the undici dispatcher client-node
 * configured (its TLS, proxy or SOCKS agent) through `dispatcher.request()`, as undici's own
 * `request` does. fetch builds a WHATWG Request, Headers, a web ReadableStream and an abort
 * signal of its own for every call, and asks for gzip (so the apiserver spends CPU compressing
 * what it sends over loopback or the cluster network; client-go's DisableCompression exists for
 * the same reason). Without them a cold sync of 1,000 applications (13,000 requests) took 22-23 s
 * instead of 27, on a machine whose cores the apiserver needs (bench/README.md). A context
 * client-node gave no dispatcher (an https server trusted by the system's CAs, with no client
 * certificate) still goes through fetch.
 */
export class DispatcherHttpLibrary implements k8s.HttpLibrary {
  private readonly fetch = new k8s.IsomorphicFetchHttpLibrary();

  send(ctx: k8s.RequestContext): k8s.Observable<k8s.ResponseContext> {
    const dispatcher = ctx.getDispatcher();
    const body: unknown = ctx.getBody();
    // Bodies are JSON or YAML text here; a form or a blob (nothing of ours sends one) goes to fetch.
    if (!dispatcher || !(body === undefined || typeof body === 'string' || Buffer.isBuffer(body)))
      return this.fetch.send(ctx);
    const url = new URL(ctx.getUrl());
    const response = dispatcher
      .request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: ctx.getHttpMethod(),
        headers: ctx.getHeaders(),
        body,
        signal: ctx.getSignal(),
      })
      .then(({ statusCode, headers, body }) => {
        const flat: Record<string, string> = {};
        for (const [name, value] of Object.entries(headers)) {
          if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
        }
        return new k8s.ResponseContext(statusCode, flat, {
          text: () => body.text(),
          binary: async () => Buffer.from(await body.arrayBuffer()),
          // A Node Readable, not a web stream: readLines iterates either.
          stream: () => body as unknown as ReadableStream<Uint8Array>,
        });
      });
    return new k8s.Observable(response);
  }
}

/**
 * Wraps the transport to count requests, time them, and report requests that got no response
 * (network error, timeout, abort) so the client can retire their connection pool.
 */
class InstrumentedHttp implements k8s.HttpLibrary {
  private readonly inner = new DispatcherHttpLibrary();
  private readonly record?: (verb: string, code: string, seconds: number) => void;
  private readonly onFailure: (ctx: k8s.RequestContext) => void;

  constructor(metrics: Registry | undefined, onFailure: (ctx: k8s.RequestContext) => void) {
    this.onFailure = onFailure;
    if (!metrics) return;
    const requests = metrics.counter({
      name: 'rest_client_requests_total',
      help: 'Requests to the Kubernetes API, by verb and HTTP status ("error" when none came back).',
      labelNames: ['verb', 'code'],
    });
    const latency = metrics.histogram({
      name: 'rest_client_request_duration_seconds',
      help: 'Time until the response headers arrived, by verb.',
      labelNames: ['verb'],
    });
    this.record = (verb, code, seconds) => {
      requests.inc({ verb, code });
      latency.observe({ verb }, seconds);
    };
  }

  send(ctx: k8s.RequestContext): k8s.Observable<k8s.ResponseContext> {
    const record = this.record ?? (() => undefined);
    const verb = requestVerb(ctx.getHttpMethod(), ctx.getUrl());
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const response = this.inner
      .send(ctx)
      .toPromise()
      .then(
        (rsp) => {
          record(verb, String(rsp.httpStatusCode), seconds());
          return rsp;
        },
        (err: unknown) => {
          record(verb, 'error', seconds());
          this.onFailure(ctx);
          throw err;
        },
      );
    return new k8s.Observable(response);
  }
}

export interface KubeClientOptions {
  /** Registers rest_client_* series. */
  metrics?: Registry;
  userAgent?: string;
}

export class KubeClient {
  readonly kubeConfig: k8s.KubeConfig;
  private readonly http: InstrumentedHttp;
  private readonly userAgent: string;
  /**
   * The connection pool of short requests. client-node builds a new undici Agent, so a new TLS
   * connection, for every request; one shared pool keeps connections alive between calls.
   */
  private pool?: Dispatcher;
  /** The same pool, asking the write fence again just before each request goes out (fenced()). */
  private fencedPool?: Dispatcher;
  private fencedPoolOf?: Dispatcher;
  /** Pools retired after a failure, destroyed once their in-flight requests had time to end. */
  private readonly retired = new Map<Dispatcher, NodeJS.Timeout>();
  private readonly fence = new AbortController();
  private writeGuard?: () => boolean;

  constructor(kubeConfig: k8s.KubeConfig, options: KubeClientOptions = {}) {
    if (!kubeConfig.getCurrentCluster()) throw new Error('the kubeconfig has no current cluster');
    this.kubeConfig = kubeConfig;
    this.http = new InstrumentedHttp(options.metrics, (ctx) => {
      const dispatcher = ctx.getDispatcher();
      this.retire(dispatcher && dispatcher === this.fencedPool ? this.fencedPoolOf : dispatcher);
    });
    this.userAgent = options.userAgent ?? 'kube-actions-controller';
  }

  /** A client-node generated API (CoreV1Api, ...) that uses this client's transport and metrics. */
  makeApiClient<T extends k8s.ApiType>(api: k8s.ApiConstructor<T>): T {
    const server = this.kubeConfig.getCurrentCluster()!.server;
    const config = k8s.createConfiguration({
      baseServer: new k8s.ServerConfiguration(server, {}),
      httpApi: this.http,
      authMethods: {
        default: {
          getName: () => 'kube-actions',
          applySecurityAuthentication: (ctx) => this.authenticate(ctx),
        },
      },
      promiseMiddleware: [
        {
          pre: (ctx) => {
            ctx.setHeaderParam('User-Agent', this.userAgent);
            return Promise.resolve(ctx);
          },
          post: (rsp) => Promise.resolve(rsp),
        },
      ],
    });
    return new api(config);
  }

  /** Sends a request and returns the parsed JSON body; throws k8s.ApiException unless 2xx. */
  async request<T = unknown>(method: Method, path: string, options: RequestOptions = {}): Promise<T> {
    const writes = !READS.has(method.toUpperCase()) && !options.unguarded;
    if (writes) {
      const refusal = this.writeRefusal(method, path);
      if (refusal) throw refusal;
    }
    const deadline = requestDeadline(Math.max(1, Math.ceil(options.timeoutMs ?? 30_000)), [
      ...(options.signal ? [options.signal] : []),
      ...(writes ? [this.fence.signal] : []),
    ]);
    let text: string;
    let rsp: k8s.ResponseContext;
    try {
      const sent = await this.send(method, path, { ...options, signal: deadline.signal }, false, writes);
      rsp = sent.rsp;
      try {
        text = await rsp.body.text();
      } catch (err) {
        this.retire(sent.dispatcher);
        throw err;
      }
    } finally {
      deadline.done();
    }
    if (rsp.httpStatusCode < 200 || rsp.httpStatusCode > 299) throw apiError(method, path, rsp, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Opens a watch (GET with watch=true) and yields its newline-delimited JSON lines until the
   * server ends it or `signal` aborts. Throws k8s.ApiException when the server refuses it.
   * Iterate the result (to its end, or break out): finishing it releases the connection.
   */
  async watchLines(
    path: string,
    query: Query,
    signal: AbortSignal,
    headers?: Record<string, string>,
  ): Promise<AsyncGenerator<string>> {
    // A watch gets a connection of its own, destroyed when the watch ends: undici does not close a
    // connection whose request was aborted, and a silently dead one would otherwise linger, or
    // worse, in a shared pool, take the next requests down with it.
    let dispatcher: Dispatcher | undefined;
    try {
      const sent = await this.send(
        'GET',
        path,
        { query: { ...query, watch: 'true' }, signal, headers },
        true,
      );
      dispatcher = sent.dispatcher;
      const rsp = sent.rsp;
      if (rsp.httpStatusCode !== 200) throw apiError('WATCH', path, rsp, await rsp.body.text());
      const stream = rsp.body.stream();
      if (!stream) throw new Error(`watch ${path}: response has no body`);
      const owned = dispatcher;
      dispatcher = undefined;
      return readLines(stream, () => void owned?.destroy().catch(() => undefined));
    } finally {
      void dispatcher?.destroy().catch(() => undefined);
    }
  }

  /** Why a write may not be sent now (fenced, or the guard says no), or undefined when it may. */
  private writeRefusal(method: string, path: string): WritesFencedError | undefined {
    if (this.fence.signal.aborted) return this.fence.signal.reason as WritesFencedError;
    if (this.writeGuard && !this.writeGuard()) {
      return new WritesFencedError(
        `${method} ${path} refused: this replica does not hold its leader lease now`,
      );
    }
    return undefined;
  }

  /**
   * Refuses every write from now on, and aborts the writes in flight: this process lost the right
   * to write (its leader lease), and a write after that could undo the new leader's. Reads go on.
   */
  fenceWrites(reason: string): void {
    if (!this.fence.signal.aborted) this.fence.abort(new WritesFencedError(reason));
  }

  /**
   * Writes only while `leader` may write, and fenced when it is: a client of another cluster
   * that the controller's own client (the one its leader lease guards) speaks for.
   */
  followWrites(leader: KubeClient): void {
    this.writeGuard = () => leader.writeRefusal('', '') === undefined;
    const fence = leader.fence.signal;
    if (fence.aborted) this.fenceWrites((fence.reason as Error).message);
    else
      fence.addEventListener('abort', () => this.fenceWrites((fence.reason as Error).message), {
        once: true,
      });
  }

  /**
   * Asks `guard` before every write, refusing the write when it says no: a leader checks that its
   * lease is still good at the moment of writing, not only when its elector last looked.
   */
  setWriteGuard(guard: () => boolean): void {
    this.writeGuard = guard;
  }

  /** Reads one object; T is any shape the caller expects (no KubeObject constraint on reads). */
  get<T = KubeObject>(ref: ResourceRef, namespace: string, name: string): Promise<T> {
    return this.request<T>('GET', resourcePath(ref, namespace, name));
  }

  create<T extends KubeObject>(ref: ResourceRef, obj: T, query?: Query): Promise<T> {
    return this.request<T>('POST', resourcePath(ref, obj.metadata?.namespace ?? ''), { body: obj, query });
  }

  /** PUT: fails with 409 if obj.metadata.resourceVersion is stale (optimistic concurrency). */
  update<T extends KubeObject>(ref: ResourceRef, obj: T, query?: Query): Promise<T> {
    const name = obj.metadata?.name;
    if (!name) throw new Error('update: object has no metadata.name');
    return this.request<T>('PUT', resourcePath(ref, obj.metadata?.namespace ?? '', name), {
      body: obj,
      query,
    });
  }

  patch<T = KubeObject>(
    ref: ResourceRef,
    namespace: string,
    name: string,
    patch: unknown,
    type: PatchType = PatchType.merge,
    query?: Query,
  ): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref, namespace, name), {
      body: patch,
      contentType: type,
      query,
    });
  }

  delete(ref: ResourceRef, namespace: string, name: string, query?: Query): Promise<unknown> {
    return this.request('DELETE', resourcePath(ref, namespace, name), { query });
  }

  /** Closes the pooled connections, aborting requests still using them; later requests open new ones. */
  async close(): Promise<void> {
    const pools = [...this.retired.keys()];
    if (this.pool) pools.push(this.pool);
    for (const timer of this.retired.values()) clearTimeout(timer);
    this.retired.clear();
    this.pool = undefined;
    await Promise.all(pools.map((d) => d.destroy().catch(() => undefined)));
  }

  private async send(
    method: Method,
    path: string,
    options: RequestOptions & { signal: AbortSignal },
    dedicated = false,
    guarded = false,
  ): Promise<{ rsp: k8s.ResponseContext; dispatcher: Dispatcher | undefined }> {
    const server = this.kubeConfig.getCurrentCluster()!.server;
    const ctx = new k8s.RequestContext(`${server}${path}`, method);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) ctx.setQueryParam(key, String(value));
    }
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setHeaderParam('User-Agent', this.userAgent);
    for (const [key, value] of Object.entries(options.headers ?? {})) ctx.setHeaderParam(key, value);
    if (options.body !== undefined) {
      const contentType = options.contentType ?? 'application/json';
      ctx.setHeaderParam('Content-Type', contentType);
      ctx.setBody(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
    }
    ctx.setSignal(options.signal);
    await this.authenticate(ctx, dedicated);
    const dispatcher = ctx.getDispatcher();
    if (guarded && dispatcher && dispatcher === this.pool) ctx.setDispatcher(this.fenced(dispatcher));
    try {
      return { rsp: await this.http.send(ctx).toPromise(), dispatcher };
    } catch (err) {
      if (dedicated) void dispatcher?.destroy().catch(() => undefined);
      // A write the fence stopped at the socket: the dispatcher rejects with the reason itself,
      // fetch (no dispatcher) wraps it in a TypeError.
      const cause = (err as { cause?: unknown } | null)?.cause;
      if (cause instanceof WritesFencedError) throw cause;
      throw err;
    }
  }

  /**
   * The pool, asking the fence once more at the last moment: undici calls onRequestStart
   * synchronously just before it writes the request to the socket. Between request()'s check and
   * that moment a write may wait for a connection, or the process may be frozen (SIGSTOP, a long
   * GC pause) and resume past its lease with the write still queued; sent then, it could undo
   * what the new leader wrote. The chaos suite's frozen leader found exactly that write.
   */
  private fenced(pool: Dispatcher): Dispatcher {
    if (this.fencedPool && this.fencedPoolOf === pool) return this.fencedPool;
    type Dispatch = Parameters<Dispatcher['dispatch']>;
    type Handler = Dispatch[1] & {
      onRequestStart?: (controller: { abort(reason: Error): void }, context: unknown) => void;
    };
    const check = (opts: Dispatch[0]) => this.writeRefusal(opts.method, opts.path);
    this.fencedPool = pool.compose(
      (dispatch) => (opts, handler: Handler) =>
        dispatch(
          opts,
          new Proxy(handler, {
            get(target, key) {
              if (key === 'onRequestStart') {
                return (controller: { abort(reason: Error): void }, context: unknown) => {
                  target.onRequestStart?.(controller, context);
                  const refusal = check(opts);
                  if (refusal) controller.abort(refusal);
                };
              }
              const value: unknown = Reflect.get(target, key, target);
              return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
            },
          }),
        ),
    );
    this.fencedPoolOf = pool;
    return this.fencedPool;
  }

  /** Sets credentials and the connection pool on a request (the dedicated one: a fresh pool). */
  private async authenticate(ctx: k8s.RequestContext, dedicated = false): Promise<void> {
    // client-node creates a new undici Agent here each time; it holds no connection yet.
    await this.kubeConfig.applySecurityAuthentication(ctx);
    const fresh = ctx.getDispatcher();
    if (!fresh || dedicated) return;
    if (!this.pool) {
      this.pool = fresh;
    } else {
      // The fresh Agent has no connection and no timer: left to the garbage collector. Closing
      // it cost more than the request (undici builds a ClientDestroyedError, stack and all, per
      // close): 2% of the controller's CPU in a cold sync of 1,000 apps.
      ctx.setDispatcher(this.pool);
    }
  }

  /**
   * Moves later requests to a new connection pool. Callers with evidence that the network path
   * died (a watchdog fired, a watch could not connect) call this: idle pooled connections may be
   * just as dead, and a request sent on one would hang until its timeout.
   */
  resetConnections(): void {
    this.retire(this.pool);
  }

  /**
   * A request on the shared pool got no complete response. Its connection may be wedged (undici
   * keeps a connection whose request was aborted, and queues later requests behind it), so later
   * requests get a new pool; the old one is destroyed after in-flight requests had time to end.
   */
  private retire(dispatcher: Dispatcher | undefined): void {
    if (!dispatcher || dispatcher !== this.pool) return;
    this.pool = undefined;
    const timer = setTimeout(() => {
      this.retired.delete(dispatcher);
      void dispatcher.destroy().catch(() => undefined);
    }, 60_000);
    timer.unref();
    this.retired.set(dispatcher, timer);
  }
}

function apiError(
  verb: string,
  path: string,
  rsp: k8s.ResponseContext,
  text: string,
): k8s.ApiException<unknown> {
  let body: unknown = text;
  let message = text.slice(0, 200);
  try {
    body = JSON.parse(text);
    const status = body as { message?: unknown };
    if (typeof status.message === 'string') message = status.message;
  } catch {
    // Not JSON (a proxy's HTML error page, say): keep the text.
  }
  return new k8s.ApiException(rsp.httpStatusCode, `${verb} ${path}: ${message}`, body, rsp.headers);
}

async function* readLines(stream: AsyncIterable<Uint8Array>, release: () => void): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    // Leaving this loop early (the consumer stopping) destroys the stream.
    for await (const chunk of stream) {
      buffer += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) yield line;
      }
    }
    const rest = (buffer + decoder.decode()).trim();
    if (rest) yield rest;
  } finally {
    // Runs however the watch ends: server close, error, or the consumer stopping early (410,
    // watchdog, stop()).
    release();
  }
}
