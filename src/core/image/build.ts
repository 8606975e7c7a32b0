// One entry point for both builders, shared by the build action and `kube-actions build`:
// the daemonless layers builder, or a Dockerfile through BuildKit. Either way the image is pushed
// by digest first and only then tagged, and the result reads the same.
import { execFile } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { buildDockerfile, type BuildSecret, type BuildKitDriver } from './buildkit.ts';
import { withExplicitCredentials, dockerConfigCredentials, type RegistryCredentials } from './credentials.ts';
import {
  buildLayersImage,
  clientCache,
  type ImageConfigOverrides,
  type PushStats,
} from './layers-builder.ts';
import { formatPlatform, type Platform } from './platform.ts';
import type { LayerSpec } from './layer.ts';
import { formatReference, imageName, isValidTag, parseImageName } from './reference.ts';

export interface BuildOptions {
  /** Names to push to, without tags (`ghcr.io/acme/web`). */
  images: string[];
  /** Tag names (`v1.2.3`, `sha-abc1234`), each put on every image. */
  tags: string[];
  push: boolean;
  platforms?: Platform[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Credentials for one registry, on top of ~/.docker/config.json. */
  login?: { registry: string; credentials: RegistryCredentials };
  insecureRegistries?: string[];
  log?: (line: string) => void;
  layers?: {
    base: string;
    layers: LayerSpec[];
    config: ImageConfigOverrides;
    sourceDateEpoch: number;
    /** Default: $KUBE_ACTIONS_CACHE/layers (~/.cache/kube-actions/layers). */
    cacheDir?: string;
  };
  dockerfile?: {
    context: string;
    file?: string;
    target?: string;
    buildArgs: string[];
    secrets: BuildSecret[];
    cacheFrom: string[];
    cacheTo: string[];
    outputs: string[];
    address?: string;
    driver?: BuildKitDriver;
  };
}

export interface BuildResult {
  builder: 'layers' | 'dockerfile';
  /** The pushed manifest's (or index's) digest; empty when nothing was pushed. */
  digest: string;
  imageId: string;
  /** `name@digest` for each image. */
  images: string[];
  /** Full tag references. */
  tags: string[];
  platforms: string[];
  layers: { digest: string; size: number; description: string }[];
  stats?: PushStats;
  /** What BuildKit's metadata file said (dockerfile builds). */
  buildkitMetadata?: Record<string, unknown>;
}

export async function buildImage(options: BuildOptions): Promise<BuildResult> {
  if (!!options.layers === !!options.dockerfile)
    throw new Error('give either layers or a Dockerfile build, not both');
  if (!options.images.length) throw new Error('no image name given');
  const names = options.images.map(parseImageName);
  for (const tag of options.tags) {
    if (!isValidTag(tag)) {
      throw new Error(
        `tag "${tag}" is not valid: 1-128 letters, digits, "_", "." and "-", not starting with "." or "-"`,
      );
    }
  }
  const credentials = withExplicitCredentials(options.login, dockerConfigCredentials());
  const clientFor = clientCache({
    credentials,
    ...(options.insecureRegistries ? { insecureRegistries: options.insecureRegistries } : {}),
  });

  if (options.layers) {
    const { cacheDir, ...layers } = options.layers;
    const result = await buildLayersImage({
      ...layers,
      layerCacheDir:
        cacheDir ??
        join(process.env.KUBE_ACTIONS_CACHE ?? join(homedir(), '.cache', 'kube-actions'), 'layers'),
      images: options.images,
      tags: options.tags,
      ...(options.platforms ? { platforms: options.platforms } : {}),
      config: { ...options.layers.config, labels: { ...options.layers.config.labels, ...options.labels } },
      ...(options.annotations ? { annotations: options.annotations } : {}),
      push: options.push,
      clientFor,
      ...(options.log ? { log: options.log } : {}),
    });
    return {
      builder: 'layers',
      digest: result.digest,
      imageId: result.imageId ?? '',
      images: result.images,
      tags: result.tags,
      platforms: result.manifests.map((m) => formatPlatform(m.platform)),
      layers: result.layers,
      stats: result.stats,
    };
  }

  const d = options.dockerfile!;
  const built = await buildDockerfile({
    ...d,
    images: options.images,
    push: options.push,
    ...(options.platforms ? { platforms: options.platforms } : {}),
    ...(options.labels ? { labels: options.labels } : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
    ...(options.login ? { credentials: options.login } : {}),
    ...(options.insecureRegistries ? { insecureRegistries: options.insecureRegistries } : {}),
    ...(options.log ? { log: options.log } : {}),
  });
  const tags: string[] = [];
  if (options.push && built.digest) {
    // BuildKit pushed by digest; the tags go on only now, all pointing at that digest.
    for (const ref of names) {
      const client = clientFor(ref.registry);
      const manifest = await client.getManifest(ref.repository, built.digest);
      for (const tag of options.tags) {
        await client.putManifest(ref.repository, tag, manifest.body, manifest.mediaType);
        tags.push(formatReference({ ...ref, tag }));
      }
    }
  } else {
    for (const ref of names) for (const tag of options.tags) tags.push(formatReference({ ...ref, tag }));
  }
  return {
    builder: 'dockerfile',
    digest: built.digest ?? '',
    imageId: built.imageId ?? '',
    images: built.digest ? names.map((ref) => `${imageName(ref)}@${built.digest}`) : [],
    tags,
    platforms: (options.platforms ?? []).map(formatPlatform),
    layers: [],
    buildkitMetadata: built.metadata,
  };
}

/**
 * SOURCE_DATE_EPOCH for reproducible layers: the given value, else $SOURCE_DATE_EPOCH, else the
 * time of the workspace's HEAD commit, else 0 (the epoch, as ko and jib use).
 */
export async function resolveSourceDateEpoch(
  workspace: string,
  value?: string,
  env = process.env,
): Promise<number> {
  const given = value || env.SOURCE_DATE_EPOCH;
  if (given) {
    if (!/^\d+$/.test(given.trim()))
      throw new Error(`source-date-epoch "${given}" is not a whole number of seconds`);
    return Number(given.trim());
  }
  const commitTime = await new Promise<string>((res) => {
    execFile('git', ['log', '-1', '--format=%ct'], { cwd: workspace }, (err, stdout) =>
      res(err ? '' : stdout.trim()),
    );
  });
  return /^\d+$/.test(commitTime) ? Number(commitTime) : 0;
}
