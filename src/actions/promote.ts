// The `promote` action: read inputs, land the change with src/core/gitops, set outputs/summary.
import * as core from '@actions/core';
import { changeFromSpec, describeChange, runTrailers } from '../core/gitops/changes.ts';
import { promote } from '../core/gitops/promote.ts';
import { optional } from './inputs.ts';

export function repositoryURL(repository: string, serverURL = 'https://github.com'): string {
  if (/^[\w.-]+\/[\w.-]+$/.test(repository)) return `${serverURL}/${repository.replace(/\.git$/, '')}.git`;
  // promote() itself refuses URLs with credentials in them.
  if (/^https?:\/\//.test(repository)) return repository;
  throw new Error(`repository must be owner/name or an https URL, got "${repository}"`);
}

export async function run(): Promise<void> {
  const token = core.getInput('token', { required: true });
  core.setSecret(token);
  const maxAttempts = Number(core.getInput('max-attempts'));
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1)
    throw new Error('input "max-attempts" must be a positive integer');
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
  const repoURL = repositoryURL(
    core.getInput('repository', { required: true }),
    process.env.GITHUB_SERVER_URL,
  );
  const trailers = runTrailers(process.env);
  if (optional('image-digest')) trailers['Image-Digest'] = core.getInput('image-digest');

  const result = await promote({
    repoURL,
    branch,
    change,
    message: optional('message') ?? `promote ${describeChange(change)}`,
    trailers,
    credentials: { username: core.getInput('username'), token },
    maxAttempts,
  });
  core.setOutput('changed', String(result.changed));
  core.setOutput('commit', result.commit);
  const what = result.changed
    ? `Pushed ${result.commit.slice(0, 12)} to ${branch} (attempt ${result.attempts})`
    : `${branch} already holds this change (${result.commit.slice(0, 12)}): nothing to commit`;
  core.info(what);
  await core.summary
    .addHeading('Promote', 3)
    .addRaw(`${describeChange(change)}: ${what}`)
    .addEOL()
    .write();
}

run().catch((err: unknown) => core.setFailed(err instanceof Error ? err.message : String(err)));
