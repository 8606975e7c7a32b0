// The harness's other real programs: git over smart HTTP (git http-backend) with basic auth, the
// distribution OCI registry with htpasswd, and the pinned helm and kustomize builds.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { git, GitServer } from '../cluster/git-server.ts';
import { OciRegistry } from '../cluster/registry.ts';

const run = promisify(execFile);
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'real-parts-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('git server (git http-backend over smart HTTP)', () => {
  let server: GitServer;
  const auth = { username: 'pipeline', password: 's3cret-token' };
  beforeAll(async () => {
    server = await GitServer.start({ auth });
  });
  afterAll(() => server.stop());

  test('clones and pushes with credentials, counting fetches and pushes', async () => {
    await server.createRepo('team/gitops', { 'apps/web/kustomization.yaml': 'resources: []\n' });
    const authed = server.url('team/gitops').replace('http://', `http://${auth.username}:${auth.password}@`);
    const clone = join(work, 'clone');
    await git(['clone', '--quiet', authed, clone]);
    expect(await readFile(join(clone, 'apps/web/kustomization.yaml'), 'utf8')).toBe('resources: []\n');

    await writeFile(join(clone, 'README.md'), 'hello\n');
    await git(['add', 'README.md'], clone);
    await git(['commit', '--quiet', '-m', 'add readme'], clone);
    await git(['push', '--quiet', 'origin', 'HEAD:main'], clone);
    expect(await server.revParse('team/gitops')).toBe((await git(['rev-parse', 'HEAD'], clone)).trim());

    const services = server.requests.filter((r) => r.repo === 'team/gitops').map((r) => r.service);
    expect(services).toContain('git-upload-pack');
    expect(services).toContain('git-receive-pack');
  });

  test('rejects a wrong password with 401 and a rejected push changes nothing', async () => {
    await server.createRepo('locked', { 'a.txt': 'a\n' });
    const before = await server.revParse('locked');
    const wrong = server.url('locked').replace('http://', 'http://pipeline:wrong@');
    const err = await git(['ls-remote', wrong]).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/Authentication failed|401/);
    expect(server.requests.some((r) => r.repo === 'locked' && r.status === 401)).toBe(true);
    expect(await server.revParse('locked')).toBe(before);
  });

  test('a malformed request path gets a 400 and the server keeps serving', async () => {
    const res = await fetch(`${server.baseUrl}/%E0%A4%A.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(400);
    await server.createRepo('still-up', { 'a.txt': 'a\n' });
    const authed = server.url('still-up').replace('http://', `http://${auth.username}:${auth.password}@`);
    expect(await git(['ls-remote', authed, 'main'])).toContain('refs/heads/main');
  });

  test('a non-fast-forward push is rejected by the server', async () => {
    await server.createRepo('race', { 'a.txt': '1\n' });
    const authed = server.url('race').replace('http://', `http://${auth.username}:${auth.password}@`);
    const mine = join(work, 'race-mine');
    await git(['clone', '--quiet', authed, mine]);
    const theirs = await server.commitFiles('race', { 'b.txt': 'theirs\n' }, 'another pipeline');
    await writeFile(join(mine, 'c.txt'), 'mine\n');
    await git(['add', '.'], mine);
    await git(['commit', '--quiet', '-m', 'mine'], mine);
    const err = await git(['push', '--quiet', 'origin', 'HEAD:main'], mine).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/rejected|fetch first|non-fast-forward/);
    expect(await server.revParse('race')).toBe(theirs);
  });
});

describe('OCI registry (distribution) with htpasswd auth', () => {
  let registry: OciRegistry;
  beforeAll(async () => {
    registry = await OciRegistry.start({ auth: { username: 'ci', password: 'registry-pass' } });
  });
  afterAll(() => registry.stop());

  const sha256 = (data: Buffer | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

  async function pushBlob(repo: string, data: Buffer): Promise<string> {
    const headers = { Authorization: registry.authorization()! };
    const start = await fetch(`${registry.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers });
    expect(start.status).toBe(202);
    const location = new URL(start.headers.get('location')!, registry.url);
    location.searchParams.set('digest', sha256(data));
    const put = await fetch(location, {
      method: 'PUT',
      headers: { ...headers, 'Content-Type': 'application/octet-stream' },
      body: data,
    });
    expect(put.status).toBe(201);
    return sha256(data);
  }

  test('an image pushed by the OCI distribution protocol is served back by digest', async () => {
    const repo = 'team/web';
    const layer = Buffer.from('not really a tarball, but bytes are bytes');
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
    );
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: await pushBlob(repo, config),
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: await pushBlob(repo, layer),
          size: layer.length,
        },
      ],
    });
    const put = await fetch(`${registry.url}/v2/${repo}/manifests/v1.0.0`, {
      method: 'PUT',
      headers: {
        Authorization: registry.authorization()!,
        'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
      },
      body: manifest,
    });
    expect(put.status).toBe(201);
    expect(put.headers.get('docker-content-digest')).toBe(sha256(manifest));

    const get = await fetch(`${registry.url}/v2/${repo}/manifests/v1.0.0`, {
      headers: {
        Authorization: registry.authorization()!,
        Accept: 'application/vnd.oci.image.manifest.v1+json',
      },
    });
    expect(get.status).toBe(200);
    expect(await get.text()).toBe(manifest);
  });

  test('anonymous requests are refused with a Basic challenge', async () => {
    const res = await fetch(`${registry.url}/v2/team/web/tags/list`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="kube-actions-test"/);
  });
});

describe('pinned helm and kustomize', () => {
  test('helm renders the chart that `helm create` generates', async () => {
    await run('helm', ['create', join(work, 'web')]);
    const { stdout } = await run('helm', [
      'template',
      'web',
      join(work, 'web'),
      '--namespace',
      'prod',
      '--set',
      'replicaCount=2',
    ]);
    expect(stdout).toContain('kind: Deployment');
    expect(stdout).toMatch(/replicas: 2/);
    expect(stdout).toContain('app.kubernetes.io/instance: web');
    const { stdout: version } = await run('helm', ['version', '--short']);
    expect(version.trim()).toBe('v4.3.1');
  });

  test('kustomize builds an overlay with an image override and a generated ConfigMap', async () => {
    const base = join(work, 'kbase');
    const overlay = join(work, 'koverlay');
    await mkdir(base, { recursive: true });
    await mkdir(overlay, { recursive: true });
    await writeFile(join(base, 'kustomization.yaml'), 'resources: [deployment.yaml]\n');
    await writeFile(
      join(base, 'deployment.yaml'),
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web:1.0}]}\n',
    );
    await writeFile(
      join(overlay, 'kustomization.yaml'),
      'resources: [../kbase]\nimages: [{name: web, newName: registry.example/web, newTag: "2.0"}]\nconfigMapGenerator: [{name: web-config, literals: [MODE=prod]}]\n',
    );
    const { stdout } = await run('kustomize', ['build', overlay]);
    expect(stdout).toContain('image: registry.example/web:2.0');
    expect(stdout).toMatch(/name: web-config-[a-z0-9]{10}/);
  });
});
