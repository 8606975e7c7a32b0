// An OCI registry on loopback: Debian's `docker-registry` (CNCF distribution) with filesystem
// storage, started and stopped per test run. Anonymous, htpasswd (bcrypt) basic auth, or the
// Docker token flow with a token server of our own (registry-token.ts) whose JWTs the registry
// verifies itself, as Docker Hub, GHCR or Harbor do. With `gateway` it also answers on a real
// node's gateway address (node.ts), where that node's containerd pulls from it.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { forwardTcp, type Forwarder } from './node.ts';
import { freePort } from './ports.ts';
import { logTail, startComponent, stopProcessGroup, type ComponentProcess } from './process.ts';
import { RegistryTokenServer, type TokenAuthOptions, type TokenRequest } from './registry-token.ts';

export type { RegistryAction, RepositoryGrant, TokenAuthOptions, TokenRequest } from './registry-token.ts';

const run = promisify(execFile);

export interface RegistryOptions {
  /** Require these credentials (HTTP basic auth); anonymous access when omitted. */
  auth?: { username: string; password: string };
  /** Require bearer tokens from a token server that knows these users (exclusive with `auth`). */
  tokenAuth?: TokenAuthOptions;
  /**
   * Also listen on this address: a real node's gateway (RealNode.gateway), so that its containerd
   * can pull (RealNode.addRegistry(registry.host, registry.gatewayHost)). The same port when free.
   * A token registry's realm stays on loopback, so containerd can pull only from anonymous and
   * htpasswd registries this way.
   */
  gateway?: string;
  /** Log each request (distribution's access log), for requests(). */
  accessLog?: boolean;
}

export interface RegistryCredentials {
  username: string;
  password: string;
}

export class OciRegistry {
  readonly dir: string;
  /** `127.0.0.1:PORT`, the registry part of an image reference. */
  readonly host: string;
  /** The htpasswd credentials (undefined for anonymous and token registries). */
  readonly auth: RegistryOptions['auth'];
  /** The token server of a `tokenAuth` registry. */
  readonly tokenServer: RegistryTokenServer | undefined;
  private readonly tokenUsers: Record<string, string>;
  private readonly process: ComponentProcess;
  private gatewayForwarder: Forwarder | undefined;

  private constructor(
    dir: string,
    host: string,
    proc: ComponentProcess,
    options: RegistryOptions,
    tokenServer: RegistryTokenServer | undefined,
  ) {
    this.dir = dir;
    this.host = host;
    this.process = proc;
    this.auth = options.auth;
    this.tokenServer = tokenServer;
    this.tokenUsers = options.tokenAuth?.users ?? {};
  }

  get url(): string {
    return `http://${this.host}`;
  }

  /** `GATEWAY:PORT` when started with `gateway`: where a real node's containerd reaches it. */
  get gatewayHost(): string | undefined {
    return this.gatewayForwarder?.host;
  }

  /** The token realm the registry's Bearer challenge names (token registries only). */
  get tokenRealm(): string | undefined {
    return this.tokenServer?.realm;
  }

  /** The token requests answered so far, in order (empty unless token auth). */
  get tokenRequests(): readonly TokenRequest[] {
    return this.tokenServer?.requests ?? [];
  }

  /** Authorization header value for the configured htpasswd credentials (none otherwise). */
  authorization(): string | undefined {
    if (!this.auth) return undefined;
    return `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
  }

  /**
   * Credentials a client would log in with: the htpasswd ones, or `user`'s (by default the first
   * configured user's) for a token registry; undefined for an anonymous registry.
   */
  credentials(user?: string): RegistryCredentials | undefined {
    if (this.auth) return this.auth;
    const name = user ?? Object.keys(this.tokenUsers)[0];
    const password =
      name !== undefined && Object.hasOwn(this.tokenUsers, name) ? this.tokenUsers[name] : undefined;
    return name !== undefined && password !== undefined ? { username: name, password } : undefined;
  }

  /**
   * Fetches a bearer token from the token server as a client would (GET with basic auth, or
   * anonymously when `user` is null), for tests that talk to the registry with fetch().
   */
  async bearerToken(scopes: string[], user?: string | null): Promise<string> {
    if (!this.tokenServer) throw new Error('bearerToken: this registry does not use token auth');
    const url = new URL(this.tokenServer.realm);
    url.searchParams.set('service', this.tokenServer.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const creds = user === null ? undefined : this.credentials(user);
    const headers: Record<string, string> = creds
      ? { Authorization: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` }
      : {};
    const res = await fetch(url, { headers });
    if (!res.ok) throw new Error(`token request failed: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { token: string }).token;
  }

  static async start(options: RegistryOptions = {}): Promise<OciRegistry> {
    if (options.auth && options.tokenAuth) throw new Error('OciRegistry: choose auth or tokenAuth, not both');
    const dir = await mkdtemp(join(tmpdir(), 'kube-actions-registry-'));
    const port = await freePort();
    let host = `127.0.0.1:${port}`;
    const config = [
      'version: 0.1',
      `log: { level: warn, accesslog: { disabled: ${options.accessLog ? 'false' : 'true'} } }`,
      `storage: { filesystem: { rootdirectory: ${join(dir, 'data')} }, delete: { enabled: true } }`,
      `http: { addr: "${host}", secret: "${randomBytes(16).toString('hex')}" }`,
    ];
    let tokenServer: RegistryTokenServer | undefined;
    if (options.auth) {
      // distribution accepts only bcrypt entries.
      const { stdout } = await run('htpasswd', ['-Bbn', options.auth.username, options.auth.password]);
      await writeFile(join(dir, 'htpasswd'), stdout);
      config.push(`auth: { htpasswd: { realm: kube-actions-test, path: ${join(dir, 'htpasswd')} } }`);
    } else if (options.tokenAuth) {
      const fronted = (options.tokenAuth.realm ?? 'registry-host') === 'registry-host';
      // The service names this registry in challenges and is the tokens' audience.
      const service = `kube-actions-registry-${port}`;
      tokenServer = await RegistryTokenServer.start(
        dir,
        service,
        options.tokenAuth,
        fronted ? host : undefined,
      );
      // Fronted, clients reach the registry through the token server's port only.
      if (fronted) host = tokenServer.host;
      const token = {
        realm: tokenServer.realm,
        service: tokenServer.service,
        issuer: tokenServer.issuer,
        rootcertbundle: tokenServer.certFile,
      };
      config.push(`auth: { token: ${JSON.stringify(token)} }`);
    }
    await mkdir(join(dir, 'data'));
    await writeFile(join(dir, 'config.yml'), config.join('\n') + '\n');
    const proc = startComponent('docker-registry', 'docker-registry', ['serve', join(dir, 'config.yml')], {
      logDir: dir,
      attached: true,
    });
    const registry = new OciRegistry(dir, host, proc, options, tokenServer);
    const deadline = Date.now() + 20_000;
    for (;;) {
      // GET /v2/ answers 200 (anonymous) or 401 (auth required) once the registry serves.
      const status = await fetch(`${registry.url}/v2/`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200 || status === 401) {
        if (options.gateway) {
          const port = Number(host.slice(host.lastIndexOf(':') + 1));
          registry.gatewayForwarder = await forwardTcp(options.gateway, port, host).catch(
            async (err: Error) => {
              await registry.stop();
              throw new Error(`the registry cannot listen on ${options.gateway}: ${err.message}`);
            },
          );
        }
        return registry;
      }
      if (Date.now() > deadline) {
        await registry.stop();
        throw new Error(`docker-registry did not start:\n${logTail(proc.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** `METHOD /path` of each request so far, from the access log (start with `accessLog`). */
  async requests(): Promise<string[]> {
    const log = await readFile(this.process.logFile, 'utf8').catch(() => '');
    return [...log.matchAll(/"([A-Z]+) (\/[^ "]*) HTTP\/[\d.]+"/g)].map((m) => `${m[1]} ${m[2]}`);
  }

  async stop(): Promise<void> {
    await this.gatewayForwarder?.close();
    await stopProcessGroup(this.process.pid);
    await this.tokenServer?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Writes a Docker client config (`config.json` with one `auths` entry per registry that has
 * credentials) into `dir` and returns `dir`, to be passed as DOCKER_CONFIG to crane, buildctl or
 * skopeo (`--authfile dir/config.json`). `users` picks the token user per registry host.
 */
export async function writeDockerConfig(
  dir: string,
  registries: OciRegistry[],
  users: Record<string, string> = {},
): Promise<string> {
  const auths: Record<string, { auth: string }> = {};
  for (const registry of registries) {
    const creds = registry.credentials(users[registry.host]);
    if (creds)
      auths[registry.host] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths }, null, 2) + '\n', { mode: 0o600 });
  return dir;
}
