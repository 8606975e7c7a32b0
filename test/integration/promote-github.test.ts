// promote through GitHub's API (Git Data API commits and pull requests) against the local GitHub
// stand-in: real bare repositories behind it, every request and response checked against GitHub's
// OpenAPI description, commits without an author signed with a real key.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGitHubClient, type GitHubClient } from '../../src/core/github/client.ts';
import { promote, pullRequestBranch, type PromoteOptions } from '../../src/core/gitops/promote.ts';
import { parseImageOverride } from '../../src/core/render/images.ts';
import { GitHubStandIn } from '../cluster/github-api.ts';
import { git, GitServer } from '../cluster/git-server.ts';
import { NODE24, runAction } from '../cluster/run-action.ts';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const TOKEN = 'ghs_' + 'k3'.repeat(18);
const BOT = { login: 'kube-actions[bot]', id: 41898282, type: 'Bot' as const };
let server: GitServer;
let github: GitHubStandIn;
let octokit: GitHubClient;
let scratch: string;

beforeAll(async () => {
  server = await GitServer.start({ auth: { username: 'x-access-token', password: TOKEN } });
  github = await GitHubStandIn.start(server, { [TOKEN]: BOT });
  octokit = createGitHubClient({ token: TOKEN, apiURL: github.apiURL });
  scratch = await mkdtemp(join(tmpdir(), 'promote-github-test-'));
});
afterAll(async () => {
  await github?.stop();
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});

const KUSTOMIZATION = 'apps/web/overlays/production/kustomization.yaml';

async function repoWithApp(name: string): Promise<string> {
  await server.createRepo(name, {
    [KUSTOMIZATION]:
      'resources:\n  - ../../base\n# pinned by the pipeline\nimages:\n  - name: web\n    newTag: "1.0"\n',
    'apps/api/values.yaml': 'image:\n  tag: "1.0"\n',
  });
  return join(server.root, `${name}.git`);
}

function options(repo: string, overrides: Partial<PromoteOptions> = {}): PromoteOptions {
  const [owner, name] = repo.split('/') as [string, string];
  return {
    repoURL: server.url(repo),
    branch: 'main',
    credentials: { token: TOKEN },
    github: { octokit, owner, repo: name },
    change: { type: 'kustomize-image', file: KUSTOMIZATION, image: parseImageOverride('web:2.0') },
    message: 'promote web 2.0 to production',
    trailers: { 'Source-Commit': 'c0ffee' },
    backoff: { initialMs: 10, maxMs: 200 },
    ...overrides,
  };
}

describe('promote with mode api (Git Data API)', () => {
  test('lands a commit without an author, which GitHub signs: it verifies with the signing key', async () => {
    const bare = await repoWithApp('acme/api-mode');
    const before = await server.revParse('acme/api-mode');
    const result = await promote(options('acme/api-mode', { mode: 'api' }));
    expect(result).toMatchObject({ changed: true, attempts: 1 });
    expect(await server.revParse('acme/api-mode')).toBe(result.commit);
    expect((await git(['rev-parse', `${result.commit}^`], bare)).trim()).toBe(before);
    // The commit is signed, and the signature checks out against the stand-in's key.
    await git(
      ['-c', `gpg.ssh.allowedSignersFile=${github.allowedSignersFile}`, 'verify-commit', result.commit],
      bare,
    );
    expect((await git(['log', '-1', '--format=%an|%cn|%B', result.commit], bare)).trim()).toBe(
      'kube-actions[bot]|GitHub|promote web 2.0 to production\n\nSource-Commit: c0ffee',
    );
    const { data } = await octokit.rest.git.getCommit({
      owner: 'acme',
      repo: 'api-mode',
      commit_sha: result.commit,
    });
    expect(data.verification).toMatchObject({ verified: true, reason: 'valid' });
    // Only the image entry changed; the file's comment survived.
    const file = await git(['show', `main:${KUSTOMIZATION}`], bare);
    expect(file).toContain('# pinned by the pipeline');
    expect(file).toContain('newTag: "2.0"');
    expect((await git(['diff', '--name-only', before, result.commit], bare)).trim()).toBe(KUSTOMIZATION);
  });

  test('deletes and adds files through one tree (rendered manifests replace a directory)', async () => {
    const bare = await repoWithApp('acme/api-manifests');
    await server.commitFiles(
      'acme/api-manifests',
      { 'rendered/web/old.yaml': 'kind: ConfigMap\n' },
      'old render',
    );
    const result = await promote(
      options('acme/api-manifests', {
        mode: 'api',
        change: {
          type: 'manifests',
          path: 'rendered/web',
          files: new Map([['service-web.yaml', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n']]),
        },
      }),
    );
    expect(result.changed).toBe(true);
    expect((await git(['ls-tree', '-r', '--name-only', 'main', 'rendered'], bare)).trim()).toBe(
      'rendered/web/service-web.yaml',
    );
  });

  test('when the branch moves between read and write (422), the change is re-applied on the new head', async () => {
    const bare = await repoWithApp('acme/api-race');
    let other = '';
    github.beforeNext('git/update-ref', async () => {
      other = await server.commitFiles(
        'acme/api-race',
        { 'apps/api/values.yaml': 'image:\n  tag: "9.9"\n' },
        'other pipeline',
      );
    });
    const result = await promote(options('acme/api-race', { mode: 'api' }));
    expect(result).toMatchObject({ changed: true, attempts: 2 });
    // The other pipeline's commit is the parent: nothing was overwritten.
    expect((await git(['rev-parse', `${result.commit}^`], bare)).trim()).toBe(other);
    expect(await git(['show', 'main:apps/api/values.yaml'], bare)).toContain('9.9');
    const refused = github.requests.filter((r) => r.operationId === 'git/update-ref' && r.status === 422);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.every((r) => (r.body as { force?: boolean }).force === false)).toBe(true);
  });

  test('10 concurrent API promotes of different files all land', async () => {
    const bare = await repoWithApp('acme/api-fleet');
    const base = await server.revParse('acme/api-fleet');
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        promote(
          options('acme/api-fleet', {
            mode: 'api',
            change: {
              type: 'yaml-value',
              file: 'apps/api/values.yaml',
              key: `replicas.region${i}`,
              value: String(i),
            },
            message: `region ${i}`,
            maxAttempts: 40,
          }),
        ),
      ),
    );
    expect(results.every((r) => r.changed)).toBe(true);
    expect(Math.max(...results.map((r) => r.attempts))).toBeGreaterThan(1);
    const subjects = (await git(['log', '--format=%s', `${base}..main`], bare)).trim().split('\n');
    expect(subjects.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `region ${i}`).sort());
    const values = await git(['show', 'main:apps/api/values.yaml'], bare);
    for (let i = 0; i < 10; i++) expect(values).toContain(`region${i}: "${i}"`);
  });

  test('nothing to change: no API writes, changed=false', async () => {
    await repoWithApp('acme/api-idem');
    await promote(options('acme/api-idem', { mode: 'api' }));
    const writes = () => github.requests.filter((r) => r.method !== 'GET').length;
    const before = writes();
    const again = await promote(options('acme/api-idem', { mode: 'api' }));
    expect(again).toMatchObject({ changed: false, commit: await server.revParse('acme/api-idem') });
    expect(writes()).toBe(before);
  });

  test('a token the API refuses: clear error without the token', async () => {
    await repoWithApp('acme/api-denied');
    const bad = createGitHubClient({ token: 'ghs_wrong_wrong_wrong', apiURL: github.apiURL });
    const err = (await promote(
      options('acme/api-denied', {
        mode: 'api',
        github: { octokit: bad, owner: 'acme', repo: 'api-denied' },
      }),
    ).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/HTTP 401.*token was rejected/);
    expect(err.message).not.toContain('ghs_wrong');
  });
});

describe('promote with mode pull-request', () => {
  test('opens a pull request, stacks later promotions on it, and leaves the base alone', async () => {
    const bare = await repoWithApp('acme/gated');
    const base = await server.revParse('acme/gated');
    const head = pullRequestBranch('main', options('acme/gated').change);
    expect(head).toBe('kube-actions/promote/main/apps/web/overlays/production/kustomization.yaml');

    const first = await promote(
      options('acme/gated', {
        mode: 'pull-request',
        pullRequest: { title: 'Promote web to production', body: 'from run 1', labels: ['promotion'] },
      }),
    );
    expect(first.changed).toBe(true);
    expect(first.pullRequest).toMatchObject({ number: expect.any(Number), created: true });
    expect(first.pullRequest!.url).toBe(`${server.baseUrl}/acme/gated/pull/${first.pullRequest!.number}`);
    expect(await server.revParse('acme/gated')).toBe(base);
    expect(await server.revParse('acme/gated', head)).toBe(first.commit);

    const second = await promote(
      options('acme/gated', {
        mode: 'pull-request',
        change: { type: 'kustomize-image', file: KUSTOMIZATION, image: parseImageOverride('web:3.0') },
        pullRequest: { title: 'Promote web 3.0 to production' },
      }),
    );
    expect(second.pullRequest).toEqual({ ...first.pullRequest, created: false });
    // Stacked on the first promotion (never forced), and the title follows the latest one.
    expect((await git(['rev-parse', `${second.commit}^`], bare)).trim()).toBe(first.commit);
    expect(await git(['show', `${head}:${KUSTOMIZATION}`], bare)).toContain('newTag: "3.0"');
    const { data: pr } = await octokit.rest.pulls.get({
      owner: 'acme',
      repo: 'gated',
      pull_number: first.pullRequest!.number,
    });
    expect(pr).toMatchObject({
      title: 'Promote web 3.0 to production',
      state: 'open',
      head: { ref: head },
      base: { ref: 'main' },
    });
    expect(pr.labels.map((l) => l.name)).toEqual(['promotion']);

    const again = await promote(
      options('acme/gated', {
        mode: 'pull-request',
        change: { type: 'kustomize-image', file: KUSTOMIZATION, image: parseImageOverride('web:3.0') },
      }),
    );
    expect(again).toMatchObject({
      changed: false,
      commit: second.commit,
      pullRequest: { number: pr.number, created: false },
    });
    expect(await server.revParse('acme/gated')).toBe(base);
    expect(github.pullRequests().filter((p) => p.repo === 'gated')).toHaveLength(1);
  });

  test('after its pull request is closed the branch starts again from the base in a new pull request', async () => {
    const bare = await repoWithApp('acme/gated-closed');
    const first = await promote(options('acme/gated-closed', { mode: 'pull-request' }));
    await octokit.rest.pulls.update({
      owner: 'acme',
      repo: 'gated-closed',
      pull_number: first.pullRequest!.number,
      state: 'closed',
    });
    // Meanwhile the base moved on.
    const moved = await server.commitFiles('acme/gated-closed', { 'README.md': 'moved\n' }, 'base moved');
    const next = await promote(
      options('acme/gated-closed', {
        mode: 'pull-request',
        change: { type: 'kustomize-image', file: KUSTOMIZATION, image: parseImageOverride('web:4.0') },
      }),
    );
    expect(next.pullRequest).toMatchObject({ created: true });
    expect(next.pullRequest!.number).not.toBe(first.pullRequest!.number);
    expect((await git(['rev-parse', `${next.commit}^`], bare)).trim()).toBe(moved);
    // The closed pull request's branch is left as it was; the new one is the name's next generation.
    const head = pullRequestBranch('main', options('acme/gated-closed').change);
    expect((await git(['rev-parse', `refs/heads/${head}`], bare)).trim()).toBe(first.commit);
    const opened = github
      .pullRequests()
      .find((p) => p.repo === 'gated-closed' && p.number === next.pullRequest!.number);
    expect(opened?.head).toBe(`${head}-2`);
  });

  test('a promotion arriving between another one’s new branch and its pull request builds on that branch', async () => {
    const bare = await repoWithApp('acme/gated-window');
    const shared = { branch: 'promote/window', title: 'Promote' };
    const change = (key: string) =>
      ({ type: 'yaml-value', file: 'apps/api/values.yaml', key, value: '1' }) as const;
    let second: Awaited<ReturnType<typeof promote>> | undefined;
    // The first promotion has created its branch; before its pull request exists, the second runs.
    github.beforeNext('pulls/create', async () => {
      second = await promote(
        options('acme/gated-window', {
          mode: 'pull-request',
          pullRequest: shared,
          change: change('b'),
          message: 'b',
        }),
      );
    });
    const first = await promote(
      options('acme/gated-window', {
        mode: 'pull-request',
        pullRequest: shared,
        change: change('a'),
        message: 'a',
      }),
    );
    expect(second?.pullRequest?.number).toBe(first.pullRequest!.number);
    const values = await git(['show', 'refs/heads/promote/window:apps/api/values.yaml'], bare);
    expect(values).toContain('a: "1"');
    expect(values).toContain('b: "1"');
  });

  test('10 concurrent promotes sharing one pull-request branch: every change is in its one pull request', async () => {
    const bare = await repoWithApp('acme/gated-fleet');
    const base = await server.revParse('acme/gated-fleet');
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        promote(
          options('acme/gated-fleet', {
            mode: 'pull-request',
            pullRequest: { branch: 'promote/fleet', title: 'Promote the fleet' },
            change: {
              type: 'yaml-value',
              file: 'apps/api/values.yaml',
              key: `replicas.region${i}`,
              value: String(i),
            },
            message: `region ${i}`,
            maxAttempts: 40,
          }),
        ),
      ),
    );
    expect(results.every((r) => r.changed)).toBe(true);
    const pulls = github.pullRequests().filter((p) => p.repo === 'gated-fleet');
    expect(pulls).toHaveLength(1);
    expect(new Set(results.map((r) => r.pullRequest!.number))).toEqual(new Set([pulls[0]!.number]));
    // No commit was lost: the branch holds all ten, on top of the base.
    const subjects = (await git(['log', '--format=%s', `${base}..refs/heads/promote/fleet`], bare))
      .trim()
      .split('\n');
    expect(subjects.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `region ${i}`).sort());
    const values = await git(['show', 'refs/heads/promote/fleet:apps/api/values.yaml'], bare);
    for (let i = 0; i < 10; i++) expect(values).toContain(`region${i}: "${i}"`);
    expect((await git(['rev-parse', 'refs/heads/main'], bare)).trim()).toBe(base);
  });

  test('when the base already holds the change, no branch and no pull request', async () => {
    await repoWithApp('acme/gated-noop');
    const result = await promote(
      options('acme/gated-noop', {
        mode: 'pull-request',
        change: { type: 'kustomize-image', file: KUSTOMIZATION, image: parseImageOverride('web:1.0') },
      }),
    );
    expect(result).toMatchObject({ changed: false, commit: await server.revParse('acme/gated-noop') });
    expect(result.pullRequest).toBeUndefined();
    expect(github.pullRequests().filter((p) => p.repo === 'gated-noop')).toHaveLength(0);
  });
});

describe('the promote action with the GitHub API', () => {
  const env = () => ({
    GITHUB_WORKSPACE: scratch,
    GITHUB_SERVER_URL: server.baseUrl,
    GITHUB_API_URL: github.apiURL,
    GITHUB_REPOSITORY: 'acme/web',
    GITHUB_SHA: 'f00dfeed',
    GITHUB_RUN_ID: '77',
  });

  test('mode pull-request: outputs the pull request URL and number', async () => {
    await repoWithApp('acme/action-pr');
    const result = await runAction(
      'promote',
      {
        repository: 'acme/action-pr',
        token: TOKEN,
        mode: 'pull-request',
        kustomization: KUSTOMIZATION,
        image: 'web@sha256:' + 'a'.repeat(64),
        'pull-request-labels': 'promotion, production',
      },
      env(),
    );
    expect(result.stdout).not.toContain('::error::');
    expect(result.exitCode).toBe(0);
    const pull = github.pullRequests().find((p) => p.repo === 'action-pr')!;
    expect(result.outputs).toMatchObject({
      changed: 'true',
      'pull-request-number': String(pull.number),
      'pull-request-url': `${server.baseUrl}/acme/action-pr/pull/${pull.number}`,
    });
    expect(pull.labels).toEqual(['promotion', 'production']);
    expect(result.outputs.commit).toBe(await server.revParse('acme/action-pr', pull.head));
  });

  test('mode api: a verified commit on the branch', async () => {
    const bare = await repoWithApp('acme/action-api');
    const result = await runAction(
      'promote',
      {
        repository: 'acme/action-api',
        token: TOKEN,
        mode: 'api',
        'values-file': 'apps/api/values.yaml',
        key: 'image.tag',
        value: '2.1',
      },
      env(),
    );
    expect(result.stdout).not.toContain('::error::');
    expect(result.outputs).toMatchObject({
      changed: 'true',
      commit: await server.revParse('acme/action-api'),
      'pull-request-url': '',
    });
    await git(
      [
        '-c',
        `gpg.ssh.allowedSignersFile=${github.allowedSignersFile}`,
        'verify-commit',
        result.outputs.commit!,
      ],
      bare,
    );
    expect(await git(['log', '-1', '--format=%B', 'main'], bare)).toContain(
      'Workflow-Run: ' + server.baseUrl + '/acme/web/actions/runs/77',
    );
  });

  test('an unknown mode is refused before anything is fetched', async () => {
    const before = server.requests.length + github.requests.length;
    const result = await runAction(
      'promote',
      { repository: 'acme/x', token: TOKEN, mode: 'merge', kustomization: 'k.yaml', image: 'web:2' },
      env(),
    );
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(
      '::error::input "mode" must be one of "push", "api", "pull-request", got "merge"',
    );
    expect(server.requests.length + github.requests.length).toBe(before);
  });
});

describe('kube-actions promote --mode pull-request (bundled CLI)', () => {
  test('opens a labelled draft pull request with the token from the environment', async () => {
    await repoWithApp('acme/cli-pr');
    const { stdout } = await promisify(execFile)(
      NODE24,
      [
        resolve(import.meta.dirname, '../../dist/cli/index.js'),
        'promote',
        '--repo',
        server.url('acme/cli-pr'),
        '--mode',
        'pull-request',
        '--api-url',
        github.apiURL,
        '--kustomization',
        KUSTOMIZATION,
        '--image',
        'web:5.0',
        '--pr-label',
        'production',
        '--draft',
      ],
      { env: { ...process.env, GITHUB_TOKEN: TOKEN, GIT_TOKEN: '' } },
    );
    const pull = github.pullRequests().find((p) => p.repo === 'cli-pr')!;
    expect(pull).toMatchObject({ draft: true, labels: ['production'], base: 'main' });
    expect(stdout).toBe(
      `opened pull request #${pull.number} ${server.baseUrl}/acme/cli-pr/pull/${pull.number} (${await server.revParse('acme/cli-pr', pull.head)})\n`,
    );
  });
});

describe('the GitHub stand-in keeps to the OpenAPI description', () => {
  test('a request body GitHub would reject gets 422; an undocumented route is a violation', async () => {
    await repoWithApp('acme/contract');
    const res = await fetch(`${github.apiURL}/repos/acme/contract/git/blobs`, {
      method: 'POST',
      headers: { Authorization: `token ${TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ encoding: 'base64' }),
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { message: string }).message).toMatch(
      /must have required property 'content'/,
    );
    const count = github.violations.length;
    const missing = await fetch(`${github.apiURL}/repos/acme/contract/no-such-thing`, {
      headers: { Authorization: `token ${TOKEN}` },
    });
    expect(missing.status).toBe(404);
    expect(github.violations.slice(count)).toEqual([
      "GET /repos/acme/contract/no-such-thing is not an operation of GitHub's REST API",
    ]);
    github.violations.splice(count);
  });

  test('every response the stand-in gave during these tests matched the description', () => {
    expect(github.requests.length).toBeGreaterThan(20);
    expect(github.violations).toEqual([]);
  });
});
