// A git server on loopback over smart HTTP: git's own `git http-backend` does all the protocol
// work (v0/v2, fetch and push); this file is only the CGI gateway in front of it, with optional
// basic auth, the way Apache or nginx front it in production. With `gateway` it also listens on a
// real node's gateway address (node.ts), so that pods (the in-cluster controller) can clone.
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GitServerOptions {
  /** Directory holding bare repositories; a temporary one by default (removed on stop). */
  root?: string;
  /** Require these credentials (HTTP basic auth) for every request. */
  auth?: { username: string; password: string };
  /**
   * Also listen on this address: a real node's gateway (RealNode.gateway), where its pods reach
   * the host (see gatewayUrl). The same port as on loopback when free.
   */
  gateway?: string;
}

export interface GitRequest {
  method: string;
  repo: string;
  /** `git-upload-pack` (fetch, ls-remote) or `git-receive-pack` (push). */
  service: string;
  status: number;
}

/** Environment for git commands run by the harness itself: no user config, fixed identity. */
export const GIT_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'kube-actions test',
  GIT_AUTHOR_EMAIL: 'test@kube-actions.dev',
  GIT_COMMITTER_NAME: 'kube-actions test',
  GIT_COMMITTER_EMAIL: 'test@kube-actions.dev',
  GIT_TERMINAL_PROMPT: '0',
};

export async function git(args: string[], cwd?: string): Promise<string> {
  const { stdout } = await run('git', args, { cwd, env: GIT_ENV, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

function serviceOf(req: IncomingMessage, path: string): string {
  const query = new URL(req.url ?? '/', 'http://x').searchParams.get('service');
  if (query) return query;
  const last = path.split('/').pop() ?? '';
  return last.startsWith('git-') ? last : 'dumb';
}

export class GitServer {
  /** Every request served, in order: lets tests count fetches per repository. */
  readonly requests: GitRequest[] = [];
  private server!: Server;
  private gatewayServer: Server | undefined;
  private gatewayAddress = '';
  private port = 0;
  private ownsRoot = false;
  readonly root: string;
  private readonly auth: GitServerOptions['auth'];

  private constructor(root: string, auth: GitServerOptions['auth']) {
    this.root = root;
    this.auth = auth;
  }

  static async start(options: GitServerOptions = {}): Promise<GitServer> {
    const root = options.root ?? (await mkdtemp(join(tmpdir(), 'kube-actions-git-')));
    const gs = new GitServer(root, options.auth);
    gs.ownsRoot = options.root === undefined;
    gs.server = createServer((req, res) => gs.handle(req, res));
    await new Promise<void>((resolve) => gs.server.listen(0, '127.0.0.1', resolve));
    gs.port = (gs.server.address() as { port: number }).port;
    if (options.gateway) {
      const server = createServer((req, res) => gs.handle(req, res));
      const listen = (port: number) =>
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, options.gateway, () => {
            server.off('error', reject);
            resolve();
          });
        });
      try {
        await listen(gs.port).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EADDRINUSE') throw err;
          return listen(0);
        });
      } catch (err) {
        await gs.stop();
        throw new Error(`the git server cannot listen on ${options.gateway}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      gs.gatewayServer = server;
      gs.gatewayAddress = `${options.gateway}:${(server.address() as { port: number }).port}`;
    }
    return gs;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `http://GATEWAY:PORT` when started with `gateway`: the server as pods reach it. */
  get gatewayBaseUrl(): string | undefined {
    return this.gatewayServer ? `http://${this.gatewayAddress}` : undefined;
  }

  /** The clone URL of `name` for pods (started with `gateway`). */
  gatewayUrl(name: string): string {
    if (!this.gatewayServer)
      throw new Error('GitServer.gatewayUrl: the server was started without `gateway`');
    return `${this.gatewayBaseUrl}/${name}.git`;
  }

  /** The clone URL of `name` (without credentials). */
  url(name: string): string {
    return `${this.baseUrl}/${name}.git`;
  }

  /** Creates a bare repository; with `files`, pushes an initial commit of them to `branch`. */
  async createRepo(name: string, files?: Record<string, string>, branch = 'main'): Promise<string> {
    const bare = join(this.root, `${name}.git`);
    await mkdir(dirname(bare), { recursive: true });
    await git(['init', '--bare', '--quiet', `--initial-branch=${branch}`, bare]);
    // Pushes over HTTP need this on the served side (http-backend refuses anonymous pushes).
    await git(['config', 'http.receivepack', 'true'], bare);
    if (files) await this.commitFiles(name, files, 'initial commit', branch);
    return bare;
  }

  /**
   * Commits `files` (path -> content; null deletes the path) on top of `branch` directly in the
   * bare repository, as another pipeline pushing would. Returns the new commit id.
   */
  async commitFiles(
    name: string,
    files: Record<string, string | null>,
    message: string,
    branch = 'main',
  ): Promise<string> {
    const work = await mkdtemp(join(tmpdir(), 'kube-actions-git-work-'));
    try {
      const bare = join(this.root, `${name}.git`);
      await git(['clone', '--quiet', bare, work]);
      await git(['checkout', '--quiet', '-B', branch], work);
      for (const [path, content] of Object.entries(files)) {
        const target = join(work, path);
        if (content === null) {
          await rm(target, { force: true, recursive: true });
        } else {
          await mkdir(dirname(target), { recursive: true });
          await writeFile(target, content);
        }
      }
      await git(['add', '--all'], work);
      await git(['commit', '--quiet', '--allow-empty', '-m', message], work);
      await git(['push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`], work);
      return (await git(['rev-parse', 'HEAD'], work)).trim();
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** The commit `ref` points at in the served repository. */
  async revParse(name: string, ref = 'main'): Promise<string> {
    return (await git(['rev-parse', ref], join(this.root, `${name}.git`))).trim();
  }

  private authorized(req: IncomingMessage): string | undefined {
    if (!this.auth) return 'anonymous';
    const header = req.headers.authorization ?? '';
    const [scheme, encoded] = header.split(' ');
    if (scheme?.toLowerCase() !== 'basic' || !encoded) return undefined;
    const decoded = Buffer.from(encoded, 'base64').toString('utf8');
    const sep = decoded.indexOf(':');
    const user = decoded.slice(0, sep);
    return user === this.auth.username && decoded.slice(sep + 1) === this.auth.password ? user : undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.baseUrl);
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('bad path encoding\n');
      return;
    }
    const repo = path.replace(/^\//, '').replace(/\.git(\/.*)?$/, '');
    const record: GitRequest = {
      method: req.method ?? 'GET',
      repo,
      service: serviceOf(req, path),
      status: 0,
    };
    this.requests.push(record);
    const fail = (status: number, message: string, headers: Record<string, string> = {}) => {
      record.status = status;
      res.writeHead(status, { 'Content-Type': 'text/plain', ...headers }).end(`${message}\n`);
    };
    if (path.includes('..')) return fail(400, 'bad path');
    const user = this.authorized(req);
    if (!user)
      return fail(401, 'authentication required', {
        'WWW-Authenticate': 'Basic realm="kube-actions-test-git"',
      });

    const backend = spawn('git', ['http-backend'], {
      env: {
        ...GIT_ENV,
        GIT_PROJECT_ROOT: this.root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: path,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        // Unset for chunked request bodies: http-backend then reads to EOF.
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: (req.headers['git-protocol'] as string | undefined) ?? '',
        REMOTE_USER: user,
        REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // A client that hangs up mid-request, or a backend that exits early, must not crash the server.
    backend.stdin.on('error', () => undefined);
    backend.on('error', (err) => {
      if (!res.headersSent) fail(500, `cannot run git http-backend: ${err.message}`);
      else res.destroy();
    });
    req.pipe(backend.stdin);
    let stderr = '';
    backend.stderr.on('data', (d: Buffer) => (stderr += d.toString()));

    // CGI response: header lines, a blank line, then the body, streamed through.
    let head = Buffer.alloc(0);
    let headersSent = false;
    backend.stdout.on('data', (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      const endLf = head.indexOf('\n\n');
      const [split, sepLen] = end >= 0 ? [end, 4] : endLf >= 0 ? [endLf, 2] : [-1, 0];
      if (split < 0) return;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, split).toString('latin1').split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const key = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (key.toLowerCase() === 'status') status = parseInt(value, 10);
        else headers[key] = value;
      }
      record.status = status;
      res.writeHead(status, headers);
      headersSent = true;
      res.write(head.subarray(split + sepLen));
    });
    backend.on('close', (code) => {
      if (!headersSent) {
        fail(500, `git http-backend failed (${code}): ${stderr.trim()}`);
        return;
      }
      res.end();
    });
  }

  async stop(): Promise<void> {
    if (this.gatewayServer) {
      const server = this.gatewayServer;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.ownsRoot) await rm(this.root, { recursive: true, force: true });
  }
}
