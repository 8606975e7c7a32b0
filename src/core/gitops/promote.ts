// Landing a change in a GitOps repository over plain git, safely when many pipelines push to the
// same branch: never force-push; when the push is refused because the branch moved, fetch the
// new head, re-apply this change (it is path-scoped) on top of it and push again, with jittered
// exponential backoff. Nothing to change means no commit.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyChange, describeChange, type PromoteChange } from './changes.ts';
import type { GitError} from './git.ts';
import { Git, isAuthFailure, isPushRace, type GitCredentials } from './git.ts';

export interface PromoteOptions {
  repoURL: string;
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
  const maxAttempts = options.maxAttempts ?? 10;
  const initial = options.backoff?.initialMs ?? 250;
  const cap = options.backoff?.maxMs ?? 8000;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const ref = `refs/heads/${options.branch}`;
  const dir = await mkdtemp(join(tmpdir(), 'kube-actions-promote-'));
  const git = new Git(dir, {
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.author ? { author: options.author } : {}),
  });
  try {
    await git.run(['init', '--quiet']);
    // The URL is stored without credentials; they travel in the environment only.
    await git.run(['remote', 'add', 'origin', options.repoURL]);
    for (let attempt = 1; ; attempt++) {
      try {
        // `+`: a shallow fetch cannot prove the tracking ref moved forward, so the local
        // tracking ref is replaced outright. (Only this local ref: pushes are never forced.)
        await git.run(['fetch', '--quiet', '--depth=1', 'origin', `+${ref}:refs/remotes/origin/${options.branch}`]);
      } catch (err) {
        if (isAuthFailure(err)) {
          throw new PromoteError(
            `authentication to ${options.repoURL} failed: check that the token is valid and may read and push to the repository`,
          );
        }
        throw new PromoteError(`cannot fetch ${options.branch} from ${options.repoURL}: ${(err as Error).message}`);
      }
      await git.run(['checkout', '--quiet', '--force', '-B', options.branch, `refs/remotes/origin/${options.branch}`]);
      await applyChange(dir, options.change);
      await git.run(['add', '--all']);
      const staged = await git.run(['diff', '--cached', '--name-only']);
      if (staged.trim() === '') {
        return { changed: false, commit: (await git.run(['rev-parse', 'HEAD'])).trim(), attempts: attempt };
      }
      await git.run(['commit', '--quiet', '--file=-'], { input: commitMessage(options.message, options.trailers) });
      try {
        // No --force, ever: a refused push means someone else landed first.
        await git.run(['push', '--quiet', 'origin', `HEAD:${ref}`]);
        return { changed: true, commit: (await git.run(['rev-parse', 'HEAD'])).trim(), attempts: attempt };
      } catch (err) {
        if (isAuthFailure(err)) {
          throw new PromoteError(`authentication to ${options.repoURL} failed on push: check that the token may push to ${options.branch}`);
        }
        if (!isPushRace(err)) throw new PromoteError(`push to ${options.branch} failed: ${(err as GitError).message}`);
        if (attempt >= maxAttempts) {
          throw new PromoteError(
            `${options.branch} kept moving: gave up after ${attempt} attempts to land ${describeChange(options.change)}`,
          );
        }
        // Full jitter: concurrent pipelines that collided spread out instead of colliding again.
        await sleep(Math.random() * Math.min(cap, initial * 2 ** (attempt - 1)));
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
