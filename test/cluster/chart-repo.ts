// A Helm chart repository for tests, made the way one is made for real: `helm package` each chart
// version, `helm repo index` the directory, and serve it over HTTP (optionally behind basic auth,
// with ETags as static servers send them). It records each request's path, so a test can tell
// what the controller fetched.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ChartVersion {
  name: string;
  version: string;
  /** Template file name → contents. */
  templates: Record<string, string>;
}

/** `helm package` of a chart version written under `work`; the archive goes to `destination`. */
export async function packageChart(work: string, chart: ChartVersion, destination: string): Promise<string> {
  const src = join(work, 'src', `${chart.name}-${chart.version}`, chart.name);
  await mkdir(join(src, 'templates'), { recursive: true });
  await writeFile(
    join(src, 'Chart.yaml'),
    `apiVersion: v2\nname: ${chart.name}\nversion: ${chart.version}\n`,
  );
  for (const [name, text] of Object.entries(chart.templates))
    await writeFile(join(src, 'templates', name), text);
  await mkdir(destination, { recursive: true });
  await run('helm', ['package', src, '--destination', destination]);
  return join(destination, `${chart.name}-${chart.version}.tgz`);
}

/**
 * `helm push` of chart versions to `oci://<registry>/<repository>` (plain HTTP: the test registry
 * is on loopback), logging in first with `helm registry login` when credentials are given. Helm's
 * config and cache live in a directory of their own, removed afterwards.
 */
export async function pushCharts(
  registry: string,
  repository: string,
  charts: ChartVersion[],
  auth?: { username: string; password: string },
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'helm-push-'));
  const env = {
    ...process.env,
    HELM_CONFIG_HOME: join(work, 'config'),
    HELM_CACHE_HOME: join(work, 'cache'),
    HELM_DATA_HOME: join(work, 'data'),
  };
  try {
    if (auth) {
      // A test password: on the command line is good enough here.
      const login = ['registry', 'login', registry, '--plain-http', '--username', auth.username];
      await run('helm', [...login, '--password', auth.password], { env });
    }
    for (const chart of charts) {
      const archive = await packageChart(work, chart, join(work, 'out'));
      await run('helm', ['push', archive, `oci://${registry}/${repository}`, '--plain-http'], { env });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export class ChartRepo {
  readonly url: string;
  /** Paths requested, in order (including refused ones). */
  readonly requests: string[];
  private readonly server: Server;
  private readonly dir: string;
  private readonly work: string;

  private constructor(server: Server, url: string, dir: string, work: string, requests: string[]) {
    this.requests = requests;
    this.server = server;
    this.url = url;
    this.dir = dir;
    this.work = work;
  }

  static async start(options: { auth?: { username: string; password: string } } = {}): Promise<ChartRepo> {
    const work = await mkdtemp(join(tmpdir(), 'chart-repo-'));
    const dir = join(work, 'repo');
    await mkdir(dir);
    const expected = options.auth
      ? `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`
      : undefined;
    const requests: string[] = [];
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      requests.push(path);
      if (expected && req.headers.authorization !== expected) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="charts"' }).end();
        return;
      }
      const file = normalize(join(dir, decodeURIComponent(path)));
      if (!file.startsWith(dir)) return void res.writeHead(400).end();
      void (async () => {
        try {
          const s = await stat(file);
          const etag = `"${createHash('sha1').update(`${s.size}-${s.mtimeMs}`).digest('hex')}"`;
          if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { ETag: etag }).end();
          res.writeHead(200, { ETag: etag, 'Content-Length': s.size }).end(await readFile(file));
        } catch {
          res.writeHead(404).end();
        }
      })();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address() as { port: number };
    return new ChartRepo(server, `http://127.0.0.1:${address.port}/charts`, dir, work, requests);
  }

  /** Packages a chart version into the repository and indexes it again. */
  async publish(chart: ChartVersion): Promise<void> {
    const charts = join(this.dir, 'charts');
    await packageChart(this.work, chart, charts);
    await run('helm', ['repo', 'index', charts, '--url', this.url]);
  }

  /** Requests for chart archives so far. */
  archiveRequests(): string[] {
    return this.requests.filter((p) => p.endsWith('.tgz'));
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.server.close(r));
    await rm(this.work, { recursive: true, force: true });
  }
}
