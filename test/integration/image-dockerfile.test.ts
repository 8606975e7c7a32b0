// Dockerfile builds through the real BuildKit (buildkitd on runc), driven by the build action and
// the CLI as users run them: a multi-stage Dockerfile FROM an image our layers builder pushed,
// build args, a secret mount, registry credentials reaching BuildKit only through our credential
// helper, the digest from BuildKit's metadata file, and tags put on that digest afterwards.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { buildLayersImage } from '../../src/core/image/layers-builder.ts';
import { parseLayerSpec } from '../../src/core/image/layer.ts';
import { pushBusyboxBase } from '../cluster/base-images.ts';
import { BuildKit, buildKitUnavailableReason } from '../cluster/buildkit.ts';
import { OciRegistry } from '../cluster/registry.ts';
import { NODE24, runAction } from '../cluster/run-action.ts';

const run = promisify(execFile);
const CLI = resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'index.js');
const unavailable = await buildKitUnavailableReason();
if (unavailable) console.warn(`skipping the BuildKit tests: ${unavailable}`);
const describeBuildKit = unavailable ? describe.skip : describe;

const user = { username: 'builder', password: 'buildkit-registry-secret-42' };
const SECRET = 'npm-token-value-that-must-not-leak';
let work: string;
let registry: OciRegistry;
let buildkit: BuildKit;
let base: string;

// No `# syntax=` line: that would pull a frontend image from Docker Hub; BuildKit's built-in
// Dockerfile frontend already knows secret mounts.
const DOCKERFILE = `ARG BASE
FROM \${BASE} AS build
ARG VERSION=dev
RUN mkdir -p /out && echo "version \${VERSION}" > /out/version.txt
RUN --mount=type=secret,id=npm,required=true wc -c < /run/secrets/npm > /out/secret-length
RUN cat /etc/from-layers > /out/base-marker

FROM \${BASE}
COPY --from=build /out /app
LABEL stage=final
CMD ["cat", "/app/version.txt"]
`;

beforeAll(async () => {
  if (unavailable) return;
  work = await mkdtemp(join(tmpdir(), 'image-dockerfile-'));
  registry = await OciRegistry.start({ auth: user });
  buildkit = await BuildKit.start({ registries: [registry.host] });
  // The base: busybox with one layer added by our own layers builder, so BuildKit builds FROM it.
  const busybox = await pushBusyboxBase(registry, 'base/busybox', 'v1');
  await mkdir(join(work, 'marker'), { recursive: true });
  await writeFile(join(work, 'marker', 'from-layers'), 'pushed by kube-actions layers\n');
  const layered = await buildLayersImage({
    base: busybox.reference,
    layers: [parseLayerSpec(`${join(work, 'marker', 'from-layers')}:/etc/from-layers`, work)],
    images: [`${registry.host}/base/layered`],
    tags: ['v1'],
    sourceDateEpoch: 0,
    credentials: () => Promise.resolve(user),
  });
  base = layered.images[0]!;
  await mkdir(join(work, 'app'), { recursive: true });
  await writeFile(join(work, 'app', 'Dockerfile'), DOCKERFILE);
}, 300_000);
afterAll(async () => {
  await buildkit?.stop();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function inspect(ref: string, raw = false): Promise<Record<string, unknown>> {
  const { stdout } = await run('skopeo', [
    'inspect',
    ...(raw ? ['--raw'] : []),
    '--tls-verify=false',
    '--creds',
    `${user.username}:${user.password}`,
    `docker://${ref}`,
  ]);
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** The image's files, through crane (an independent client), as one tar stream listing. */
async function exportedFile(ref: string, path: string): Promise<string> {
  const config = await mkdtemp(join(work, 'docker-config-'));
  await writeFile(
    join(config, 'config.json'),
    JSON.stringify({
      auths: {
        [registry.host]: { auth: Buffer.from(`${user.username}:${user.password}`).toString('base64') },
      },
    }),
  );
  const tar = join(work, `export-${Math.random().toString(36).slice(2)}.tar`);
  await run('crane', ['export', '--insecure', ref, tar], { env: { ...process.env, DOCKER_CONFIG: config } });
  const { stdout } = await run('tar', ['-xOf', tar, path.replace(/^\//, '')]);
  return stdout;
}

describeBuildKit('Dockerfile builds through BuildKit', () => {
  test('the build action: multi-stage, build args, a secret mount; pushed by digest, then tagged', async () => {
    const result = await runAction(
      'build',
      {
        images: `${registry.host}/acme/dockerfile`,
        tags: 'type=raw,value=v1\ntype=sha',
        context: 'app',
        'build-args': `BASE=${base}\nVERSION=1.2.3`,
        secrets: `npm=${SECRET}`,
        'buildkit-addr': buildkit.address,
        'cache-to': `type=registry,ref=${registry.host}/acme/dockerfile:buildcache,mode=max,registry.insecure=true`,
        username: user.username,
        password: user.password,
      },
      {
        GITHUB_WORKSPACE: work,
        GITHUB_EVENT_NAME: 'push',
        GITHUB_REF: 'refs/heads/main',
        GITHUB_SHA: 'abcdef0123456789abcdef0123456789abcdef01',
        GITHUB_REPOSITORY: 'acme/app',
        PATH: `${dirname(buildkit.buildctl)}:${process.env.PATH}`,
      },
    );
    expect(result.stdout).not.toContain('::error::');
    expect(result.exitCode).toBe(0);
    const digest = result.outputs.digest!;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const metadata = JSON.parse(result.outputs.metadata!) as { buildkit: Record<string, unknown> };
    expect(metadata.buildkit['containerimage.digest']).toBe(digest);

    // Both tags name the digest BuildKit reported.
    for (const tag of ['v1', 'sha-abcdef0']) {
      expect((await inspect(`${registry.host}/acme/dockerfile:${tag}`)).Digest).toBe(digest);
    }
    const image = await inspect(`${registry.host}/acme/dockerfile@${digest}`);
    expect((image.Labels as Record<string, string>).stage).toBe('final');
    expect((image.Labels as Record<string, string>)['org.opencontainers.image.revision']).toBe(
      'abcdef0123456789abcdef0123456789abcdef01',
    );
    expect(await exportedFile(`${registry.host}/acme/dockerfile:v1`, '/app/version.txt')).toBe(
      'version 1.2.3\n',
    );
    expect((await exportedFile(`${registry.host}/acme/dockerfile:v1`, '/app/secret-length')).trim()).toBe(
      String(SECRET.length),
    );
    expect(await exportedFile(`${registry.host}/acme/dockerfile:v1`, '/app/base-marker')).toBe(
      'pushed by kube-actions layers\n',
    );

    // The registry cache export was passed through to BuildKit, which pushed it with our credentials.
    const cache = (await inspect(`${registry.host}/acme/dockerfile:buildcache`, true)) as {
      layers?: unknown[];
    };
    expect(cache.layers?.length).toBeGreaterThan(0);

    // Neither the secret nor the registry password is printed.
    for (const secret of [SECRET, user.password]) {
      expect(result.stdout.replaceAll(`::add-mask::${secret}`, '')).not.toContain(secret);
      expect(result.stderr).not.toContain(secret);
    }
  });

  test('the CLI: --password-stdin credentials, and BuildKit errors shown with their output', async () => {
    const env = {
      ...process.env,
      BUILDKIT_HOST: buildkit.address,
      NPM_TOKEN: SECRET,
      PATH: `${dirname(buildkit.buildctl)}:${process.env.PATH}`,
    };
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolveRun) => {
        const child = execFile(NODE24, [CLI, 'build', ...args], { env, cwd: work }, (err, stdout, stderr) =>
          resolveRun({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        child.stdin!.end(user.password);
      });
    const ok = await cli([
      `${registry.host}/acme/cli`,
      '-t',
      'v2',
      '--context',
      'app',
      '--build-arg',
      `BASE=${base}`,
      '--secret-env',
      'npm=NPM_TOKEN',
      '--username',
      user.username,
      '--password-stdin',
    ]);
    expect(ok.stderr).not.toContain(user.password);
    expect(ok.code).toBe(0);
    const ref = ok.stdout.trim();
    expect(ref).toMatch(new RegExp(`^${registry.host.replace(/\./g, '\\.')}/acme/cli@sha256:[0-9a-f]{64}$`));
    expect((await inspect(`${registry.host}/acme/cli:v2`)).Digest).toBe(ref.split('@')[1]);

    await writeFile(
      join(work, 'app', 'Broken.Dockerfile'),
      `ARG BASE\nFROM \${BASE}\nRUN echo about to fail && exit 3\n`,
    );
    const broken = await cli([
      `${registry.host}/acme/broken`,
      '-t',
      'v1',
      '--context',
      'app',
      '-f',
      'Broken.Dockerfile',
      '--build-arg',
      `BASE=${base}`,
      '--username',
      user.username,
      '--password-stdin',
    ]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/buildctl build failed \(exit 1\)/);
    expect(broken.stderr).toMatch(/about to fail/);
    const tags = await fetch(`${registry.url}/v2/acme/broken/tags/list`, {
      headers: { authorization: registry.authorization()! },
    });
    expect(tags.status).toBe(404);

    const missing = await cli([`${registry.host}/acme/missing`, '--context', 'no-such-dir']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/build context no-such-dir does not exist/);
  });
});
