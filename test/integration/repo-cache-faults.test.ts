// The reconciler's git cache under faults, with real git against a real git server: a server that
// accepts connections and never answers, a reconcile cancelled mid-wait, and mirrors left broken by
// a crash (a mirror without its remote, a stale lock file, a corrupt HEAD); and a push's head
// fetched ahead of the resolve that names it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RepoCache, repoId } from '../../src/core/gitops/repo-cache.ts';
import { git, GitServer } from '../cluster/git-server.ts';

let work: string;
let server: GitServer;
let silent: Server;
let silentURL: string;
const sockets: Socket[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'repo-cache-faults-'));
  server = await GitServer.start();
  await server.createRepo('team/gitops', { 'apps/web/kustomization.yaml': 'resources: []\n' });
  // Accepts and holds every connection, answering nothing: a stalled git server.
  silent = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentURL = `http://127.0.0.1:${(silent.address() as { port: number }).port}/stalled.git`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => silent.close(r));
  await server.stop();
  await rm(work, { recursive: true, force: true });
});

function cache(name: string, gitTimeoutMs?: number): RepoCache {
  return new RepoCache({
    dir: join(work, name),
    refreshIntervalMs: 60_000,
    ...(gitTimeoutMs ? { gitTimeoutMs } : {}),
  });
}

describe('git deadlines', () => {
  test('a stalled server times out with a clear error, and does not hold up another repository', async () => {
    const repos = cache('stalled', 1500);
    const stalled = repos.resolve(silentURL, 'main').catch((e: Error) => e);
    // Meanwhile a healthy repository answers.
    expect(await repos.resolve(server.url('team/gitops'), 'main')).toBe(await server.revParse('team/gitops'));
    const err = await stalled;
    expect((err as Error).message).toMatch(/cannot read .*stalled\.git: git ls-remote timed out after 2 s/);
    // The per-repository lock was released: the next attempt runs (and times out) too.
    const again = await repos.resolve(silentURL, 'main', true).catch((e: Error) => e);
    expect((again as Error).message).toMatch(/timed out/);
  });

  test('a cancelled reconcile stops waiting at once', async () => {
    const repos = cache('cancelled', 60_000);
    const abort = new AbortController();
    const pending = repos.resolve(silentURL, 'main', false, abort.signal).catch((e: Error) => e);
    abort.abort(new Error('lost the lease'));
    expect(((await pending) as Error).message).toBe('lost the lease');
  });

  test('credentials that never come are a timeout, not a hang', async () => {
    const repos = new RepoCache({
      dir: join(work, 'creds'),
      refreshIntervalMs: 60_000,
      credentials: () => new Promise(() => undefined),
      credentialsTimeoutMs: 300,
    });
    await expect(repos.resolve(server.url('team/gitops'), 'main')).rejects.toThrow(
      /looking up the credentials for .* timed out/,
    );
  });
});

describe('crash-safe mirrors', () => {
  const url = () => server.url('team/gitops');
  const mirror = (name: string) => join(work, name, 'mirrors', `${repoId(url())}.git`);

  test('a mirror a crash left without its remote is made again', async () => {
    await mkdir(mirror('half-made'), { recursive: true });
    await git(['init', '--quiet', '--bare'], mirror('half-made'));
    const repos = cache('half-made');
    const commit = await repos.resolve(url(), 'main');
    expect(commit).toBe(await server.revParse('team/gitops'));
    const files = await repos.withCheckout(url(), commit, (dir) => readdir(join(dir, 'apps', 'web')));
    expect(files).toEqual(['kustomization.yaml']);
  });

  test('a lock file a killed git left behind is cleared', async () => {
    const first = cache('locked');
    const commit = await first.resolve(url(), 'main');
    await first.checkout(url(), commit);
    // A fetch killed mid-way leaves shallow.lock; without the cleanup every later fetch fails.
    await writeFile(join(mirror('locked'), 'shallow.lock'), '');
    await writeFile(join(mirror('locked'), 'config.lock'), '');
    await server.commitFiles('team/gitops', { 'apps/web/extra.yaml': 'a: 1\n' }, 'more');
    const restarted = cache('locked');
    const next = await restarted.resolve(url(), 'main');
    expect(next).not.toBe(commit);
    expect(await restarted.checkout(url(), next)).toContain(next);
  });

  test('checkouts and half-written trees and mirrors of an earlier process are removed on start', async () => {
    const dir = join(work, 'restart');
    await mkdir(join(dir, 'trees', 'old-commit'), { recursive: true });
    await writeFile(join(dir, 'trees', 'old-commit', 'big.yaml'), 'x'.repeat(1000));
    await mkdir(join(dir, 'trees', 'x.partial-1-abc'), { recursive: true });
    await mkdir(join(dir, 'mirrors', 'y.git.partial-2-def'), { recursive: true });
    const repos = new RepoCache({ dir, refreshIntervalMs: 60_000 });
    const commit = await repos.resolve(url(), 'main');
    await repos.checkout(url(), commit);
    expect(await readdir(join(dir, 'trees'))).toEqual([`${repoId(url())}-${commit}`]);
    expect((await readdir(join(dir, 'mirrors'))).filter((n) => n.includes('.partial-'))).toEqual([]);
  });

  test('a corrupt mirror is dropped and made again', async () => {
    const first = cache('corrupt');
    await first.resolve(url(), 'main');
    await writeFile(join(mirror('corrupt'), 'HEAD'), 'garbage\n');
    const restarted = cache('corrupt');
    expect(await restarted.resolve(url(), 'main')).toBe(await server.revParse('team/gitops'));
  });
});

describe('prefetch (a push names its new head)', () => {
  const posts = () =>
    server.requests.filter(
      (r) => r.repo === 'team/prefetch' && r.method === 'POST' && r.service === 'git-upload-pack',
    ).length;

  test('the pushed head is fetched and checked out ahead: the resolve after it only asks for the refs', async () => {
    await server.createRepo('team/prefetch', { 'apps/web/cm.yaml': 'v: 0\n' });
    const repos = cache('prefetch');
    const repoURL = server.url('team/prefetch');
    await repos.resolve(repoURL, 'main');
    const head = await server.commitFiles('team/prefetch', { 'apps/web/cm.yaml': 'v: 1\n' }, 'v1');
    repos.invalidate(repoURL);
    await repos.prefetch(repoURL, head);
    const before = posts();
    expect(await repos.resolve(repoURL, 'main')).toBe(head);
    const file = await repos.withCheckout(repoURL, head, (dir) =>
      readFile(join(dir, 'apps/web/cm.yaml'), 'utf8'),
    );
    expect(file).toBe('v: 1\n');
    // One POST, the ls-remote's; the commit was already here.
    expect(posts() - before).toBe(1);
  });

  test('a deleted branch (zero id) or a malformed id fetches nothing; a missing commit is left to the checkout to report', async () => {
    const repos = cache('prefetch-bad');
    const repoURL = server.url('team/prefetch');
    const before = server.requests.length;
    await repos.prefetch(repoURL, '0'.repeat(40));
    await repos.prefetch(repoURL, 'not-a-commit');
    expect(server.requests.length).toBe(before);
    const missing = 'f'.repeat(40);
    await expect(repos.prefetch(repoURL, missing)).resolves.toBeUndefined();
    await expect(repos.withCheckout(repoURL, missing, () => Promise.resolve())).rejects.toThrow(repoURL);
  });
});

describe('mirror upkeep', () => {
  test('fetches keep packs and the upkeep after every 25th repacks them; every checkout has its files', async () => {
    await server.createRepo('team/upkeep', { 'apps/web/cm.yaml': 'v: 0\n' });
    const repos = cache('upkeep');
    const repoURL = server.url('team/upkeep');
    const packDir = join(work, 'upkeep', 'mirrors', `${repoId(repoURL)}.git`, 'objects', 'pack');
    const packs = async () => (await readdir(packDir)).filter((f) => f.endsWith('.pack')).length;
    // Checked before the 25th fetch: its upkeep runs in the background and may leave the older
    // commits' objects loose (unreachable from any ref, kept until gc's prune age) while it works.
    const looseDirs = async () => (await readdir(join(packDir, '..'))).filter((d) => /^[0-9a-f]{2}$/.test(d));
    const files: string[] = [];
    for (let i = 1; i <= 25; i++) {
      const head = await server.commitFiles('team/upkeep', { 'apps/web/cm.yaml': `v: ${i}\n` }, `v${i}`);
      files.push(
        await repos.withCheckout(repoURL, head, (dir) => readFile(join(dir, 'apps/web/cm.yaml'), 'utf8')),
      );
      // A pack per fetch and no loose objects until the upkeep: fetch.unpackLimit=1, no auto-gc.
      if (i === 24) {
        expect(await packs()).toBe(24);
        expect(await looseDirs()).toEqual([]);
      }
    }
    expect(files).toEqual(Array.from({ length: 25 }, (_, i) => `v: ${i + 1}\n`));
    // The 25th fetch's upkeep runs after it, under the mirror's lock: the next git command there
    // waits for it. 25 packs are more than the 20 it allows, so they are repacked into one.
    const head = await server.commitFiles('team/upkeep', { 'apps/web/cm.yaml': 'v: 26\n' }, 'v26');
    await repos.checkout(repoURL, head);
    expect(await packs()).toBeLessThanOrEqual(2);
  });
});
