// The `promote` action: read inputs, land the change with src/core/gitops, set outputs/summary.
import * as core from '@actions/core';
import { createGitHubClient, parseRepository } from '../core/github/client.ts';
import { changeFromSpec, describeChange, runTrailers } from '../core/gitops/changes.ts';
import { promote, type PromoteMode, type PromoteResult } from '../core/gitops/promote.ts';
import { oneOf, optional } from './inputs.ts';

export function repositoryURL(repository: string, serverURL = 'https://github.com'): string {
  if (/^[\w.-]+\/[\w.-]+$/.test(repository)) return `${serverURL}/${repository.replace(/\.git$/, '')}.git`;
  // promote() itself refuses URLs with credentials in them.
  if (/^https?:\/\//.test(repository)) return repository;
  throw new Error(`repository must be owner/name or an https URL, got "${repository}"`);
}

function describeResult(result: PromoteResult, mode: PromoteMode, branch: string): string {
  const sha = result.commit.slice(0, 12);
  if (mode === 'pull-request') {
    if (!result.pullRequest) return `${branch} already holds this change (${sha}): no pull request needed`;
    const verb = result.pullRequest.created ? 'Opened' : result.changed ? 'Updated' : 'Kept';
    return `${verb} pull request #${result.pullRequest.number} (${result.pullRequest.url}) at ${sha}`;
  }
  return result.changed
    ? `${mode === 'api' ? 'Committed (Git Data API)' : 'Pushed'} ${sha} to ${branch} (attempt ${result.attempts})`
    : `${branch} already holds this change (${sha}): nothing to commit`;
}

export async function run(): Promise<void> {
  const token = core.getInput('token', { required: true });
  core.setSecret(token);
  const mode = oneOf('mode', ['push', 'api', 'pull-request'] as const);
  const maxAttempts = Number(core.getInput('max-attempts'));
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1)
    throw new Error('input "max-attempts" must be a positive integer');
  const repository = core.getInput('repository', { required: true });
  const repoURL = repositoryURL(repository, process.env.GITHUB_SERVER_URL);
  const github =
    mode === 'push'
      ? undefined
      : {
          ...parseRepository(repository),
          octokit: createGitHubClient({ token, apiURL: process.env.GITHUB_API_URL }),
        };
  const change = await changeFromSpec({
    workspace: process.env.GITHUB_WORKSPACE ?? process.cwd(),
    ...(optional('manifests-from') ? { manifestsFrom: optional('manifests-from') } : {}),
    ...(optional('path') ? { path: optional('path') } : {}),
    ...(optional('kustomization') ? { kustomization: optional('kustomization') } : {}),
    ...(optional('image') ? { image: optional('image') } : {}),
    ...(optional('values-file') ? { valuesFile: optional('values-file') } : {}),
    ...(optional('key') ? { key: optional('key') } : {}),
    ...(optional('values-file') ? { value: core.getInput('value') } : {}),
  });
  const branch = core.getInput('branch');
  const trailers = runTrailers(process.env);
  if (optional('image-digest')) trailers['Image-Digest'] = core.getInput('image-digest');
  const labels = core
    .getInput('pull-request-labels')
    .split(/[,\n]/)
    .map((l) => l.trim())
    .filter(Boolean);

  const result = await promote({
    repoURL,
    mode,
    ...(github ? { github } : {}),
    branch,
    change,
    message: optional('message') ?? `promote ${describeChange(change)}`,
    trailers,
    credentials: { username: core.getInput('username'), token },
    maxAttempts,
    pullRequest: {
      ...(optional('pull-request-branch') ? { branch: optional('pull-request-branch') } : {}),
      ...(optional('pull-request-title') ? { title: optional('pull-request-title') } : {}),
      ...(optional('pull-request-body') ? { body: optional('pull-request-body') } : {}),
      labels,
      draft: core.getBooleanInput('pull-request-draft'),
    },
  });
  core.setOutput('changed', String(result.changed));
  core.setOutput('commit', result.commit);
  core.setOutput('pull-request-url', result.pullRequest?.url ?? '');
  core.setOutput('pull-request-number', result.pullRequest ? String(result.pullRequest.number) : '');
  const what = describeResult(result, mode, branch);
  core.info(what);
  await core.summary
    .addHeading('Promote', 3)
    .addRaw(`${describeChange(change)}: ${what}`)
    .addEOL()
    .write();
}

run().catch((err: unknown) => core.setFailed(err instanceof Error ? err.message : String(err)));
