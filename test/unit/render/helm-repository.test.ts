// The Helm repository client against a loopback server serving what a test hands it: version
// choice from an index, the digest check, and archives that try to leave their directory.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { HelmRepositories, ociRepository } from '../../../src/core/render/helm-repository.ts';

const files = new Map<string, Buffer>();
let server: Server;
let base: string;
let cache: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const body = files.get(req.url ?? '');
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/repo`;
  cache = await mkdtemp(join(tmpdir(), 'helm-repo-unit-'));
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await rm(cache, { recursive: true, force: true });
});

async function tgz(entries: { name: string; body: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) p.entry({ name: e.name }, e.body);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

function index(chart: string, versions: { version: string; file: string; digest?: string }[]): void {
  const lines = [`apiVersion: v1`, `entries:`, `  ${chart}:`];
  for (const v of versions)
    lines.push(
      `  - name: ${chart}`,
      `    version: ${v.version}`,
      `    urls: [${v.file}]`,
      ...(v.digest ? [`    digest: ${v.digest}`] : []),
    );
  files.set('/repo/index.yaml', Buffer.from(lines.join('\n') + '\n'));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('Helm repositories', () => {
  test("the newest version a range allows, with Helm's comma-separated constraints; prereleases only when asked", async () => {
    index(
      'web',
      ['1.0.0', '1.4.2', '1.10.0', '2.0.0', '2.1.0-rc.1'].map((v) => ({ version: v, file: `web-${v}.tgz` })),
    );
    const repos = new HelmRepositories({ dir: cache });
    const pick = async (c: string) => (await repos.resolve(base, 'web', c, true)).version;
    expect(await pick('>=1.0.0, <2.0.0')).toBe('1.10.0');
    expect(await pick('~1.4')).toBe('1.4.2');
    expect(await pick('')).toBe('2.0.0');
    expect(await pick('>=2.1.0-rc.0')).toBe('2.1.0-rc.1');
    expect(await pick('1.0.0')).toBe('1.0.0');
    await expect(pick('>=3')).rejects.toThrow(/no version of chart web .* matches ">=3"/);
    await expect(pick('not a range')).rejects.toThrow(/is not a version or a semver range/);
    await expect(repos.resolve(base, 'api', '', true)).rejects.toThrow(
      /chart api is not in the Helm repository/,
    );
    // The archive URL is relative to the repository.
    expect((await repos.resolve(base, 'web', '1.0.0', false)).url).toBe(`${base}/web-1.0.0.tgz`);
  });

  test('an archive is checked against the digest in the index, unpacked once, and may not leave its directory', async () => {
    const good = await tgz([{ name: 'app/Chart.yaml', body: 'apiVersion: v2\nname: app\nversion: 1.0.0\n' }]);
    const evil = await tgz([{ name: '../../escaped.yaml', body: 'x' }]);
    files.set('/repo/app-1.0.0.tgz', good);
    files.set('/repo/app-1.1.0.tgz', good);
    files.set('/repo/app-6.6.6.tgz', evil);
    index('app', [
      { version: '1.0.0', file: 'app-1.0.0.tgz', digest: sha(good) },
      { version: '1.1.0', file: 'app-1.1.0.tgz', digest: sha(evil) },
      { version: '6.6.6', file: 'app-6.6.6.tgz', digest: sha(evil) },
    ]);
    const requested: string[] = [];
    const repos = new HelmRepositories({ dir: cache, onRequest: (u) => requested.push(new URL(u).pathname) });
    const one = await repos.resolve(base, 'app', '1.0.0', true);
    const dir = await repos.chartDir(base, one);
    expect(await readFile(join(dir, 'app', 'Chart.yaml'), 'utf8')).toContain('name: app');
    await repos.chartDir(base, one);
    expect(requested.filter((p) => p.endsWith('.tgz'))).toEqual(['/repo/app-1.0.0.tgz']);

    await expect(repos.chartDir(base, await repos.resolve(base, 'app', '1.1.0', false))).rejects.toThrow(
      /its sha256 is [0-9a-f]{64}, the index says/,
    );
    await expect(repos.chartDir(base, await repos.resolve(base, 'app', '6.6.6', false))).rejects.toThrow(
      /leaves its directory/,
    );
    await expect(readFile(join(cache, '..', 'escaped.yaml'))).rejects.toThrow();
  });

  test("OCI repository URLs: oci:// or no scheme (Argo CD's enableOCI form); nothing else is taken for one", () => {
    expect(ociRepository('oci://ghcr.io/acme/charts')).toEqual({ registry: 'ghcr.io', path: 'acme/charts' });
    expect(ociRepository('registry-1.docker.io/bitnamicharts/')).toEqual({
      registry: 'registry-1.docker.io',
      path: 'bitnamicharts',
    });
    expect(ociRepository('oci://127.0.0.1:5000')).toEqual({ registry: '127.0.0.1:5000', path: '' });
    for (const notOci of [
      'https://charts.example.com',
      'http://127.0.0.1/charts',
      'git@github.com:acme/charts',
      'oci://user:pw@ghcr.io/acme',
      'oci://ghcr.io/acme/../etc',
      'oci://ghcr.io/Acme',
      'file:///etc',
      'ssh://git@host/x',
    ])
      expect(ociRepository(notOci)).toBeUndefined();
  });

  test('an OCI chart: the tags are the versions (`_` for `+`); a manifest that is not a Helm chart, or too large a layer, is refused', async () => {
    const registry = base.replace(/^http:\/\/|\/repo$/g, '');
    const chart = await tgz([
      { name: 'oci/Chart.yaml', body: 'apiVersion: v2\nname: oci\nversion: 1.2.0+b.1\n' },
    ]);
    const manifest = (config: string, layer: { digest: string; size: number }) =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: config, digest: `sha256:${'0'.repeat(64)}`, size: 2 },
          layers: [{ mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', ...layer }],
        }),
      );
    const helmConfig = 'application/vnd.cncf.helm.config.v1+json';
    files.set('/v2/', Buffer.from('{}'));
    files.set(
      '/v2/repo/oci/tags/list?n=1000',
      Buffer.from(JSON.stringify({ name: 'repo/oci', tags: ['1.0.0', '1.2.0_b.1', '2.0.0', 'latest'] })),
    );
    files.set(
      '/v2/repo/oci/manifests/1.2.0_b.1',
      manifest(helmConfig, { digest: `sha256:${sha(chart)}`, size: chart.length }),
    );
    files.set(`/v2/repo/oci/blobs/sha256:${sha(chart)}`, chart);
    files.set(
      '/v2/repo/oci/manifests/2.0.0',
      manifest('application/vnd.oci.image.config.v1+json', { digest: `sha256:${sha(chart)}`, size: 1 }),
    );
    files.set(
      '/v2/repo/oci/manifests/1.0.0',
      manifest(helmConfig, { digest: `sha256:${sha(chart)}`, size: 2 ** 30 }),
    );
    const repos = new HelmRepositories({ dir: cache });
    const repoURL = `oci://${registry}/repo`;
    const resolved = await repos.resolve(repoURL, 'oci', '>=1.1, <2', true);
    expect(resolved).toMatchObject({
      version: '1.2.0+b.1',
      digest: sha(chart),
      url: `${repoURL}/oci:1.2.0_b.1`,
    });
    const dir = await repos.chartDir(repoURL, resolved);
    expect(await readFile(join(dir, 'oci', 'Chart.yaml'), 'utf8')).toContain('version: 1.2.0+b.1');
    await expect(repos.resolve(repoURL, 'oci', '2.0.0', true)).rejects.toThrow(/is not a Helm chart/);
    await expect(repos.resolve(repoURL, 'oci', '1.0.0', true)).rejects.toThrow(/more than the \d+ allowed/);
    await expect(repos.resolve(repoURL, 'oci', '>=3', true)).rejects.toThrow(
      /no version of chart oci in .* matches ">=3" \(its tags: 1.0.0, 1.2.0_b.1, 2.0.0, latest\)/,
    );
    await expect(repos.resolve(repoURL, 'oci', '9.9.9', true)).rejects.toThrow(/HTTP 404/);
  });
});
