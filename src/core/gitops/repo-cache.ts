// Git sources for the reconciler: one bare mirror per repository URL, one `git ls-remote` per
// repository per poll interval however many applications read it, and each commit's files
// materialised once (a commit never changes) for every application that renders from it.
import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { abortable, withDeadline } from '../abort.ts';
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
  /** How long one git command may take (default 90 s, as Argo CD). */
  gitTimeoutMs?: number;
  /** How long looking up a repository's credentials may take (default 30 s). */
  credentialsTimeoutMs?: number;
}

export class SourceError extends Error {
  override name = 'SourceError';
}

interface RemoteRefs {
  at: number;
  refs: Map<string, string>;
}

const SHA = /^[0-9a-f]{40}$/;

/**
 * A commit's objects, with nothing else git does by default on the way: no tags, no FETCH_HEAD,
 * no upkeep after it (maintainEvery runs that), the objects kept as the pack they came in.
 */
const FETCH = [
  '-c',
  'fetch.unpackLimit=1',
  'fetch',
  '--quiet',
  '--depth=1',
  '--no-tags',
  '--no-write-fetch-head',
  '--no-auto-maintenance',
  'origin',
];
const MAINTENANCE_EVERY = 25;

export class RepoCache {
  private readonly options: RepoCacheOptions;
  private readonly remotes = new Map<string, Promise<RemoteRefs>>();
  private readonly mirrors = new Map<string, Promise<void>>();
  private readonly trees = new Map<string, Promise<string>>();
  private readonly inUse = new Map<string, number>();
  private readonly locks = new Map<string, Promise<void>>();
  /** Fetches per repository URL since the last upkeep (maintainEvery). */
  private readonly fetches = new Map<string, number>();
  /** ls-remote calls made, per repository URL: lets tests and benchmarks count them. */
  readonly lsRemoteCalls = new Map<string, number>();

  private started: Promise<void> | undefined;

  constructor(options: RepoCacheOptions) {
    this.options = options;
  }

  /**
   * Once, before the first git command: trees an earlier process checked out are no longer
   * tracked (so never evicted) and go, with the half-written `.partial-*` trees and mirrors a
   * crash left behind. Mirrors themselves are kept: they save the next fetch.
   */
  private start(): Promise<void> {
    this.started ??= (async () => {
      await rm(join(this.options.dir, 'trees'), { recursive: true, force: true });
      const mirrors = join(this.options.dir, 'mirrors');
      for (const name of await readdir(mirrors).catch(() => [] as string[])) {
        if (name.includes('.partial-')) await rm(join(mirrors, name), { recursive: true, force: true });
      }
    })();
    return this.started;
  }

  /**
   * The commit `revision` (branch, tag, HEAD or a full commit id) points at. With `refresh`, asks
   * the server now (a webhook said it moved); otherwise an answer younger than the interval is reused.
   */
  async resolve(repoURL: string, revision: string, refresh = false, signal?: AbortSignal): Promise<string> {
    const wanted = revision.trim() || 'HEAD';
    if (SHA.test(wanted)) return wanted;
    // One ls-remote serves every caller: a caller that is cancelled stops waiting, the others go on.
    const refs = (await abortable(this.remoteRefs(repoURL, refresh), signal)).refs;
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

  /**
   * Starts fetching and checking out `commit` before anyone asks for it: a push's new head, which
   * the resolve that follows the push will most likely name. The fetch then runs beside that
   * resolve's ls-remote instead of after it, and the checkout finds the tree ready or on its way.
   * Resolves when done; never rejects (a failure is the later checkout's to report).
   */
  prefetch(repoURL: string, commit: string): Promise<void> {
    if (!SHA.test(commit) || /^0+$/.test(commit)) return Promise.resolve();
    return this.checkout(repoURL, commit).then(
      () => undefined,
      () => undefined,
    );
  }

  /** Drops the cached ls-remote answer so the next resolve asks the server. */
  invalidate(repoURL: string): void {
    this.remotes.delete(repoURL);
  }

  /**
   * Runs `task` with the files of `commit`, one task per commit at a time (a render may write into
   * the tree, e.g. `helm dependency build`), and never while the tree is being evicted.
   */
  async withCheckout<T>(
    repoURL: string,
    commit: string,
    task: (dir: string) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const key = `${repoId(repoURL)}-${commit}`;
    this.inUse.set(key, (this.inUse.get(key) ?? 0) + 1);
    try {
      const dir = await abortable(this.checkout(repoURL, commit), signal);
      return await this.locked(`tree:${key}`, () => task(dir), signal);
    } finally {
      const n = (this.inUse.get(key) ?? 1) - 1;
      if (n <= 0) this.inUse.delete(key);
      else this.inUse.set(key, n);
    }
  }

  /** Serializes tasks per key; a caller cancelled while it waits never runs its task. */
  private locked<T>(key: string, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const guarded = () => {
      signal?.throwIfAborted();
      return task();
    };
    const next = previous.then(guarded, guarded);
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

  private mirrorDir(repoURL: string): string {
    return join(this.options.dir, 'mirrors', `${repoId(repoURL)}.git`);
  }

  private async git(repoURL: string, dir = this.mirrorDir(repoURL)): Promise<Git> {
    const lookup = this.options.credentials?.(repoURL);
    const credentials = lookup
      ? await withDeadline(
          lookup,
          this.options.credentialsTimeoutMs ?? 30_000,
          () => new SourceError(`looking up the credentials for ${repoURL} timed out`),
        )
      : undefined;
    return new Git(dir, {
      ...(credentials ? { credentials } : {}),
      ...(this.options.gitTimeoutMs ? { timeoutMs: this.options.gitTimeoutMs } : {}),
    });
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
      // Not under the mirror's lock: ls-remote writes nothing, so it need not wait for a fetch.
      out = await this.locked(`ls-remote:${repoURL}`, () =>
        git.run(['ls-remote', 'origin', 'HEAD', 'refs/heads/*', 'refs/tags/*']),
      );
    } catch (err) {
      await this.forgetIfCorrupt(repoURL, err);
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

  /**
   * The bare mirror, made crash-safe: created aside and renamed into place (a kill between `init`
   * and `remote add` leaves only a temporary directory), lock files a killed git left behind are
   * cleared before first use (this process serialises its own git commands per mirror), and a
   * mirror whose origin is missing or wrong is made again.
   */
  private ensureMirror(repoURL: string): Promise<void> {
    let pending = this.mirrors.get(repoURL);
    if (!pending) {
      pending = (async () => {
        await this.start();
        const dir = this.mirrorDir(repoURL);
        if (await exists(join(dir, 'HEAD'))) {
          const origin = await (await this.git(repoURL))
            .run(['config', '--get', 'remote.origin.url'])
            .then((o) => o.trim(), () => '');
          if (origin === repoURL) {
            await removeStaleLocks(dir);
            return;
          }
        }
        await rm(dir, { recursive: true, force: true });
        await mkdir(join(this.options.dir, 'mirrors'), { recursive: true });
        const partial = `${dir}.partial-${process.pid}-${Math.random().toString(36).slice(2)}`;
        await mkdir(partial);
        try {
          const git = await this.git(repoURL, partial);
          await git.run(['init', '--quiet', '--bare']);
          await git.run(['remote', 'add', '--', 'origin', repoURL]);
          await rename(partial, dir);
        } catch (err) {
          await rm(partial, { recursive: true, force: true });
          throw err;
        }
      })();
      this.mirrors.set(repoURL, pending);
      pending.catch(() => this.mirrors.delete(repoURL));
    }
    return pending;
  }

  /** A mirror git cannot read any more is dropped, so the next attempt makes it again. */
  private async forgetIfCorrupt(repoURL: string, err: unknown): Promise<void> {
    const text = `${(err as Error).message} ${(err as { stderr?: string }).stderr ?? ''}`;
    if (!/not a git repository|bad object|corrupt|loose object .* is corrupt|unable to read|does not appear to be a git repository/i.test(text)) {
      return;
    }
    this.mirrors.delete(repoURL);
    await rm(this.mirrorDir(repoURL), { recursive: true, force: true });
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
        await this.locked(repoURL, () => git.run(FETCH.concat(commit)));
      } catch (err) {
        await this.forgetIfCorrupt(repoURL, err);
        throw this.describe(repoURL, err);
      }
      this.maintainEvery(repoURL, git);
    }
    // Written aside and renamed into place, so a half-written tree is never used.
    const partial = `${target}.partial-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await mkdir(partial, { recursive: true });
    try {
      // A scratch index: the mirror is bare and shared, so its own index is never touched.
      // read-tree -u writes the files as it reads the tree: one git process, not two.
      const index = join(partial, '.git-index');
      await git
        .run([`--work-tree=${partial}`, 'read-tree', '--reset', '-u', commit], { env: { GIT_INDEX_FILE: index } })
        .catch(async (err: unknown) => {
          throw (await have()) ? err : new SourceError(`commit ${commit} is not in ${repoURL}`);
        });
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

  /**
   * The upkeep `git fetch` would otherwise start after every fetch (`maintenance run --auto`: one
   * more process on a push's way to the cluster), run every MAINTENANCE_EVERY fetches instead,
   * after the fetch has answered, under the mirror's lock. Fetches keep what they get as a pack
   * (fetch.unpackLimit=1: one index-pack, no loose objects), so the packs it gathers are what
   * the upkeep finds to consolidate (more than 20 and it repacks them into one).
   */
  private maintainEvery(repoURL: string, git: Git): void {
    const n = (this.fetches.get(repoURL) ?? 0) + 1;
    this.fetches.set(repoURL, n);
    if (n % MAINTENANCE_EVERY !== 0) return;
    void this.locked(repoURL, () =>
      git.run(['-c', 'gc.autoDetach=false', '-c', 'gc.autoPackLimit=20', 'maintenance', 'run', '--auto', '--quiet']),
    ).catch(() => undefined);
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

/**
 * Lock files git leaves when it is killed mid-command (shallow.lock, config.lock, packed-refs.lock,
 * refs/heads/x.lock). Objects are written under temporary names, never locked: that tree is skipped.
 */
async function removeStaleLocks(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isFile() && entry.name.endsWith('.lock')) await rm(path, { force: true });
    else if (entry.isDirectory() && entry.name !== 'objects') await removeStaleLocks(path);
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
