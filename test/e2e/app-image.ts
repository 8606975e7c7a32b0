// The e2e app's images, built the way a user's pipeline builds them: by our build action, run as
// the runner runs it, layering node and test/e2e/app (with its version) onto the Debian base.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pushBase } from '../../scripts/image.ts';
import type { OciRegistry } from '../cluster/registry.ts';
import { NODE24, runAction } from '../cluster/run-action.ts';

const APP = resolve(import.meta.dirname, 'app');
const bases = new Map<string, Promise<string>>();

/** Builds the app answering `version` and pushes it to `registry`; returns `name@sha256:...`. */
export async function buildAppImage(
  registry: Pick<OciRegistry, 'host' | 'credentials'>,
  version: string,
  repository = 'e2e/app',
): Promise<string> {
  let base = bases.get(registry.host);
  if (!base) {
    base = pushBase(`${registry.host}/e2e/base`, []);
    bases.set(registry.host, base);
  }
  const workspace = await mkdtemp(join(tmpdir(), 'e2e-app-'));
  try {
    await cp(APP, join(workspace, 'app'), { recursive: true });
    await writeFile(join(workspace, 'app', 'VERSION'), `${version}\n`);
    const creds = registry.credentials();
    const result = await runAction(
      'build',
      {
        images: `${registry.host}/${repository}`,
        tags: `type=raw,value=${version}`,
        base: await base,
        layers: `${NODE24}:/usr/local/bin/node\napp:/app`,
        entrypoint: '["/usr/local/bin/node", "/app/server.mjs"]',
        user: '65532:65532',
        ports: '8080',
        'source-date-epoch': '1700000000',
        ...(creds ? { username: creds.username, password: creds.password } : {}),
      },
      {
        GITHUB_WORKSPACE: workspace,
        GITHUB_REPOSITORY: 'acme/app',
        GITHUB_EVENT_NAME: 'push',
        GITHUB_REF: 'refs/heads/main',
      },
    );
    if (result.exitCode !== 0)
      throw new Error(`the build action failed:\n${result.stdout}\n${result.stderr}`);
    return result.outputs.image!;
  } finally {
    await rm(workspace, { recursive: true, force: true });
  }
}
