// Landing a change in a GitOps repository, safely when many pipelines write to the same branch:
// never force; when the write is refused because the branch moved, fetch the new head, re-apply
// this change (it is path-scoped) on top of it and try again, with jittered exponential backoff.
// Nothing to change means no commit. Three ways to write: `git push` (any git host), GitHub's Git
// Data API (verified commits), or a pull request on GitHub (gated environments).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyChange, describeChange, type PromoteChange } from './changes.ts';
import type { GitError } from './git.ts';
import { Git, isAuthFailure, isPushRace, type GitCredentials } from './git.ts';
import { createBranch, createCommitViaAPI, fastForwardBranch, GitHubCommitError } from './github-commit.ts';
import { apiMessage, describeRequestError, httpStatus, type GitHubClient, type GitHubRepo } from '../github/client.ts';

export type PromoteMode = 'push' | 'api' | 'pull-request';

export interface PromoteOptions {
  /** Clone URL, used to read the branch (all modes) and to push (mode push). */
  repoURL: string;
  /** Default push. */
  mode?: PromoteMode;
  /** The same repository on GitHub, for modes api and pull-request. */
  github?: GitHubRepo & { octokit: GitHubClient };
  pullRequest?: {
    /** The pull request's head branch; by default one per target branch and changed path. */
    branch?: string;
    title?: string;
    body?: string;
    labels?: string[];
    draft?: boolean;
  };
  branch: string;
  change: PromoteChange;
  /** First line (and body) of the commit message. */
  message: string;
  /** Appended as git trailers, e.g. Source-Commit, Workflow-Run, Image-Digest. */
  trailers?: Record<string, string>;
  credentials?: GitCredentials;
  author?: { name: string; email: string };
  /** Attempts in all, including the first push (default 10). */
  maxAttempts?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  /** For tests: replaces the jittered sleep. */
  sleep?: (ms: number) => Promise<void>;
}

export interface PromoteResult {
  changed: boolean;
  /** The commit that landed (or the branch head when nothing changed). */
  commit: string;
  attempts: number;
  /** Mode pull-request: the pull request holding the change (absent when the base already had it). */
  pullRequest?: { number: number; url: string; created: boolean };
}

export class PromoteError extends Error {
  override name = 'PromoteError';
}

export function commitMessage(message: string, trailers: Record<string, string> = {}): string {
  const lines = Object.entries(trailers)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => {
      if (!/^[A-Za-z][A-Za-z0-9-]*$/.test(k)) throw new PromoteError(`invalid trailer name "${k}"`);
      return `${k}: ${v.replace(/\s*\n\s*/g, ' ')}`;
    });
  return lines.length ? `${message.trimEnd()}\n\n${lines.join('\n')}\n` : `${message.trimEnd()}\n`;
}

/** Refuses URLs that carry credentials: git would store them in .git/config and echo them. */
export function assertNoCredentialsInURL(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    return; // scp-like or local paths carry no HTTP credentials
  }
  if (parsed.username || parsed.password) {
    throw new PromoteError('the repository URL must not contain credentials: pass the token separately');
  }
}

export async function promote(options: PromoteOptions): Promise<PromoteResult> {
  assertNoCredentialsInURL(options.repoURL);
  const mode = options.mode ?? 'push';
  if (mode !== 'push' && !options.github) {
    throw new PromoteError(`mode "${mode}" needs a GitHub repository and API client`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'kube-actions-promote-'));
  const git = new Git(dir, {
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.author ? { author: options.author } : {}),
  });
  try {
    await git.run(['init', '--quiet']);
    // The URL is stored without credentials; they travel in the environment only.
    await git.run(['remote', 'add', 'origin', options.repoURL]);
    const checkout = new Checkout(git, options);
    if (mode === 'pull-request') return await promoteByPullRequest(checkout, options);
    return await retryOnRace(options, () => options.branch, async (attempt) => {
      const head = await checkout.fetch(options.branch);
      if (head === undefined) throw new PromoteError(`branch ${options.branch} does not exist in ${options.repoURL}`);
      if (!(await checkout.stage(head))) return { changed: false, commit: head, attempts: attempt };
      const message = commitMessage(options.message, options.trailers);
      if (mode === 'api') {
        const { octokit, owner, repo } = options.github!;
        const sha = await createCommitViaAPI(octokit, { owner, repo }, git, head, message);
        if ((await fastForwardBranch(octokit, { owner, repo }, options.branch, sha)) === 'moved-meanwhile') return RACE;
        return { changed: true, commit: sha, attempts: attempt };
      }
      await git.run(['commit', '--quiet', '--file=-'], { input: message });
      try {
        // No --force, ever: a refused push means someone else landed first.
        await git.run(['push', '--quiet', 'origin', `HEAD:refs/heads/${options.branch}`]);
      } catch (err) {
        if (isAuthFailure(err)) {
          throw new PromoteError(`authentication to ${options.repoURL} failed on push: check that the token may push to ${options.branch}`);
        }
        if (isPushRace(err)) return RACE;
        throw new PromoteError(`push to ${options.branch} failed: ${(err as GitError).message}`);
      }
      return { changed: true, commit: (await git.run(['rev-parse', 'HEAD'])).trim(), attempts: attempt };
    });
  } catch (err) {
    if (err instanceof GitHubCommitError) throw new PromoteError(err.message);
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Returned by an attempt whose write was refused because the branch moved: try again. */
const RACE = Symbol('race');

/**
 * Runs `attempt` until it lands or the attempts run out. `moving` names the branch whose moves
 * refused the writes (the target branch, or a pull request's own branch), for the final error.
 */
async function retryOnRace(
  options: PromoteOptions,
  moving: () => string,
  attempt: (n: number) => Promise<PromoteResult | typeof RACE>,
): Promise<PromoteResult> {
  const maxAttempts = options.maxAttempts ?? 10;
  const initial = options.backoff?.initialMs ?? 250;
  const cap = options.backoff?.maxMs ?? 8000;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let n = 1; ; n++) {
    const result = await attempt(n);
    if (result !== RACE) return result;
    if (n >= maxAttempts) {
      throw new PromoteError(
        `${moving()} kept moving: gave up after ${n} attempts to land ${describeChange(options.change)}`,
      );
    }
    // Full jitter: concurrent pipelines that collided spread out instead of colliding again.
    await sleep(Math.random() * Math.min(cap, initial * 2 ** (n - 1)));
  }
}

/** The local scratch checkout: fetches a branch's head and stages the change on top of it. */
class Checkout {
  readonly git: Git;
  private readonly options: PromoteOptions;

  constructor(git: Git, options: PromoteOptions) {
    this.git = git;
    this.options = options;
  }

  /** The head of `branch` on the remote, fetched shallowly; undefined when there is no such branch. */
  async fetch(branch: string): Promise<string | undefined> {
    const tracking = `refs/remotes/origin/${branch}`;
    try {
      const listed = await this.git.run(['ls-remote', '--heads', 'origin', `refs/heads/${branch}`]);
      if (listed.trim() === '') return undefined;
      // `+`: a shallow fetch cannot prove the tracking ref moved forward, so the local tracking
      // ref is replaced outright. (Only this local ref: pushes are never forced.)
      await this.git.run(['fetch', '--quiet', '--depth=1', 'origin', `+refs/heads/${branch}:${tracking}`]);
    } catch (err) {
      if (isAuthFailure(err)) {
        throw new PromoteError(
          `authentication to ${this.options.repoURL} failed: check that the token is valid and may read and push to the repository`,
        );
      }
      throw new PromoteError(`cannot fetch ${branch} from ${this.options.repoURL}: ${(err as Error).message}`);
    }
    return (await this.git.run(['rev-parse', tracking])).trim();
  }

  /** Checks out `commit`, applies the change and stages it; false when it changes nothing. */
  async stage(commit: string): Promise<boolean> {
    await this.git.run(['checkout', '--quiet', '--force', '--detach', commit]);
    await this.git.run(['clean', '--quiet', '-ffdx']);
    await applyChange(this.git.cwd, this.options.change);
    await this.git.run(['add', '--all']);
    return (await this.git.run(['diff', '--cached', '--name-only'])).trim() !== '';
  }
}

/** The branch a promotion's pull request comes from: one per target branch and changed path. */
export function pullRequestBranch(branch: string, change: PromoteChange): string {
  const path = change.type === 'manifests' ? change.path : change.file;
  const slug = `${branch}/${path}`
    .toLowerCase()
    .replace(/[^a-z0-9/._-]+/g, '-')
    .replace(/\.+/g, '.')
    .replace(/\/+/g, '/')
    .replace(/(^|\/)[.-]+|[.-]+($|\/)/g, '$1$2')
    .replace(/\.lock($|\/)/g, '-lock$1');
  return `kube-actions/promote/${slug}`;
}

/**
 * Gated environments: land the change on the promotion's own branch and open (or update) a pull
 * request into `branch`. The branch only ever moves forward from the head that was read (a
 * fast-forward, refused when it moved meanwhile, then retried on the new head), so concurrent
 * promotions sharing it stack up and none is lost. A branch is never reset: one left by a closed or
 * merged pull request (still at that pull request's head) is passed over for the next generation
 * of the name (`<branch>-2`, `-3`, ...), and a branch without any pull request yet is a concurrent
 * promotion's, which this one builds on.
 */
async function promoteByPullRequest(checkout: Checkout, options: PromoteOptions): Promise<PromoteResult> {
  const { octokit, owner, repo } = options.github!;
  const target = { owner, repo };
  const pr = options.pullRequest ?? {};
  const name = pr.branch ?? pullRequestBranch(options.branch, options.change);
  if (name === options.branch) throw new PromoteError('the pull request branch must differ from the target branch');
  const title = pr.title ?? options.message.split('\n')[0]!;

  // For the give-up error: in this mode the writes that are refused go to the pull request's
  // branch (the base is never written), so that is the branch that kept moving.
  let lastHead = name;
  return retryOnRace(options, () => `pull request branch ${lastHead}`, async (attempt) => {
    const base = await checkout.fetch(options.branch);
    if (base === undefined) throw new PromoteError(`branch ${options.branch} does not exist in ${options.repoURL}`);
    const { head, headSha, open } = await livePullRequestBranch(octokit, target, checkout, name, options.branch);
    lastHead = head;
    // Build on the live branch (an open pull request's, or a concurrent promotion's); a new one
    // starts from the base.
    const start = headSha ?? base;
    let commit = start;
    let changed = false;
    if (await checkout.stage(start)) {
      commit = await createCommitViaAPI(octokit, target, checkout.git, start, commitMessage(options.message, options.trailers));
      changed = true;
    } else if (headSha === undefined) {
      // The base already holds the change: nothing to propose.
      return { changed: false, commit: base, attempts: attempt };
    }
    if (changed) {
      const moved =
        headSha === undefined
          ? await createBranch(octokit, target, head, commit)
          : await fastForwardBranch(octokit, target, head, commit);
      if (moved === 'moved-meanwhile') return RACE;
    }
    const pull = await ensurePullRequest(octokit, target, { head, base: options.branch, title, body: pr.body, draft: pr.draft, labels: pr.labels, existing: open });
    return { changed, commit, attempts: attempt, pullRequest: pull };
  });
}

/** Generations of one pull-request branch name tried before giving up. */
const MAX_BRANCH_GENERATIONS = 50;

/**
 * The branch this promotion lands on: the first generation of `name` that has an open pull
 * request, does not exist, or exists without any pull request (a concurrent promotion's, whose
 * pull request is on its way). Generations a closed or merged pull request left behind (the
 * branch still at that pull request's head) are passed over, never reset.
 */
async function livePullRequestBranch(
  octokit: GitHubClient,
  target: GitHubRepo,
  checkout: Checkout,
  name: string,
  base: string,
): Promise<{ head: string; headSha: string | undefined; open: { number: number; url: string } | undefined }> {
  for (let generation = 1; generation <= MAX_BRANCH_GENERATIONS; generation++) {
    const head = generation === 1 ? name : `${name}-${generation}`;
    const open = await findOpenPullRequest(octokit, target, head, base);
    const headSha = await checkout.fetch(head);
    if (open || headSha === undefined) return { head, headSha, open };
    const { data: closed } = await octokit.rest.pulls
      .list({ ...target, head: `${target.owner}:${head}`, base, state: 'closed', per_page: 100 })
      .catch((err: unknown) => {
        throw new PromoteError(describeRequestError('listing closed pull requests', err));
      });
    if (!closed.some((p) => p.head.sha === headSha)) return { head, headSha, open };
  }
  throw new PromoteError(
    `${name} and its next ${MAX_BRANCH_GENERATIONS - 1} generations are all left by closed pull requests: delete them`,
  );
}

interface PullRequestRef {
  number: number;
  url: string;
  created: boolean;
}

async function findOpenPullRequest(
  octokit: GitHubClient,
  target: GitHubRepo,
  head: string,
  base: string,
): Promise<{ number: number; url: string } | undefined> {
  const { data } = await octokit.rest.pulls
    .list({ ...target, head: `${target.owner}:${head}`, base, state: 'open', per_page: 10 })
    .catch((err: unknown) => {
      throw new PromoteError(describeRequestError('listing pull requests', err));
    });
  const found = data[0];
  return found ? { number: found.number, url: found.html_url } : undefined;
}

async function ensurePullRequest(
  octokit: GitHubClient,
  target: GitHubRepo,
  want: {
    head: string;
    base: string;
    title: string;
    body: string | undefined;
    draft: boolean | undefined;
    labels: string[] | undefined;
    existing: { number: number; url: string } | undefined;
  },
): Promise<PullRequestRef> {
  let pull: PullRequestRef;
  if (want.existing) {
    await octokit.rest.pulls
      .update({ ...target, pull_number: want.existing.number, title: want.title, ...(want.body !== undefined ? { body: want.body } : {}) })
      .catch((err: unknown) => {
        throw new PromoteError(describeRequestError(`updating pull request #${want.existing!.number}`, err));
      });
    pull = { ...want.existing, created: false };
  } else {
    try {
      const { data } = await octokit.rest.pulls.create({
        ...target,
        head: want.head,
        base: want.base,
        title: want.title,
        ...(want.body !== undefined ? { body: want.body } : {}),
        ...(want.draft ? { draft: true } : {}),
      });
      pull = { number: data.number, url: data.html_url, created: true };
    } catch (err) {
      // Another run opened it between our lookup and now: use theirs.
      const raced = httpStatus(err) === 422 && /already exists/i.test(apiMessage(err));
      const existing = raced ? await findOpenPullRequest(octokit, target, want.head, want.base) : undefined;
      if (!existing) throw new PromoteError(describeRequestError('opening the pull request', err));
      pull = { ...existing, created: false };
    }
  }
  if (want.labels?.length) {
    await octokit.rest.issues.addLabels({ ...target, issue_number: pull.number, labels: want.labels }).catch((err: unknown) => {
      throw new PromoteError(describeRequestError(`labelling pull request #${pull.number}`, err));
    });
  }
  return pull;
}
