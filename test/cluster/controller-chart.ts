// The controller as a user installs it: its image (scripts/image.ts, as `make image` builds it)
// pushed to a registry the cluster pulls from, and deploy/chart installed by the real helm. Used by
// the in-cluster e2e proof and by `make demo`.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { buildControllerImage } from '../../scripts/image.ts';

const run = promisify(execFile);
export const CHART = resolve(import.meta.dirname, '..', '..', 'deploy', 'chart', 'kube-actions');

/** Builds the controller image for linux/amd64 into `repository` (`host/name`); returns `name@digest`. */
export async function pushControllerImage(repository: string): Promise<string> {
  const result = await buildControllerImage({
    image: repository,
    platforms: [{ os: 'linux', architecture: 'amd64' }],
    tags: ['e2e'],
    insecureRegistries: [],
  });
  return result.images[0]!;
}

export interface ChartInstall {
  release: string;
  namespace: string;
  kubeconfig: string;
  /** `repository@sha256:...`, as pushControllerImage returns it. */
  image: string;
  /** Values besides the image (written to a values file, as a user's would be). */
  values?: Record<string, unknown>;
  /**
   * Leave the CRDs to whoever installed them (the test harness's installCRDs, whose field manager
   * owns them: helm's server-side apply of its crds/ would conflict with it).
   */
  skipCrds?: boolean;
}

/** `helm upgrade --install` of deploy/chart; does not wait (callers wait for what they need). */
export async function installChart(install: ChartInstall): Promise<void> {
  const at = install.image.lastIndexOf('@');
  if (at < 0) throw new Error(`installChart: ${install.image} is not pinned by digest`);
  const work = await mkdtemp(join(tmpdir(), 'kube-actions-chart-'));
  try {
    const values = join(work, 'values.yaml');
    // JSON is YAML.
    await writeFile(
      values,
      JSON.stringify({
        ...install.values,
        image: { repository: install.image.slice(0, at), digest: install.image.slice(at + 1) },
      }),
    );
    await helm(
      install,
      [
        'upgrade',
        '--install',
        install.release,
        CHART,
        '--values',
        values,
        ...(install.skipCrds ? ['--skip-crds'] : []),
      ],
      work,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function uninstallChart(install: Omit<ChartInstall, 'image'>): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'kube-actions-chart-'));
  try {
    await helm(install, ['uninstall', install.release, '--ignore-not-found'], work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function helm(install: Omit<ChartInstall, 'image'>, args: string[], work: string): Promise<void> {
  await run('helm', [...args, '--namespace', install.namespace, '--kubeconfig', install.kubeconfig], {
    // helm's caches and config in a scratch directory: nothing of the user's is read or written.
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(work, 'cache'),
      HELM_CONFIG_HOME: join(work, 'config'),
      HELM_DATA_HOME: join(work, 'data'),
    },
    timeout: 120_000,
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`helm ${args[0]} failed: ${err.stderr?.trim() || err.message}`);
  });
}
