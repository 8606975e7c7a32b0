// kube-actions render: the render action's engine on the command line.
import { parseArgs } from 'node:util';
import { render, renderToPath, toStream, type SourceType } from '../core/render/index.ts';
import { describeRender } from '../core/render/report.ts';

export const RENDER_USAGE = `usage: kube-actions render <path> [options]

Renders a kustomize overlay, Helm chart or plain YAML directory. Without --output the manifests
are printed to stdout as one stream.

options:
  -o, --output PATH         write here (a directory for --mode files, a file for --mode stream)
      --mode files|stream   one file per object (default) or one stream
      --type TYPE           force kustomize, helm or directory
  -i, --image SPEC          image override (repeatable): name=newName:tag, name@sha256:digest, ...
  -r, --recurse             plain directories: include subdirectories
      --release NAME        Helm release name
  -n, --namespace NS        Helm release namespace
  -f, --values FILE         Helm values file, relative to the chart (repeatable)
      --set KEY=VALUE       Helm --set (repeatable)
      --kube-version V      Kubernetes version for Helm's .Capabilities
      --api-versions V      extra API version for Helm's .Capabilities (repeatable)
      --allow-remote-bases  let kustomize fetch remote bases
      --allow-repository-access
                            let Helm fetch chart dependencies from repositories
      --workspace DIR       the root every path must stay inside (default: current directory)
      --dry-run             report what would change, write nothing
`;

export async function renderCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      mode: { type: 'string', default: 'files' },
      type: { type: 'string' },
      image: { type: 'string', short: 'i', multiple: true, default: [] },
      recurse: { type: 'boolean', short: 'r', default: false },
      release: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      values: { type: 'string', short: 'f', multiple: true, default: [] },
      set: { type: 'string', multiple: true, default: [] },
      'kube-version': { type: 'string' },
      'api-versions': { type: 'string', multiple: true, default: [] },
      'allow-remote-bases': { type: 'boolean', default: false },
      'allow-repository-access': { type: 'boolean', default: false },
      workspace: { type: 'string', default: process.cwd() },
      'dry-run': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(RENDER_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`kube-actions render: expected one source path\n\n${RENDER_USAGE}`);
    return 2;
  }
  if (values.mode !== 'files' && values.mode !== 'stream') {
    process.stderr.write(`kube-actions render: --mode must be files or stream, got "${values.mode}"\n`);
    return 2;
  }
  if (values.type !== undefined && !['kustomize', 'helm', 'directory'].includes(values.type)) {
    process.stderr.write(
      `kube-actions render: --type must be kustomize, helm or directory, got "${values.type}"\n`,
    );
    return 2;
  }
  const options = {
    workspace: values.workspace,
    path: positionals[0]!,
    ...(values.type ? { type: values.type as SourceType } : {}),
    images: values.image,
    directory: { recurse: values.recurse },
    kustomize: { allowRemoteBases: values['allow-remote-bases'] },
    helm: {
      ...(values.release ? { releaseName: values.release } : {}),
      ...(values.namespace ? { namespace: values.namespace } : {}),
      valueFiles: values.values,
      set: values.set,
      ...(values['kube-version'] ? { kubeVersion: values['kube-version'] } : {}),
      apiVersions: values['api-versions'],
      allowRepositoryAccess: values['allow-repository-access'],
    },
  };
  if (values.output === undefined) {
    const result = await render(options);
    for (const name of result.unmatchedImages)
      process.stderr.write(`warning: image override "${name}" matched no container\n`);
    process.stdout.write(toStream(result.objects));
    return 0;
  }
  const result = await renderToPath({
    ...options,
    output: values.output,
    mode: values.mode,
    dryRun: values['dry-run'],
  });
  for (const name of result.render.unmatchedImages)
    process.stderr.write(`warning: image override "${name}" matched no container\n`);
  process.stderr.write(`${describeRender(result).text}\n`);
  return 0;
}
