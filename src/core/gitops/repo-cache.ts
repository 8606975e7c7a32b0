// Git sources for the reconciler: one bare mirror per repository URL, one `git ls-remote` per
// repository per poll interval however many applications read it, and each commit's files
// materialised once (a commit never changes) for every application that renders from it.
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Git, isAuthFailure, type GitCredentials } from './git.ts';

export interface RepoCacheOptions {
  /** Where mirrors and checked-out trees live. */
  dir: string;
  /** How long a `git ls-remote` answer is reused (the poll interval). */
  refreshIntervalMs: number;
  /** Credentials for a repository URL, if it needs any. */
  credentials?: (repoURL: string) => Promise<GitCredentials | undefined>;
  /** Checked-out commits kept on disk (least recently used go first). */
  maxTrees?: number;
  /** Told of each `git ls-remote` (for metrics). */
  onLsRemote?: (repoURL: string) => void;
}

export class SourceError extends Error {
  override name = 'SourceError';
}

interface RemoteRefs {
  at: number;
  refs: Map<string, string>;
}

const SHA = /^[0-9a-f]{40}$/;

export class RepoCache {
  private readonly options: RepoCacheOptions;
  private readonly remotes = new Map<string, Promise<RemoteRefs>>();
  private readonly mirrors = new Map<string, Promise<void>>();
  private readonly trees = new Map<string, Promise<string>>();
  private readonly inUse = new Map<string, number>();
  private readonly locks = new Map<string, Promise<void>>();
  /** ls-remote calls made, per repository URL: lets tests and benchmarks count them. */
  readonly lsRemoteCalls = new Map<string, number>();

  constructor(options: RepoCacheOptions) {
    this.options = options;
  }

  /**
   * The commit `revision` (branch, tag, HEAD or a full commit id) points at. With `refresh`, asks
   * the server now (a webhook said it moved); otherwise an answer younger than the interval is reused.
   */
  async resolve(repoURL: string, revision: string, refresh = false): Promise<string> {
    const wanted = revision.trim() || 'HEAD';
    if (SHA.test(wanted)) return wanted;
    const refs = (await this.remoteRefs(repoURL, refresh)).refs;
    const candidates =
      wanted === 'HEAD'
        ? ['HEAD']
        : wanted.startsWith('refs/')
          ? [`${wanted}^{}`, wanted]
          : [`refs/heads/${wanted}`, `refs/tags/${wanted}^{}`, `refs/tags/${wanted}`];
    for (const ref of candidates) {
      const sha = refs.get(ref);
      if (sha) return sha;
    }
    if (/^[0-9a-f]{7,39}$/.test(wanted)) {
      throw new SourceError(`revision "${wanted}" looks like an abbreviated commit id: use the full 40-character id`);
    }
    throw new SourceError(`revision "${wanted}" is not a branch or tag of ${repoURL}`);
  }

  /** Drops the cached ls-remote answer so the next resolve asks the server. */
  invalidate(repoURL: string): void {
    this.remotes.delete(repoURL);
  }

  /**
   * Runs `task` with the files of `commit`, one task per commit at a time (a render may write into
   * the tree, e.g. `helm dependency build`), and never while the tree is being evicted.
   */
  async withCheckout<T>(repoURL: string, commit: string, task: (dir: string) => Promise<T>): Promise<T> {
    const key = `${repoId(repoURL)}-${commit}`;
    this.inUse.set(key, (this.inUse.get(key) ?? 0) + 1);
    try {
      const dir = await this.checkout(repoURL, commit);
      return await this.locked(`tree:${key}`, () => task(dir));
    } finally {
      const n = (this.inUse.get(key) ?? 1) - 1;
      if (n <= 0) this.inUse.delete(key);
      else this.inUse.set(key, n);
    }
  }

  /** Serializes tasks per key. */
  private locked<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return next;
  }

  /** A directory holding the files of `commit` (shared: prefer withCheckout). */
  async checkout(repoURL: string, commit: string): Promise<string> {
    if (!SHA.test(commit)) throw new SourceError(`not a commit id: "${commit}"`);
    const key = `${repoId(repoURL)}-${commit}`;
    let pending = this.trees.get(key);
    if (pending) {
      // Most recently used last.
      this.trees.delete(key);
      this.trees.set(key, pending);
      return pending;
    }
    pending = this.materialise(repoURL, commit, key);
    this.trees.set(key, pending);
    pending.catch(() => this.trees.delete(key));
    await this.evict();
    return pending;
  }

  private async git(repoURL: string): Promise<Git> {
    const credentials = await this.options.credentials?.(repoURL);
    return new Git(join(this.options.dir, 'mirrors', `${repoId(repoURL)}.git`), credentials ? { credentials } : {});
  }

  private remoteRefs(repoURL: string, refresh: boolean): Promise<RemoteRefs> {
    const cached = this.remotes.get(repoURL);
    if (cached && !refresh) {
      // A pending or recent answer serves every caller; an old one is replaced below.
      const fresh = cached.then((r) => Date.now() - r.at < this.options.refreshIntervalMs);
      return fresh.then((ok) => (ok ? cached : this.remoteRefs(repoURL, true)));
    }
    const pending = this.lsRemote(repoURL);
    this.remotes.set(repoURL, pending);
    pending.catch(() => {
      if (this.remotes.get(repoURL) === pending) this.remotes.delete(repoURL);
    });
    return pending;
  }

  private async lsRemote(repoURL: string): Promise<RemoteRefs> {
    this.lsRemoteCalls.set(repoURL, (this.lsRemoteCalls.get(repoURL) ?? 0) + 1);
    this.options.onLsRemote?.(repoURL);
    await this.ensureMirror(repoURL);
    const git = await this.git(repoURL);
    let out: string;
    try {
      // Branches, tags and HEAD only: not refs/pull/* and the like, which can number thousands.
      out = await this.locked(repoURL, () => git.run(['ls-remote', 'origin', 'HEAD', 'refs/heads/*', 'refs/tags/*']));
    } catch (err) {
      throw this.describe(repoURL, err);
    }
    const refs = new Map<string, string>();
    for (const line of out.split('\n')) {
      const [sha, ref] = line.split('\t');
      if (sha && ref) refs.set(ref, sha);
    }
    return { at: Date.now(), refs };
  }

  private describe(repoURL: string, err: unknown): SourceError {
    if (isAuthFailure(err)) {
      return new SourceError(`authentication to ${repoURL} failed: check the repository credentials`);
    }
    return new SourceError(`cannot read ${repoURL}: ${(err as Error).message}`);
  }

  private ensureMirror(repoURL: string): Promise<void> {
    let pending = this.mirrors.get(repoURL);
    if (!pending) {
      pending = (async () => {
        const dir = join(this.options.dir, 'mirrors', `${repoId(repoURL)}.git`);
        if (await exists(join(dir, 'HEAD'))) return;
        await mkdir(dir, { recursive: true });
        const git = await this.git(repoURL);
        await git.run(['init', '--quiet', '--bare']);
        await git.run(['remote', 'add', '--', 'origin', repoURL]);
      })();
      this.mirrors.set(repoURL, pending);
      pending.catch(() => this.mirrors.delete(repoURL));
    }
    return pending;
  }

  private async materialise(repoURL: string, commit: string, key: string): Promise<string> {
    const target = join(this.options.dir, 'trees', key);
    if (await exists(target)) return target;
    await this.ensureMirror(repoURL);
    const git = await this.git(repoURL);
    const have = () =>
      git.run(['cat-file', '-e', `${commit}^{commit}`]).then(
        () => true,
        () => false,
      );
    if (!(await have())) {
      try {
        // Servers (GitHub, git http-backend with protocol v2) serve any reachable commit by id.
        // One git process at a time per mirror: concurrent fetches collide on shallow.lock.
        await this.locked(repoURL, () => git.run(['fetch', '--quiet', '--depth=1', 'origin', commit]));
      } catch (err) {
        throw this.describe(repoURL, err);
      }
      if (!(await have())) throw new SourceError(`commit ${commit} is not in ${repoURL}`);
    }
    // Written aside and renamed into place, so a half-written tree is never used.
    const partial = `${target}.partial-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await mkdir(partial, { recursive: true });
    try {
      // A scratch index: the mirror is bare and shared, so its own index is never touched.
      const index = join(partial, '.git-index');
      const env = { GIT_INDEX_FILE: index };
      await git.run([`--work-tree=${partial}`, 'read-tree', commit], { env });
      await git.run([`--work-tree=${partial}`, 'checkout-index', '--all', '--force'], { env });
      await rm(index, { force: true });
      await rename(partial, target).catch(async (err: NodeJS.ErrnoException) => {
        // Another process won the race to the same commit: theirs is identical.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
        await rm(partial, { recursive: true, force: true });
      });
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      throw err;
    }
    return target;
  }

  private async evict(): Promise<void> {
    const max = this.options.maxTrees ?? 64;
    // Least recently used first, skipping trees a render holds right now.
    for (const [key, pending] of [...this.trees.entries()]) {
      if (this.trees.size <= max) break;
      if (this.inUse.has(key)) continue;
      this.trees.delete(key);
      await pending.then((dir) => rm(dir, { recursive: true, force: true })).catch(() => undefined);
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** A directory name for a repository URL: readable host/path plus a hash against collisions. */
export function repoId(repoURL: string): string {
  const hash = createHash('sha256').update(repoURL).digest('hex').slice(0, 12);
  const readable = repoURL
    .replace(/^[a-z]+:\/\//, '')
    .replace(/\.git$/, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .slice(-60);
  return `${readable}-${hash}`;
}
