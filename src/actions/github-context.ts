// The GitHub context an action runs in, read the way the runner hands it over: GITHUB_* variables
// and the event payload at GITHUB_EVENT_PATH.
import { readFileSync } from 'node:fs';
import type { GitHubContext } from '../core/image/metadata.ts';

interface EventPayload {
  pull_request?: { number?: number; head?: { ref?: string }; base?: { ref?: string } };
  number?: number;
  repository?: { default_branch?: string };
  head_commit?: { timestamp?: string };
  base_ref?: string | null;
}

export function githubContext(env: NodeJS.ProcessEnv = process.env): GitHubContext {
  let payload: EventPayload = {};
  if (env.GITHUB_EVENT_PATH) {
    try {
      payload = JSON.parse(readFileSync(env.GITHUB_EVENT_PATH, 'utf8')) as EventPayload;
    } catch {
      // act and local runs may point at no file; the variables still say enough.
    }
  }
  const prNumber = payload.pull_request?.number ?? payload.number;
  const headRef = env.GITHUB_HEAD_REF || payload.pull_request?.head?.ref;
  const baseRef = env.GITHUB_BASE_REF || payload.pull_request?.base?.ref || payload.base_ref || undefined;
  const commitTime = payload.head_commit?.timestamp ? new Date(payload.head_commit.timestamp) : undefined;
  return {
    eventName: env.GITHUB_EVENT_NAME ?? 'push',
    ref: env.GITHUB_REF ?? '',
    sha: env.GITHUB_SHA ?? '',
    repository: env.GITHUB_REPOSITORY ?? '',
    ...(env.GITHUB_SERVER_URL ? { serverUrl: env.GITHUB_SERVER_URL } : {}),
    ...(headRef ? { headRef } : {}),
    ...(baseRef ? { baseRef } : {}),
    ...(prNumber !== undefined ? { prNumber } : {}),
    ...(payload.repository?.default_branch ? { defaultBranch: payload.repository.default_branch } : {}),
    ...(commitTime && !Number.isNaN(commitTime.getTime()) ? { commitTime } : {}),
    ...(env.GITHUB_RUN_NUMBER ? { runNumber: Number(env.GITHUB_RUN_NUMBER) } : {}),
  };
}
