// promote's failure paths, end to end: the real git server (git http-backend behind basic auth),
// the GitHub stand-in (checked against GitHub's OpenAPI description) and the bundled CLI. Where a
// failure needs another writer to land at an exact moment, it lands for real (a commit pushed to
// the served repository) at a point chosen by a pass-through proxy or the stand-in's beforeNext,
// so every test sees the same interleaving on every run.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createGitHubClient, type GitHubClient } from '../../src/core/github/client.ts';
import type { PromoteChange } from '../../src/core/gitops/changes.ts';
import {
  promote,
  PromoteError,
  type PromoteOptions,
  type PromoteResult,
} from '../../src/core/gitops/promote.ts';
import { parseImageOverride } from '../../src/core/render/images.ts';
import { GitHubStandIn } from '../cluster/github-api.ts';
import { git, GitServer } from '../cluster/git-server.ts';
import { NODE24 } from '../cluster/run-action.ts';

const TOKEN = 'ghs_' + 'f7'.repeat(18);
/** What git sends for the token (http.extraHeader): it must not leak either. */
const BASIC = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
const BOT = { login: 'kube-actions[bot]', id: 41898282, type: 'Bot' as const };
const CLI = resolve(import.meta.dirname, '../../dist/cli/index.js');

let server: GitServer;
let github: GitHubStandIn;
let octokit: GitHubClient;
const proxies: GitProxy[] = [];

beforeAll(async () => {
  server = await GitServer.start({ auth: { username: 'x-access-token', password: TOKEN } });
  github = await GitHubStandIn.start(server, { [TOKEN]: BOT });
  octokit = createGitHubClient({ token: TOKEN, apiURL: github.apiURL });
});
afterAll(async () => {
  for (const p of proxies) await p.stop();
  await github?.stop();
  await server?.stop();
});

const WEB = 'apps/web/kustomization.yaml';
const API = 'apps/api/values.yaml';
const DB = 'apps/db/values.yaml';

async function createRepo(name: string): Promise<{ bare: string; base: string }> {
  await server.createRepo(name, {
    [WEB]: 'resources: [deployment.yaml]\nimages:\n  - name: web\n    newTag: "1.0"\n',
    [API]: 'image:\n  tag: "1.0"\n',
    [DB]: 'image:\n  tag: "1.0"\n',
  });
  return { bare: join(server.root, `${name}.git`), base: await server.revParse(name) };
}

const webImage = (tag: string): PromoteChange => ({
  type: 'kustomize-image',
  file: WEB,
  image: parseImageOverride(`web:${tag}`),
});
const valueOf = (file: string, tag: string): PromoteChange => ({
  type: 'yaml-value',
  file,
  key: 'image.tag',
  value: tag,
});

/** Options for `repo` ("owner/name"): the git server's URL, the stand-in for modes api and pull-request. */
function options(repo: string, overrides: Partial<PromoteOptions> = {}): PromoteOptions {
  const [owner, name] = repo.split('/') as [string, string];
  return {
    repoURL: server.url(repo),
    branch: 'main',
    credentials: { token: TOKEN },
    github: { octokit, owner, repo: name },
    change: webImage('2.0'),
    message: 'promote web 2.0',
    backoff: { initialMs: 10, maxMs: 50 },
    ...overrides,
  };
}

/** The commits of `ref`, newest first, following first parents (promote never merges). */
async function chain(bare: string, ref = 'main'): Promise<string[]> {
  return (await git(['rev-list', '--first-parent', ref], bare)).trim().split('\n');
}

async function refs(bare: string): Promise<string> {
  return git(['for-each-ref', '--format=%(refname) %(objectname)'], bare);
}

/**
 * Another pipeline landing on `branch` of `repo`: a real commit on top of that branch, pushed to
 * the served repository. (GitServer.commitFiles builds on the default branch whatever `branch`
 * says, so a push of it to another existing branch is refused.)
 */
async function otherWriter(repo: string, n: number, branch = 'main'): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'promote-other-writer-'));
  try {
    await git(['clone', '--quiet', '--branch', branch, join(server.root, `${repo}.git`), work]);
    await mkdir(join(work, 'other'), { recursive: true });
    await writeFile(join(work, 'other', `writer-${n}.txt`), `other writer ${n}\n`);
    await git(['add', '--all'], work);
    await git(['commit', '--quiet', '-m', `other writer ${n}`], work);
    await git(['push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`], work);
    return (await git(['rev-parse', 'HEAD'], work)).trim();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `kube-actions promote` as it ships (the bundled CLI), with the token in the environment. */
async function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(NODE24, [CLI, 'promote', ...args], {
    env: { ...process.env, GIT_TOKEN: TOKEN, GITHUB_TOKEN: '', ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({
      code: err.code,
      stdout: err.stdout,
      stderr: err.stderr,
    }),
  );
}

interface ProxiedRequest {
  method: string;
  /** `git-upload-pack` (ls-remote, fetch) or `git-receive-pack` (push). */
  service: string;
}

/**
 * A pass-through proxy in front of real git servers: each request is forwarded untouched, after
 * `before` has run. It is how another writer lands at an exact point of promote's push (as the
 * GitHub stand-in's beforeNext does for the API): before the push's ref advertisement (GET
 * info/refs?service=git-receive-pack, so git itself refuses the push: "fetch first") or while the
 * push is in flight (the POST, so the server's compare-and-swap refuses the ref update). `upstream`
 * picks the server per request: a second server on the same repositories with other credentials
 * stands for a token revoked between the read and the write.
 */
class GitProxy {
  readonly requests: ProxiedRequest[] = [];
  private server!: Server;

  static async start(options: {
    upstream?: (r: ProxiedRequest) => GitServer;
    before?: (r: ProxiedRequest) => Promise<void>;
  }): Promise<GitProxy> {
    const proxy = new GitProxy();
    proxy.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://proxy');
      const r = {
        method: req.method ?? 'GET',
        service: url.searchParams.get('service') ?? url.pathname.split('/').pop() ?? '',
      };
      proxy.requests.push(r);
      // The request body waits in the socket meanwhile: nothing reaches git before `before` is done.
      void (options.before?.(r) ?? Promise.resolve()).then(() => {
        const target = (options.upstream?.(r) ?? server).baseUrl;
        const out = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        });
        out.on('error', () => res.destroy());
        req.pipe(out);
      });
    });
    await new Promise<void>((r) => proxy.server.listen(0, '127.0.0.1', r));
    proxies.push(proxy);
    return proxy;
  }

  url(repo: string): string {
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}/${repo}.git`;
  }

  /** Pushes tried: each starts with a ref advertisement (GET info/refs?service=git-receive-pack). */
  pushAttempts(): number {
    return this.requests.filter((r) => r.service === 'git-receive-pack' && r.method === 'GET').length;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('a branch that keeps moving', () => {
  test.each([
    ['before its push learns where main is (git refuses the push itself: fetch first)', 'GET' as const],
    ['while its push is in flight (the server refuses the ref update: cannot lock ref)', 'POST' as const],
  ])(
    'mode push: another writer lands %s, three times running: promote backs off, re-applies on the new head and lands on top of all three',
    async (_, at) => {
      const repo = `moving-${at.toLowerCase()}`;
      const { bare, base } = await createRepo(repo);
      const others: string[] = [];
      const proxy = await GitProxy.start({
        before: async (r) => {
          if (r.service === 'git-receive-pack' && r.method === at && others.length < 3)
            others.push(await otherWriter(repo, others.length + 1));
        },
      });
      const sleeps: number[] = [];
      const result = await promote(
        options(repo, {
          repoURL: proxy.url(repo),
          change: valueOf(API, '2.0'),
          message: 'promote api 2.0',
          maxAttempts: 5,
          backoff: { initialMs: 20, maxMs: 50 },
          sleep: async (ms) => {
            sleeps.push(ms);
            await sleep(ms);
          },
        }),
      );
      expect(result).toMatchObject({ changed: true, attempts: 4 });
      // Four pushes tried: three refused, the fourth landed.
      expect(proxy.pushAttempts()).toBe(4);
      // Linear history, nothing overwritten: promote's commit sits on the other writer's three.
      expect(await chain(bare)).toEqual([result.commit, others[2], others[1], others[0], base]);
      for (let n = 1; n <= 3; n++)
        expect(await git(['show', `main:other/writer-${n}.txt`], bare)).toBe(`other writer ${n}\n`);
      expect(await git(['show', `main:${API}`], bare)).toBe('image:\n  tag: "2.0"\n');
      expect((await git(['diff', '--name-only', `${others[2]}..main`], bare)).trim()).toBe(API);
      // Backed off between attempts: full jitter under a doubling bound (20, 40, then the 50 cap).
      expect(sleeps).toHaveLength(3);
      sleeps.forEach((ms, i) => {
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThan(Math.min(50, 20 * 2 ** i));
      });
    },
  );

  test('mode push, CLI: a branch that moves before every push: gives up after --max-attempts with a clear error; the other commits are all there', async () => {
    const { bare, base } = await createRepo('moving-forever');
    const others: string[] = [];
    const proxy = await GitProxy.start({
      before: async (r) => {
        if (r.service === 'git-receive-pack' && r.method === 'GET')
          others.push(await otherWriter('moving-forever', others.length + 1));
      },
    });
    const run = await cli([
      '--repo',
      proxy.url('moving-forever'),
      '--values-file',
      API,
      '--key',
      'image.tag',
      '--value',
      '2.0',
      '--max-attempts',
      '3',
    ]);
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `kube-actions: main kept moving: gave up after 3 attempts to land ${API}: image.tag=2.0\n`,
    });
    // Exactly the budget: three pushes tried, then no more.
    expect(proxy.pushAttempts()).toBe(3);
    // Never forced: main is the other writer's last commit, on top of its first two.
    expect(await chain(bare)).toEqual([others[2], others[1], others[0], base]);
    expect(await git(['show', `main:${API}`], bare)).toBe('image:\n  tag: "1.0"\n');
  });

  test('mode api: the branch moves before every fast-forward: gives up after its budget, every update unforced, nothing lost', async () => {
    const { bare, base } = await createRepo('acme/moving-api');
    const others: string[] = [];
    let moving = true;
    const moveBeforeNextUpdate = () =>
      github.beforeNext('git/update-ref', async () => {
        if (!moving) return;
        others.push(await otherWriter('acme/moving-api', others.length + 1));
        moveBeforeNextUpdate();
      });
    moveBeforeNextUpdate();
    const err = await promote(options('acme/moving-api', { mode: 'api', maxAttempts: 3 })).then(
      () => undefined,
      (e: unknown) => e,
    );
    moving = false;
    expect(err).toBeInstanceOf(PromoteError);
    expect((err as Error).message).toBe(
      `main kept moving: gave up after 3 attempts to land ${WEB}: image web`,
    );
    const updates = github.requests.filter(
      (r) => r.operationId === 'git/update-ref' && r.params.repo === 'moving-api',
    );
    expect(updates.map((r) => [r.status, (r.body as { force?: boolean }).force])).toEqual([
      [422, false],
      [422, false],
      [422, false],
    ]);
    expect(await chain(bare)).toEqual([others[2], others[1], others[0], base]);
  });

  test('mode pull-request: the pull request’s branch moves before every fast-forward: the error names that branch, not the untouched base', async () => {
    const { bare, base } = await createRepo('acme/moving-pr');
    const pr = { branch: 'promote/busy', title: 'Promote' };
    const opened = await promote(
      options('acme/moving-pr', { mode: 'pull-request', pullRequest: pr, change: valueOf(DB, '2.0') }),
    );
    // Other promotions keep landing on the pull request's branch, each just before ours moves it.
    const others: string[] = [];
    let moving = true;
    const moveBeforeNextUpdate = () =>
      github.beforeNext('git/update-ref', async () => {
        if (!moving) return;
        others.push(await otherWriter('acme/moving-pr', others.length + 1, pr.branch));
        moveBeforeNextUpdate();
      });
    moveBeforeNextUpdate();
    const err = await promote(
      options('acme/moving-pr', { mode: 'pull-request', pullRequest: pr, maxAttempts: 3 }),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    moving = false;
    expect(err).toBeInstanceOf(PromoteError);
    expect((err as Error).message).toBe(
      `pull request branch promote/busy kept moving: gave up after 3 attempts to land ${WEB}: image web`,
    );
    expect(await chain(bare, pr.branch)).toEqual([others[2], others[1], others[0], opened.commit, base]);
    expect(await server.revParse('acme/moving-pr')).toBe(base);
    expect(github.pullRequests().filter((p) => p.repo === 'moving-pr')).toHaveLength(1);
  });
});

describe('a missing target branch', () => {
  test.each(['push', 'api', 'pull-request'] as const)(
    'mode %s: a clear error, and no branch, commit or pull request is created',
    async (mode) => {
      const repo = `acme/missing-${mode}`;
      const { bare } = await createRepo(repo);
      const before = {
        refs: await refs(bare),
        pushes: server.requests.filter((r) => r.service === 'git-receive-pack').length,
        apiWrites: github.requests.filter((r) => r.method !== 'GET').length,
      };
      const err = await promote(options(repo, { mode, branch: 'production' })).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PromoteError);
      expect((err as Error).message).toBe(`branch production does not exist in ${server.url(repo)}`);
      // Not even the pull request's own branch (the only branch promote ever creates) was made.
      expect({
        refs: await refs(bare),
        pushes: server.requests.filter((r) => r.service === 'git-receive-pack').length,
        apiWrites: github.requests.filter((r) => r.method !== 'GET').length,
      }).toEqual(before);
      expect(github.pullRequests().filter((p) => p.repo === `missing-${mode}`)).toEqual([]);
    },
  );

  test('CLI: exit 1 with the same error, nothing pushed', async () => {
    const { bare } = await createRepo('missing-cli');
    const before = await refs(bare);
    const run = await cli([
      '--repo',
      server.url('missing-cli'),
      '--branch',
      'production',
      '--values-file',
      API,
      '--key',
      'image.tag',
      '--value',
      '2.0',
    ]);
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `kube-actions: branch production does not exist in ${server.url('missing-cli')}\n`,
    });
    expect(await refs(bare)).toBe(before);
  });
});

describe('an authentication failure on push', () => {
  const leaks = (text: string) => [TOKEN, BASIC].filter((s) => text.includes(s));

  test('a token that may read but not push (HTTP 403 on push): a clear error naming the push, the token in no output', async () => {
    const { bare, base } = await createRepo('read-only');
    // git http-backend refuses receive-pack with 403, as GitHub refuses a read-only token's push.
    await git(['config', 'http.receivepack', 'false'], bare);
    const message = `authentication to ${server.url('read-only')} failed on push: check that the token may push to main`;
    const err = await promote(options('read-only', { change: valueOf(API, '2.0') })).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(PromoteError);
    expect(err!.message).toBe(message);
    expect(leaks(`${err!.message}\n${err!.stack}`)).toEqual([]);
    // It got as far as the push, which the server refused.
    expect(server.requests.at(-1)).toMatchObject({
      repo: 'read-only',
      service: 'git-receive-pack',
      status: 403,
    });

    const run = await cli([
      '--repo',
      server.url('read-only'),
      '--values-file',
      API,
      '--key',
      'image.tag',
      '--value',
      '2.0',
    ]);
    expect(run).toEqual({ code: 1, stdout: '', stderr: `kube-actions: ${message}\n` });
    expect(await server.revParse('read-only')).toBe(base);
  });

  test('a token revoked between the read and the push (HTTP 401 on push): the same clear error, the token in no output', async () => {
    const { base } = await createRepo('revoked');
    // The same repositories behind a server that no longer takes the token: pushes go there.
    const revoked = await GitServer.start({
      root: server.root,
      auth: { username: 'x-access-token', password: 'ghs_the-token-after-rotation' },
    });
    try {
      const proxy = await GitProxy.start({
        upstream: (r) => (r.service === 'git-receive-pack' ? revoked : server),
      });
      const message = `authentication to ${proxy.url('revoked')} failed on push: check that the token may push to main`;
      const err = await promote(
        options('revoked', { repoURL: proxy.url('revoked'), change: valueOf(API, '2.0') }),
      ).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(PromoteError);
      expect(err!.message).toBe(message);
      expect(leaks(`${err!.message}\n${err!.stack}`)).toEqual([]);
      expect(revoked.requests.map((r) => [r.service, r.status])).toEqual([['git-receive-pack', 401]]);

      const run = await cli([
        '--repo',
        proxy.url('revoked'),
        '--values-file',
        API,
        '--key',
        'image.tag',
        '--value',
        '2.0',
      ]);
      expect(run).toEqual({ code: 1, stdout: '', stderr: `kube-actions: ${message}\n` });
      expect(await server.revParse('revoked')).toBe(base);
    } finally {
      await revoked.stop();
    }
  });
});

// promote-github.test.ts covers promotions of one file sharing a branch (ten at once, and one
// arriving between another's new branch and its pull request). These are promotions of different
// files sharing one pull request, forced into the two other collisions: creating the branch, and
// fast-forwarding it once the pull request is open.
describe('pull-request branch races: different files, one pull request', () => {
  async function filesChanged(bare: string, base: string, head: string): Promise<string[]> {
    return (await git(['diff', '--name-only', `${base}..${head}`], bare)).trim().split('\n').sort();
  }

  /** A promotion of `file` to 2.0 into the shared pull request `pr` (the web one is the default). */
  const promoteFile = (repo: string, pr: { branch: string; title: string }, file?: string) =>
    promote(
      options(repo, {
        mode: 'pull-request',
        pullRequest: pr,
        ...(file ? { change: valueOf(file, '2.0'), message: `${file} 2.0` } : {}),
      }),
    );

  test('another promotion creates the branch (and its pull request) just before this one would: this one builds on it', async () => {
    const { bare, base } = await createRepo('acme/race-create');
    const pr = { branch: 'promote/both', title: 'Promote web and api' };
    let api: PromoteResult | undefined;
    github.beforeNext('git/create-ref', async () => {
      api = await promoteFile('acme/race-create', pr, API);
    });
    const web = await promoteFile('acme/race-create', pr);
    const creates = github.requests.filter(
      (r) => r.operationId === 'git/create-ref' && r.params.repo === 'race-create',
    );
    // In order of arrival: this one's, refused because the branch was created while it waited,
    // then the other's, made meanwhile.
    expect(creates.map((r) => r.status)).toEqual([422, 201]);
    expect(api?.pullRequest).toMatchObject({ created: true });
    expect(web).toMatchObject({
      changed: true,
      attempts: 2,
      pullRequest: { number: api!.pullRequest!.number, created: false },
    });
    // One pull request whose head holds both commits, the later on the earlier: nothing lost.
    expect(github.pullRequests().filter((p) => p.repo === 'race-create')).toHaveLength(1);
    expect(await chain(bare, pr.branch)).toEqual([web.commit, api!.commit, base]);
    const { data } = await octokit.rest.pulls.get({
      owner: 'acme',
      repo: 'race-create',
      pull_number: web.pullRequest!.number,
    });
    expect(data.head.sha).toBe(web.commit);
    expect(await filesChanged(bare, base, data.head.sha)).toEqual([API, WEB]);
    expect(await server.revParse('acme/race-create')).toBe(base);
  });

  test('another promotion moves the open pull request’s branch just before this one would: this one re-applies on top', async () => {
    const { bare, base } = await createRepo('acme/race-update');
    const pr = { branch: 'promote/all', title: 'Promote' };
    const db = await promoteFile('acme/race-update', pr, DB);
    let api: PromoteResult | undefined;
    github.beforeNext('git/update-ref', async () => {
      api = await promoteFile('acme/race-update', pr, API);
    });
    const web = await promoteFile('acme/race-update', pr);
    const updates = github.requests.filter(
      (r) => r.operationId === 'git/update-ref' && r.params.repo === 'race-update',
    );
    // In order of arrival: this one's (refused: the other's landed while it waited), the other's,
    // then this one's again on top of it.
    expect(updates.map((r) => r.status)).toEqual([422, 200, 200]);
    expect(web).toMatchObject({
      changed: true,
      attempts: 2,
      pullRequest: { number: db.pullRequest!.number, created: false },
    });
    expect(api?.pullRequest).toMatchObject({ number: db.pullRequest!.number, created: false });
    expect(await chain(bare, pr.branch)).toEqual([web.commit, api!.commit, db.commit, base]);
    expect(await filesChanged(bare, base, pr.branch)).toEqual([API, DB, WEB]);
    expect(github.pullRequests().filter((p) => p.repo === 'race-update')).toHaveLength(1);
  });

  test('CLI: two promotions of different files started at once: one pull request holds both', async () => {
    const { bare, base } = await createRepo('acme/race-cli');
    const args = (file: string) => [
      '--repo',
      server.url('acme/race-cli'),
      '--mode',
      'pull-request',
      '--api-url',
      github.apiURL,
      '--pr-branch',
      'promote/cli',
      '--values-file',
      file,
      '--key',
      'image.tag',
      '--value',
      '3.0',
    ];
    const env = { GITHUB_TOKEN: TOKEN, GIT_TOKEN: '' };
    const runs = await Promise.all([cli(args(API), env), cli(args(DB), env)]);
    expect(runs.map((r) => [r.code, r.stderr])).toEqual([
      [0, ''],
      [0, ''],
    ]);
    const pulls = github.pullRequests().filter((p) => p.repo === 'race-cli');
    expect(pulls).toHaveLength(1);
    // One opened it, the other added to it (its commit on top, never forced).
    expect(runs.map((r) => r.stdout.split(' ')[0]).sort()).toEqual(['opened', 'updated']);
    expect(runs.every((r) => r.stdout.includes(`#${pulls[0]!.number} `))).toBe(true);
    expect((await chain(bare, 'promote/cli')).slice(2)).toEqual([base]);
    expect(await filesChanged(bare, base, 'promote/cli')).toEqual([API, DB]);
    for (const file of [API, DB])
      expect(await git(['show', `promote/cli:${file}`], bare)).toBe('image:\n  tag: "3.0"\n');
  });

  test('every response the stand-in gave matched GitHub’s OpenAPI description', () => {
    expect(github.violations).toEqual([]);
  });
});
