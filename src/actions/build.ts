// The `build` action: read inputs, compute tags and labels (metadata-action's rules), build and
// push with src/core/image, set outputs and a job summary.
import * as core from '@actions/core';
import { buildImage, resolveSourceDateEpoch, type BuildResult } from '../core/image/build.ts';
import { parseSecrets, serveCredentialHelper } from '../core/image/buildkit.ts';
import { parseLayerSpec } from '../core/image/layer.ts';
import { parsePlatform } from '../core/image/platform.ts';
import { computeMetadata, normalizeImageName } from '../core/image/metadata.ts';
import { parseReference } from '../core/image/reference.ts';
import { githubContext } from './github-context.ts';
import { oneOf, optional } from './inputs.ts';

/** Lines of a multiline input, also split on commas where a list reads naturally that way. */
function list(name: string, commas = false): string[] {
  return core
    .getMultilineInput(name)
    .flatMap((l) => (commas ? l.split(',') : [l]))
    .map((l) => l.trim())
    .filter(Boolean);
}

/** A JSON array, or one argument per line. */
function argv(name: string): string[] | undefined {
  const raw = core.getInput(name);
  if (!raw.trim()) return undefined;
  if (raw.trim().startsWith('[')) {
    const parsed: unknown = JSON.parse(raw);
    if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) {
      throw new Error(`input "${name}" must be a JSON array of strings or one argument per line`);
    }
    return parsed;
  }
  return core.getMultilineInput(name);
}

export function summaryRows(result: BuildResult): string[][] {
  const rows = [
    ['Digest', result.digest || '(not pushed)'],
    ['Tags', result.tags.join('<br>') || '(none)'],
    ['Platforms', result.platforms.join(', ') || '(builder default)'],
  ];
  if (result.stats) {
    const s = result.stats;
    rows.push([
      'Blobs',
      `${s.uploaded} uploaded (${s.bytesUploaded} bytes), ${s.skipped} already there, ${s.mounted} mounted`,
    ]);
  }
  for (const l of result.layers)
    rows.push(['Layer', `${l.digest.slice(0, 19)} ${l.size} bytes: ${l.description}`]);
  return rows;
}

export async function run(): Promise<void> {
  const workspace = process.env.GITHUB_WORKSPACE ?? process.cwd();
  const password = core.getInput('password');
  if (password) core.setSecret(password);
  const images = list('images', true);
  if (!images.length) throw new Error('input "images" is required: the names to push to');

  const context = githubContext();
  const metadata = computeMetadata(
    {
      images,
      tags: list('tags'),
      flavor: list('flavor'),
      labels: list('labels'),
      annotations: list('annotations'),
    },
    context,
  );
  for (const w of metadata.warnings) core.warning(w);
  const pushTo = images.map(normalizeImageName);

  let login: Parameters<typeof buildImage>[0]['login'];
  if (password) {
    const registry = optional('registry') ?? parseReference(pushTo[0]!).registry;
    const username = optional('username') ?? (registry === 'ghcr.io' ? process.env.GITHUB_ACTOR : undefined);
    if (!username) throw new Error(`input "username" is required with a password for ${registry}`);
    login = { registry, credentials: { username, password } };
  }

  const builderInput = oneOf('builder', ['auto', 'layers', 'dockerfile'] as const);
  const useLayers = builderInput === 'layers' || (builderInput === 'auto' && list('layers').length > 0);
  const platforms = list('platforms', true).map(parsePlatform);
  const push = core.getBooleanInput('push');
  const common = {
    images: pushTo,
    tags: metadata.tagNames,
    push,
    ...(platforms.length ? { platforms } : {}),
    labels: metadata.labels,
    annotations: metadata.annotations,
    ...(login ? { login } : {}),
    insecureRegistries: list('insecure-registries'),
    log: (line: string) => core.info(line),
  };
  const result = useLayers
    ? await buildImage({
        ...common,
        layers: {
          base: core.getInput('base') || 'scratch',
          layers: list('layers').map((spec) => parseLayerSpec(spec, workspace)),
          config: {
            ...(argv('entrypoint') ? { entrypoint: argv('entrypoint')! } : {}),
            ...(argv('cmd') ? { cmd: argv('cmd')! } : {}),
            env: list('env'),
            ...(optional('workdir') ? { workdir: optional('workdir')! } : {}),
            ...(optional('user') ? { user: optional('user')! } : {}),
            ports: list('ports', true),
          },
          sourceDateEpoch: await resolveSourceDateEpoch(workspace, optional('source-date-epoch')),
        },
      })
    : await buildImage({
        ...common,
        dockerfile: {
          context: `${workspace}/${core.getInput('context') || '.'}`,
          ...(optional('file') ? { file: optional('file')! } : {}),
          ...(optional('target') ? { target: optional('target')! } : {}),
          buildArgs: list('build-args'),
          secrets: parseSecrets(
            {
              values: core.getMultilineInput('secrets'),
              files: list('secret-files'),
              envs: list('secret-envs'),
            },
            workspace,
          ),
          cacheFrom: list('cache-from'),
          cacheTo: list('cache-to'),
          outputs: list('outputs'),
          ...(optional('buildkit-addr') ? { address: optional('buildkit-addr')! } : {}),
        },
      });

  core.setOutput('digest', result.digest);
  core.setOutput('image', result.images[0] ?? '');
  core.setOutput('imageid', result.imageId);
  core.setOutput('tags', result.tags.join('\n'));
  core.setOutput('version', metadata.version);
  core.setOutput(
    'labels',
    Object.entries(metadata.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  );
  core.setOutput(
    'metadata',
    JSON.stringify({
      digest: result.digest,
      images: result.images,
      tags: result.tags,
      platforms: result.platforms,
      builder: result.builder,
      layers: result.layers,
      ...(result.stats ? { stats: result.stats } : {}),
      ...(result.buildkitMetadata ? { buildkit: result.buildkitMetadata } : {}),
    }),
  );
  core.info(result.digest ? `built ${result.images.join(', ')}` : 'built (not pushed)');
  await core.summary
    .addHeading(`Image ${pushTo.join(', ')}`, 3)
    .addTable([
      [
        { data: 'Image', header: true },
        { data: 'Value', header: true },
      ],
      ...summaryRows(result),
    ])
    .write();
}

// BuildKit runs this same bundle as its credential helper (see src/core/image/buildkit.ts).
if (!(await serveCredentialHelper())) {
  run().catch((err: unknown) => core.setFailed(err instanceof Error ? err.message : String(err)));
}
