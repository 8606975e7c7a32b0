// Committing through GitHub's Git Data API instead of `git push`: blobs, then a tree on top of the
// parent's tree, then a commit with no author, committer or signature, so that GitHub signs it
// and shows it as Verified when the token is a GitHub App's (GITHUB_TOKEN included). The branch
// is then moved with `force: false`, GitHub's compare-and-swap: a 422 means it moved meanwhile.
import type { Git } from './git.ts';
import { apiMessage, describeRequestError, httpStatus, type GitHubClient, type GitHubRepo } from '../github/client.ts';

/** One path of the staged change: new content (mode and local blob id) or a deletion. */
export interface StagedPath {
  path: string;
  /** Absent for a deletion. */
  blob?: { mode: '100644' | '100755' | '120000'; sha: string };
}

export class GitHubCommitError extends Error {
  override name = 'GitHubCommitError';
}

/** The paths staged in `git`'s index that differ from HEAD (renames as delete + add). */
export async function stagedPaths(git: Git): Promise<StagedPath[]> {
  const names = (await git.run(['diff', '--cached', '--name-only', '--no-renames', '-z'])).split('\0').filter(Boolean);
  if (names.length === 0) return [];
  const present = new Map<string, StagedPath['blob']>();
  // `ls-files -s`: "<mode> <sha> <stage>\t<path>" for what the index holds.
  for (const line of (await git.run(['ls-files', '--stage', '-z', '--', ...names])).split('\0').filter(Boolean)) {
    const tab = line.indexOf('\t');
    const [mode, sha] = line.slice(0, tab).split(' ');
    if (mode !== '100644' && mode !== '100755' && mode !== '120000') {
      throw new GitHubCommitError(`cannot commit ${line.slice(tab + 1)} through the API: unsupported mode ${mode}`);
    }
    present.set(line.slice(tab + 1), { mode, sha: sha! });
  }
  return names.map((path) => {
    const blob = present.get(path);
    return blob ? { path, blob } : { path };
  });
}

/** Runs `tasks` with at most `limit` in flight (GitHub's secondary rate limits punish bursts). */
async function inBatches<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: Math.min(limit, queue.length) }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await task(item);
    }),
  );
}

/**
 * Creates on GitHub the commit that `git`'s index describes on top of `parent`, and returns its
 * sha. The tree GitHub builds is checked against the tree git computed locally, so what lands is
 * exactly what was staged. Does not move any branch.
 */
export async function createCommitViaAPI(
  octokit: GitHubClient,
  target: GitHubRepo,
  git: Git,
  parent: string,
  message: string,
): Promise<string> {
  const paths = await stagedPaths(git);
  const expectedTree = (await git.run(['write-tree'])).trim();
  const baseTree = (await git.run(['rev-parse', `${parent}^{tree}`])).trim();

  await inBatches(
    paths.filter((p) => p.blob),
    4,
    async (p) => {
      const content = Buffer.from(await git.runBuffer(['cat-file', 'blob', p.blob!.sha])).toString('base64');
      const { data } = await octokit.rest.git
        .createBlob({ ...target, content, encoding: 'base64' })
        .catch((err: unknown) => {
          throw new GitHubCommitError(describeRequestError(`uploading ${p.path}`, err));
        });
      if (data.sha !== p.blob!.sha) {
        throw new GitHubCommitError(`GitHub stored ${p.path} as blob ${data.sha}, expected ${p.blob!.sha}`);
      }
    },
  );
  const { data: tree } = await octokit.rest.git
    .createTree({
      ...target,
      base_tree: baseTree,
      tree: paths.map((p) =>
        // A null sha deletes the path from the base tree.
        p.blob ? { path: p.path, mode: p.blob.mode, type: 'blob', sha: p.blob.sha } : { path: p.path, mode: '100644', type: 'blob', sha: null },
      ),
    })
    .catch((err: unknown) => {
      throw new GitHubCommitError(describeRequestError('creating the tree', err));
    });
  if (tree.sha !== expectedTree) {
    throw new GitHubCommitError(`GitHub built tree ${tree.sha}, expected ${expectedTree}: refusing to commit it`);
  }
  // No author, committer or signature: GitHub then signs the commit as the token's app/user.
  const { data: commit } = await octokit.rest.git
    .createCommit({ ...target, message, tree: tree.sha, parents: [parent] })
    .catch((err: unknown) => {
      throw new GitHubCommitError(describeRequestError('creating the commit', err));
    });
  return commit.sha;
}

/** The outcome of moving a branch: moved, or refused because it no longer points at the parent. */
export type RefUpdate = 'updated' | 'moved-meanwhile';

/** Moves `branch` to `sha` only as a fast-forward (never forced). */
export async function fastForwardBranch(
  octokit: GitHubClient,
  target: GitHubRepo,
  branch: string,
  sha: string,
): Promise<RefUpdate> {
  try {
    await octokit.rest.git.updateRef({ ...target, ref: `heads/${branch}`, sha, force: false });
    return 'updated';
  } catch (err) {
    if (httpStatus(err) === 422 && /fast.?forward/i.test(apiMessage(err))) return 'moved-meanwhile';
    throw new GitHubCommitError(describeRequestError(`updating ${branch}`, err));
  }
}

/** Creates `branch` at `sha`; reports a race when another run created it first. */
export async function createBranch(
  octokit: GitHubClient,
  target: GitHubRepo,
  branch: string,
  sha: string,
): Promise<RefUpdate> {
  try {
    await octokit.rest.git.createRef({ ...target, ref: `refs/heads/${branch}`, sha });
    return 'updated';
  } catch (err) {
    if (httpStatus(err) === 422 && /already exists/i.test(apiMessage(err))) return 'moved-meanwhile';
    throw new GitHubCommitError(describeRequestError(`creating branch ${branch}`, err));
  }
}
