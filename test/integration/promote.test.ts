// promote over plain git against the loopback smart-HTTP server (git http-backend, basic auth).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitMessage, promote, PromoteError } from '../../src/core/gitops/promote.ts';
import { parseImageOverride } from '../../src/core/render/images.ts';
import { git, GitServer } from '../cluster/git-server.ts';
import { NODE24, runAction } from '../cluster/run-action.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cp } from 'node:fs/promises';
import { resolve } from 'node:path';

const TOKEN = 'ghs_' + 'x9'.repeat(18);
const credentials = { username: 'x-access-token', token: TOKEN };
let server: GitServer;
let scratch: string;

beforeAll(async () => {
  server = await GitServer.start({ auth: { username: 'x-access-token', password: TOKEN } });
  scratch = await mkdtemp(join(tmpdir(), 'promote-test-'));
});
afterAll(async () => {
  await server.stop();
  await rm(scratch, { recursive: true, force: true });
});

async function fileAt(repo: string, path: string, ref = 'main'): Promise<string> {
  return git(['show', `${ref}:${path}`], join(server.root, `${repo}.git`));
}

describe('promote over git', () => {
  test('20 concurrent promotes of different apps to one branch all land, none lost', async () => {
    await server.createRepo('fleet', { 'README.md': 'fleet\n' });
    const base = await server.revParse('fleet');
    const apps = Array.from({ length: 20 }, (_, i) => `app-${String(i).padStart(2, '0')}`);
    const results = await Promise.all(
      apps.map((app) =>
        promote({
          repoURL: server.url('fleet'),
          branch: 'main',
          credentials,
          change: {
            type: 'manifests',
            path: `rendered/${app}`,
            files: new Map([
              ['configmap-settings.yaml', `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${app}}\n`],
            ]),
          },
          message: `promote ${app}`,
          trailers: { 'Source-Commit': `${app}-sha` },
          backoff: { initialMs: 20, maxMs: 400 },
          maxAttempts: 40,
        }),
      ),
    );
    expect(results.every((r) => r.changed)).toBe(true);
    // They collided: some had to fetch, re-apply and retry.
    expect(Math.max(...results.map((r) => r.attempts))).toBeGreaterThan(1);

    const bare = join(server.root, 'fleet.git');
    const log = (await git(['log', '--format=%s', `${base}..main`], bare)).trim().split('\n');
    expect(log.sort()).toEqual(apps.map((a) => `promote ${a}`));
    // Linear history on top of the base: nothing was force-pushed away.
    expect((await git(['rev-list', '--count', 'main'], bare)).trim()).toBe('21');
    for (const app of apps)
      expect(await fileAt('fleet', `rendered/${app}/configmap-settings.yaml`)).toContain(app);
    expect(results.map((r) => r.commit)).toContain(await server.revParse('fleet'));
  });

  test('the same change twice makes one commit; the second reports changed=false', async () => {
    await server.createRepo('idem', { 'README.md': 'x\n' });
    const change = {
      type: 'manifests' as const,
      path: 'rendered/web',
      files: new Map([['service-web.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: web}\n']]),
    };
    const first = await promote({
      repoURL: server.url('idem'),
      branch: 'main',
      credentials,
      change,
      message: 'web',
    });
    const second = await promote({
      repoURL: server.url('idem'),
      branch: 'main',
      credentials,
      change,
      message: 'web',
    });
    expect(first.changed).toBe(true);
    expect(second).toEqual({ changed: false, commit: first.commit, attempts: 1 });
    expect((await git(['rev-list', '--count', 'main'], join(server.root, 'idem.git'))).trim()).toBe('2');
  });

  test('stale manifests in the path are removed, other paths untouched', async () => {
    await server.createRepo('prune', {
      'rendered/web/deployment-web.yaml': 'old\n',
      'rendered/web/service-web.yaml': 'old\n',
      'rendered/api/deployment-api.yaml': 'api\n',
    });
    await promote({
      repoURL: server.url('prune'),
      branch: 'main',
      credentials,
      change: { type: 'manifests', path: 'rendered/web', files: new Map([['deployment-web.yaml', 'new\n']]) },
      message: 'web',
    });
    const tree = (await git(['ls-tree', '-r', '--name-only', 'main'], join(server.root, 'prune.git')))
      .trim()
      .split('\n');
    expect(tree.sort()).toEqual(['rendered/api/deployment-api.yaml', 'rendered/web/deployment-web.yaml']);
  });

  test('an image bump edits the kustomization in place, keeping comments, with trailers on the commit', async () => {
    const kustomization =
      '# staging overlay\nresources: [../../base]\nimages:\n  - name: ghcr.io/acme/web # the app\n    newTag: "1.0"\n';
    await server.createRepo('bump', { 'apps/web/staging/kustomization.yaml': kustomization });
    const digest = `sha256:${'d'.repeat(64)}`;
    const result = await promote({
      repoURL: server.url('bump'),
      branch: 'main',
      credentials,
      change: {
        type: 'kustomize-image',
        file: 'apps/web/staging/kustomization.yaml',
        image: parseImageOverride(`ghcr.io/acme/web@${digest}`),
      },
      message: 'web: promote to staging',
      trailers: {
        'Source-Repository': 'acme/web',
        'Source-Commit': 'abc123',
        'Workflow-Run': 'https://github.com/acme/web/actions/runs/42',
        'Image-Digest': digest,
      },
    });
    expect(result.changed).toBe(true);
    const edited = await fileAt('bump', 'apps/web/staging/kustomization.yaml');
    expect(edited).toBe(
      `# staging overlay\nresources: [ ../../base ]\nimages:\n  - name: ghcr.io/acme/web # the app\n    digest: ${digest}\n`,
    );
    const body = await git(['log', '-1', '--format=%B', 'main'], join(server.root, 'bump.git'));
    expect(body).toBe(
      commitMessage('web: promote to staging', {
        'Source-Repository': 'acme/web',
        'Source-Commit': 'abc123',
        'Workflow-Run': 'https://github.com/acme/web/actions/runs/42',
        'Image-Digest': digest,
      }) + '\n',
    );
    const trailers = await git(
      ['log', '-1', '--format=%(trailers:key=Image-Digest,valueonly)', 'main'],
      join(server.root, 'bump.git'),
    );
    expect(trailers.trim()).toBe(digest);
  });

  test('rejected credentials give a clear error that never contains the token', async () => {
    await server.createRepo('private', { 'a.txt': 'a\n' });
    const before = await server.revParse('private');
    const wrong = 'ghs_wrongwrongwrongwrongwrongwrong';
    const err = await promote({
      repoURL: server.url('private'),
      branch: 'main',
      credentials: { token: wrong },
      change: { type: 'yaml-value', file: 'values.yaml', key: 'image.tag', value: '2' },
      message: 'x',
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PromoteError);
    const text = `${(err as Error).message} ${(err as Error).stack}`;
    expect((err as Error).message).toBe(
      `authentication to ${server.url('private')} failed: check that the token is valid and may read and push to the repository`,
    );
    expect(text).not.toContain(wrong);
    expect(text).not.toContain(Buffer.from(`x-access-token:${wrong}`).toString('base64'));
    expect(await server.revParse('private')).toBe(before);
  });
});

describe('promote action (as the runner runs it)', () => {
  const runEnv = (ws: string) => ({
    GITHUB_WORKSPACE: ws,
    GITHUB_REPOSITORY: 'acme/guestbook',
    GITHUB_SHA: 'f00dfeed',
    GITHUB_RUN_ID: '4242',
    GITHUB_SERVER_URL: 'https://github.example',
  });

  test("lands the render action's output with run trailers; a re-run changes nothing", async () => {
    const ws = join(scratch, 'ws');
    await cp(resolve(import.meta.dirname, '../../gitops'), join(ws, 'gitops'), { recursive: true });
    await server.createRepo('deploy', { 'README.md': 'deploy\n' });
    const rendered = await runAction(
      'render',
      { path: 'gitops/apps/guestbook/overlays/staging', output: 'out' },
      runEnv(ws),
    );
    expect(rendered.exitCode).toBe(0);

    const inputs = {
      repository: server.url('deploy'),
      token: TOKEN,
      'manifests-from': 'out',
      path: 'clusters/local/guestbook',
    };
    const first = await runAction('promote', inputs, runEnv(ws));
    expect(first.stdout).not.toContain('::error::');
    expect(first.exitCode).toBe(0);
    expect(first.outputs.changed).toBe('true');
    expect(first.outputs.commit).toBe(await server.revParse('deploy'));
    const bare = join(server.root, 'deploy.git');
    const body = await git(['log', '-1', '--format=%B', 'main'], bare);
    expect(body).toContain('Source-Repository: acme/guestbook');
    expect(body).toContain('Source-Commit: f00dfeed');
    expect(body).toContain('Workflow-Run: https://github.example/acme/guestbook/actions/runs/4242');
    expect(await git(['show', 'main:clusters/local/guestbook/deployment-guestbook.yaml'], bare)).toContain(
      'kind: Deployment',
    );

    const again = await runAction('promote', inputs, runEnv(ws));
    expect(again.outputs).toEqual({
      changed: 'false',
      commit: first.outputs.commit,
      'pull-request-url': '',
      'pull-request-number': '',
    });
  });

  test('a refused token fails the step with a clear message; the token is only ever printed to be masked', async () => {
    const wrong = 'ghs_not-the-right-token-1234567890';
    const result = await runAction(
      'promote',
      { repository: server.url('deploy'), token: wrong, kustomization: 'k.yaml', image: 'web:2' },
      runEnv(scratch),
    );
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(`::error::authentication to ${server.url('deploy')} failed`);
    const lines = `${result.stdout}\n${result.stderr}`.split('\n').filter((l) => l.includes(wrong));
    expect(lines).toEqual([`::add-mask::${wrong}`]);
  });

  test('contradictory inputs are refused before anything is fetched', async () => {
    const before = server.requests.length;
    const result = await runAction(
      'promote',
      {
        repository: server.url('deploy'),
        token: TOKEN,
        kustomization: 'k.yaml',
        image: 'web:2',
        'values-file': 'v.yaml',
      },
      runEnv(scratch),
    );
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain('::error::describe exactly one change');
    expect(server.requests.length).toBe(before);
  });
});

describe('kube-actions promote (bundled CLI)', () => {
  const cli = resolve(import.meta.dirname, '../../dist/cli/index.js');
  const run = promisify(execFile);

  test('sets a Helm value with the token from the environment; a re-run has nothing to commit', async () => {
    await server.createRepo('helm-env', {
      'web/values-prod.yaml': 'image:\n  repository: ghcr.io/acme/web\n  tag: "1.0"\n',
    });
    const args = [
      cli,
      'promote',
      '--repo',
      server.url('helm-env'),
      '--values-file',
      'web/values-prod.yaml',
      '--key',
      'image.tag',
      '--value',
      '1.1',
    ];
    const env = { ...process.env, GIT_TOKEN: TOKEN };
    const first = await run(NODE24, [...args, '--trailer', 'Image-Digest=sha256:abc'], { env });
    expect(first.stdout).toBe(`pushed ${await server.revParse('helm-env')} to main (attempt 1)\n`);
    expect(await fileAt('helm-env', 'web/values-prod.yaml')).toBe(
      'image:\n  repository: ghcr.io/acme/web\n  tag: "1.1"\n',
    );
    const second = await run(NODE24, args, { env });
    expect(second.stdout).toMatch(/^main already holds this change/);
  });

  test('without a token the server refuses, with a clear error and exit 1', async () => {
    const env = { ...process.env, GIT_TOKEN: '', GITHUB_TOKEN: '' };
    const err = await run(
      NODE24,
      [
        cli,
        'promote',
        '--repo',
        server.url('helm-env'),
        '--values-file',
        'v.yaml',
        '--key',
        'a',
        '--value',
        'b',
      ],
      { env },
    ).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain(`authentication to ${server.url('helm-env')} failed`);
  });
});
