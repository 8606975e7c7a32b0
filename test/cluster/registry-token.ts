// A token server for the registry on loopback, implementing the Docker registry token flow
// (distribution's docs/spec/auth/token.md and oauth.md): the registry answers 401 with a Bearer
// challenge naming this realm, the client asks here for a token for `scope=repository:NAME:pull,push`
// with its basic credentials (GET) or a password grant (POST), and sends the token back. The
// registry itself verifies the JWT: distribution 2.8 takes the signing key from the certificate
// chain in the header's `x5c` and checks it against `rootcertbundle`, then checks iss, aud
// (a single string in 2.8), nbf/exp and the `access` claim.
import { execFile } from 'node:child_process';
import {
  X509Certificate,
  createPrivateKey,
  randomBytes,
  sign,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  Agent,
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.ts';

const run = promisify(execFile);

export type RegistryAction = 'pull' | 'push' | 'delete' | '*';

/**
 * A repository pattern (`*` matches any run of characters, `/` included: `team/*`, `*`) with the
 * actions granted on it; a bare pattern grants pull and push.
 */
export type RepositoryGrant = string | { repository: string; actions: RegistryAction[] };

export interface TokenAuthOptions {
  /** User name -> password. */
  users: Record<string, string>;
  /**
   * User name -> what that user may do. A user missing here may pull, push and delete every
   * repository (and list the catalog); a user listed here gets only the listed grants.
   */
  grants?: Record<string, RepositoryGrant[]>;
  /** Repositories anyone may pull without credentials (`true`: all). None by default. */
  anonymousPull?: boolean | string[];
  /** Token lifetime; 300 s by default, as Docker Hub's. */
  expiresInSeconds?: number;
  /**
   * Where the realm lives. `registry-host` (default): on the registry's own host:port, the token
   * server passing every other request through to the registry, as Harbor serves it. `own-port`:
   * on a port of its own, a foreign realm as Docker Hub's auth.docker.io is. go-containerregistry
   * 0.22 (crane) refuses a realm on another host whose address is a loopback or private IP
   * literal, so crane works only with `registry-host`.
   */
  realm?: 'registry-host' | 'own-port';
}

export interface TokenRequest {
  method: string;
  /** The user name the request gave (see `status` for whether it authenticated); undefined when anonymous. */
  user: string | undefined;
  /** The scopes asked for, one `type:name:actions` per entry, as sent. */
  scopes: string[];
  /** The access the issued token carries (`repository:NAME:pull,push`); empty when refused. */
  granted: string[];
  status: number;
}

interface Access {
  type: string;
  name: string;
  actions: string[];
}

const FULL_ACCESS: RegistryAction[] = ['pull', 'push', 'delete'];

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

function patternMatches(pattern: string, name: string): boolean {
  const regex = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${regex.join('.*')}$`).test(name);
}

/** `type:name:actions`; the name may itself hold colons (`repository:host:5000/app:pull`). */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  // A resource class (`repository(plugin)`) does not change what is granted here.
  const type = scope.slice(0, first).replace(/\(.*\)$/, '');
  return {
    type,
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter(Boolean),
  };
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class RegistryTokenServer {
  /** Every token request answered, in order: lets tests assert that clients reuse tokens. */
  readonly requests: TokenRequest[] = [];
  /** The `service` the registry names in its challenge and the tokens' audience. */
  readonly service: string;
  readonly issuer = 'kube-actions-test-token-issuer';
  /** PEM certificate of the signing key: the registry's `rootcertbundle`. */
  readonly certFile: string;
  private readonly options: TokenAuthOptions;
  private readonly key: KeyObject;
  private readonly x5c: string;
  private readonly upstream: string | undefined;
  private readonly agent = new Agent({ keepAlive: true });
  private server!: Server;
  private port = 0;

  private constructor(
    options: TokenAuthOptions,
    service: string,
    certFile: string,
    key: KeyObject,
    certDer: Buffer,
    upstream: string | undefined,
  ) {
    this.upstream = upstream;
    this.options = options;
    this.service = service;
    this.certFile = certFile;
    this.key = key;
    this.x5c = certDer.toString('base64');
  }

  /**
   * Starts on a free loopback port; the signing key and its certificate go into `dir`. With
   * `upstream` (`127.0.0.1:PORT` of the registry) every request but `/token` is passed through to
   * it, so registry and realm share one host:port, as behind Harbor's front proxy.
   */
  static async start(
    dir: string,
    service: string,
    options: TokenAuthOptions,
    upstream?: string,
  ): Promise<RegistryTokenServer> {
    const keyFile = join(dir, 'token-signing.key');
    const certFile = join(dir, 'token-signing.crt');
    // Self-signed P-256 (ES256): the certificate is both the chain in `x5c` and the trusted root.
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '3650',
      '-subj',
      '/CN=kube-actions-test-token-issuer',
    ]);
    const key = createPrivateKey(await readFile(keyFile));
    const cert = new X509Certificate(await readFile(certFile));
    const ts = new RegistryTokenServer(options, service, certFile, key, cert.raw, upstream);
    ts.port = await freePort();
    ts.server = createServer((req, res) => {
      if (ts.upstream && new URL(req.url ?? '/', 'http://x').pathname !== '/token') {
        ts.proxy(req, res, ts.upstream);
        return;
      }
      ts.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve, reject) => {
      ts.server.once('error', reject);
      ts.server.listen(ts.port, '127.0.0.1', resolve);
    });
    return ts;
  }

  /** `127.0.0.1:PORT` this server listens on (the registry's public host when it fronts one). */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The realm the registry's challenge names: `http://127.0.0.1:PORT/token`. */
  get realm(): string {
    return `http://${this.host}/token`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }

  /**
   * Passes a request through unchanged, Host header included: distribution builds its absolute
   * upload `Location`s from it, so they point back here.
   */
  private proxy(req: IncomingMessage, res: ServerResponse, upstream: string): void {
    const [hostname, port] = upstream.split(':');
    const forward = request(
      {
        hostname,
        port: Number(port),
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: this.agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    forward.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end(`registry unreachable: ${err.message}`);
    });
    req.pipe(forward);
  }

  /** Actions `user` (undefined: anonymous) may perform on the resource. */
  private allowed(user: string | undefined, resource: Access): string[] {
    if (user === undefined) {
      const anonymous = this.options.anonymousPull;
      const pull =
        resource.type === 'repository' &&
        (anonymous === true ||
          (Array.isArray(anonymous) && anonymous.some((p) => patternMatches(p, resource.name))));
      return pull ? ['pull'] : [];
    }
    const grants = this.options.grants?.[user];
    if (grants === undefined) {
      if (resource.type === 'registry' && resource.name === 'catalog') return ['*'];
      return resource.type === 'repository' ? [...FULL_ACCESS, '*'] : [];
    }
    if (resource.type !== 'repository') return [];
    const actions = new Set<string>();
    for (const grant of grants) {
      const { repository, actions: granted } =
        typeof grant === 'string' ? { repository: grant, actions: ['pull', 'push'] } : grant;
      if (!patternMatches(repository, resource.name)) continue;
      for (const action of granted) actions.add(action);
      if (granted.includes('*')) for (const action of FULL_ACCESS) actions.add(action);
    }
    return [...actions];
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/token' || (req.method !== 'GET' && req.method !== 'POST')) {
      res.writeHead(404).end();
      return;
    }
    let params = url.searchParams;
    let credentials: { username: string; password: string } | undefined;
    if (req.method === 'POST') {
      // OAuth2 password grant (containerd, and so BuildKit, try it first when they hold a password).
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      if (params.get('grant_type') !== 'password') {
        // No refresh tokens are issued, so none can be redeemed.
        this.reply(res, req.method, undefined, this.scopesOf(params), 400, {
          error: 'unsupported_grant_type',
        });
        return;
      }
      credentials = { username: params.get('username') ?? '', password: params.get('password') ?? '' };
    } else {
      const header = req.headers.authorization ?? '';
      if (/^basic /i.test(header)) {
        const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        credentials =
          colon < 0
            ? { username: decoded, password: '' }
            : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
      }
    }
    const scopes = this.scopesOf(params);
    const user = credentials?.username;
    if (credentials) {
      const expected = Object.hasOwn(this.options.users, credentials.username)
        ? this.options.users[credentials.username]
        : undefined;
      if (expected === undefined || !sameSecret(credentials.password, expected)) {
        res.setHeader('WWW-Authenticate', 'Basic realm="kube-actions-test-token"');
        this.reply(res, req.method, user, scopes, 401, {
          errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }],
        });
        return;
      }
    } else if (!this.options.anonymousPull) {
      res.setHeader('WWW-Authenticate', 'Basic realm="kube-actions-test-token"');
      this.reply(res, req.method, undefined, scopes, 401, {
        errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }],
      });
      return;
    }
    if (params.get('service') !== this.service) {
      this.reply(res, req.method, user, scopes, 400, {
        errors: [{ code: 'DENIED', message: `unknown service ${JSON.stringify(params.get('service'))}` }],
      });
      return;
    }
    const access: Access[] = [];
    for (const scope of scopes) {
      const resource = parseScope(scope);
      if (!resource) {
        this.reply(res, req.method, user, scopes, 400, {
          errors: [{ code: 'DENIED', message: `invalid scope ${scope}` }],
        });
        return;
      }
      const allowed = this.allowed(user, resource);
      // As the spec's reference server: the token carries what was asked for and allowed; a
      // denied action leaves it out and the registry then answers 401 insufficient_scope.
      const actions = resource.actions.filter((a) => allowed.includes(a));
      if (actions.length) access.push({ type: resource.type, name: resource.name, actions });
    }
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = this.options.expiresInSeconds ?? 300;
    const header = { typ: 'JWT', alg: 'ES256', x5c: [this.x5c] };
    const claims = {
      iss: this.issuer,
      sub: user ?? '',
      aud: this.service,
      exp: now + expiresIn,
      nbf: now - 1,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access,
    };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    // JOSE wants the raw r||s pair, not DER.
    const signature = sign('sha256', Buffer.from(signingInput), { key: this.key, dsaEncoding: 'ieee-p1363' });
    const token = `${signingInput}.${base64url(signature)}`;
    const granted = access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`);
    this.reply(
      res,
      req.method,
      user,
      scopes,
      200,
      {
        token,
        access_token: token,
        expires_in: expiresIn,
        issued_at: new Date(now * 1000).toISOString(),
        ...(req.method === 'POST' ? { scope: granted.join(' ') } : {}),
      },
      granted,
    );
  }

  /** `scope` may repeat and each may hold several space-separated scopes. */
  private scopesOf(params: URLSearchParams): string[] {
    return params.getAll('scope').flatMap((s) => s.split(' ').filter(Boolean));
  }

  private reply(
    res: ServerResponse,
    method: string | undefined,
    user: string | undefined,
    scopes: string[],
    status: number,
    body: unknown,
    granted: string[] = [],
  ): void {
    this.requests.push({ method: method ?? '', user, scopes, granted, status });
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
  }
}
