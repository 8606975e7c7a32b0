// The `render` action: read inputs, render with src/core/render, set outputs and a job summary.
import * as core from '@actions/core';
import { renderToPath, type OutputMode, type SourceType } from '../core/render/index.ts';
import { describeRender } from '../core/render/report.ts';
import { oneOf, optional } from './inputs.ts';

export async function run(): Promise<void> {
  const workspace = process.env.GITHUB_WORKSPACE ?? process.cwd();
  const mode = oneOf<OutputMode>('mode', ['files', 'stream']);
  const type = optional('type') ? oneOf<SourceType>('type', ['kustomize', 'helm', 'directory']) : undefined;
  const result = await renderToPath({
    workspace,
    path: core.getInput('path', { required: true }),
    output: core.getInput('output', { required: true }),
    mode,
    ...(type ? { type } : {}),
    images: core.getMultilineInput('images'),
    directory: { recurse: core.getBooleanInput('recurse') },
    kustomize: { allowRemoteBases: core.getBooleanInput('allow-remote-bases') },
    helm: {
      ...(optional('helm-release-name') ? { releaseName: optional('helm-release-name') } : {}),
      ...(optional('helm-namespace') ? { namespace: optional('helm-namespace') } : {}),
      valueFiles: core.getMultilineInput('helm-value-files'),
      ...(optional('helm-values') ? { values: optional('helm-values') } : {}),
      set: core.getMultilineInput('helm-set'),
      ...(optional('kube-version') ? { kubeVersion: optional('kube-version') } : {}),
      apiVersions: core.getMultilineInput('api-versions'),
      allowRepositoryAccess: core.getBooleanInput('allow-repository-access'),
    },
    dryRun: core.getBooleanInput('dry-run'),
  });

  for (const name of result.render.unmatchedImages) {
    core.warning(`image override "${name}" matched no container`);
  }
  const { plan } = result;
  core.setOutput('changed', String(result.changed));
  core.setOutput('files', JSON.stringify([...plan.added, ...plan.changed, ...plan.removed]));
  core.setOutput('objects', String(result.render.objects.length));
  core.setOutput('type', result.render.type);
  core.setOutput('manifests', plan.target);

  const report = describeRender(result);
  core.info(report.text);
  await core.summary.addHeading(report.title, 3).addTable(report.table).write();
}

run().catch((err: unknown) => core.setFailed(err instanceof Error ? err.message : String(err)));
