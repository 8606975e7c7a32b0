// The harness's real image parts: distribution with token auth (its own JWT verification against
// our token server), crane as an independent client, base images made with umoci and pushed with
// skopeo, and buildkitd on runc building a Dockerfile and pushing it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pushBusyboxBase, pushMultiPlatformBase } from '../cluster/base-images.ts';
import { BuildKit, buildKitUnavailableReason, builtBinaries } from '../cluster/buildkit.ts';
import { mountsUnder } from '../cluster/process.ts';
import { OciRegistry, writeDockerConfig } from '../cluster/registry.ts';

// Always async: the token server runs in this process, so a synchronous child would deadlock.
const run = promisify(execFile);
let work: string;
let crane: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'image-harness-'));
  crane = join(await builtBinaries(['crane'], ['crane']), 'crane');
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs crane with a Docker config holding `user`'s credentials for the registry. */
async function craneAs(
  registry: OciRegistry,
  user: string,
  password: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const dockerConfig = await mkdtemp(join(work, 'docker-config-'));
  const auth = Buffer.from(`${user}:${password}`).toString('base64');
  await writeFile(
    join(dockerConfig, 'config.json'),
    JSON.stringify({ auths: { [registry.host]: { auth } } }),
  );
  return run(crane, [...args, '--insecure'], { env: { ...process.env, DOCKER_CONFIG: dockerConfig } });
}

describe('OCI registry with token auth (distribution verifies our JWTs)', () => {
  let registry: OciRegistry;
  const users = { builder: 'builder-pass', reader: 'reader-pass' };
  beforeAll(async () => {
    registry = await OciRegistry.start({
      tokenAuth: { users, grants: { reader: [{ repository: 'team/*', actions: ['pull'] }] } },
    });
  });
  afterAll(() => registry.stop());

  test('an anonymous push gets 401 with a Bearer challenge naming the realm', async () => {
    const res = await fetch(`${registry.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    expect(challenge).toMatch(/^Bearer /);
    expect(challenge).toContain(`realm="${registry.tokenRealm}"`);
    expect(challenge).toContain(`service="${registry.tokenServer!.service}"`);
    // distribution lists the actions in no fixed order (push,pull or pull,push).
    const scope = /scope="repository:team\/app:([^"]+)"/.exec(challenge)?.[1];
    expect(scope?.split(',').sort()).toEqual(['pull', 'push']);
  });

  test('crane pushes and pulls with a pull,push token, asking for it once per push', async () => {
    const layer = join(work, 'layer.tar');
    await mkdir(join(work, 'layer'), { recursive: true });
    await writeFile(join(work, 'layer', 'hello.txt'), 'hello\n');
    await run('tar', ['-cf', layer, '-C', join(work, 'layer'), 'hello.txt']);
    const before = registry.tokenRequests.length;
    const pushed = await craneAs(registry, 'builder', users.builder, [
      'append',
      '-f',
      layer,
      '-t',
      `${registry.host}/team/app:1`,
    ]);
    const tokens = registry.tokenRequests.slice(before);
    expect(tokens).toEqual([
      expect.objectContaining({ user: 'builder', status: 200, granted: ['repository:team/app:push,pull'] }),
    ]);
    const digest = (
      await craneAs(registry, 'reader', users.reader, ['digest', `${registry.host}/team/app:1`])
    ).stdout.trim();
    expect(pushed.stdout.trim()).toBe(`${registry.host}/team/app@${digest}`);
  });

  test('a user granted only pull gets a pull-only token and the registry refuses the push', async () => {
    const before = registry.tokenRequests.length;
    const push = craneAs(registry, 'reader', users.reader, [
      'append',
      '-f',
      join(work, 'layer.tar'),
      '-t',
      `${registry.host}/team/other:1`,
    ]);
    await expect(push).rejects.toThrow(/UNAUTHORIZED|DENIED|401/);
    const asked = registry.tokenRequests.slice(before).find((r) => r.scopes.some((s) => s.includes('push')));
    expect(asked).toMatchObject({ user: 'reader', status: 200, granted: ['repository:team/other:pull'] });
  });

  test('a wrong password, and no credentials at all, are refused by the token server', async () => {
    const before = registry.tokenRequests.length;
    await expect(
      craneAs(registry, 'builder', 'not-the-password', ['digest', `${registry.host}/team/app:1`]),
    ).rejects.toThrow();
    expect(registry.tokenRequests.slice(before)).toContainEqual(
      expect.objectContaining({ user: 'builder', status: 401 }),
    );
    await expect(registry.bearerToken(['repository:team/app:pull'], null)).rejects.toThrow(/401/);
  });

  test('the multi-platform base is an index whose platforms resolve to its manifests', async () => {
    const base = await pushMultiPlatformBase(registry, 'base/multi', '1');
    const ref = base.reference;
    const index = JSON.parse(
      (await craneAs(registry, 'builder', users.builder, ['manifest', ref])).stdout,
    ) as {
      mediaType: string;
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests.map((m) => [m.platform.architecture, m.digest])).toEqual([
      ['amd64', base.manifests['linux/amd64']],
      ['arm64', base.manifests['linux/arm64']],
    ]);
    const arm64 = await craneAs(registry, 'builder', users.builder, [
      'digest',
      '--platform',
      'linux/arm64',
      ref,
    ]);
    expect(arm64.stdout.trim()).toBe(base.manifests['linux/arm64']);
    expect((await craneAs(registry, 'builder', users.builder, ['digest', ref])).stdout.trim()).toBe(
      base.digest,
    );
  });
});

const unavailable = await buildKitUnavailableReason();
const describeBuildKit = unavailable ? describe.skip : describe;

describeBuildKit(`BuildKit on runc${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let registry: OciRegistry;
  let buildkit: BuildKit;
  beforeAll(async () => {
    registry = await OciRegistry.start({ auth: { username: 'ci', password: 'registry-pass' } });
    buildkit = await BuildKit.start({ registries: [registry.host] });
  });
  afterAll(async () => {
    await buildkit?.stop();
    await registry?.stop();
  });

  test('builds a two-stage Dockerfile with a RUN step and a build arg, and pushes it', async () => {
    const base = await pushBusyboxBase(registry, 'base/busybox', '1');
    const context = join(work, 'context');
    await mkdir(context, { recursive: true });
    await writeFile(
      join(context, 'Dockerfile'),
      [
        'ARG BASE',
        'FROM ${BASE} AS build',
        'ARG GREETING=hello',
        'RUN echo "$GREETING from $(uname -m)" > /greeting',
        'FROM ${BASE}',
        'COPY --from=build /greeting /greeting',
        'RUN cat /greeting',
        '',
      ].join('\n'),
    );
    const dockerConfig = await writeDockerConfig(join(work, 'buildctl-config'), [registry]);
    const image = `${registry.host}/team/web:1`;
    const metadataFile = join(work, 'metadata.json');
    const { stderr } = await buildkit.run(
      [
        'build',
        '--progress=plain',
        '--frontend=dockerfile.v0',
        `--local=context=${context}`,
        `--local=dockerfile=${context}`,
        `--opt=build-arg:BASE=${base.reference}`,
        '--opt=build-arg:GREETING=hi',
        `--output=type=image,name=${image},push=true,registry.insecure=true`,
        `--metadata-file=${metadataFile}`,
      ],
      { env: { DOCKER_CONFIG: dockerConfig } },
    );
    expect(stderr).toMatch(/RUN cat \/greeting\n#\d+ [\d.]+ hi from x86_64/);
    const metadata = JSON.parse(await readFile(metadataFile, 'utf8')) as Record<string, unknown>;
    const digest = metadata['containerimage.digest'];
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const { stdout } = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `--authfile=${join(dockerConfig, 'config.json')}`,
      `docker://${image}`,
    ]);
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(digest);
  });

  test('stop leaves no buildkitd or runc process, no mount and no directory', async () => {
    const { dir } = buildkit;
    await buildkit.stop();
    expect(buildkit.running).toBe(false);
    expect(await mountsUnder(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    // buildkitd and runc name the directory on their command lines; build steps run with their
    // root (or working directory) in a rootfs under it.
    const leftovers: string[] = [];
    for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      const root = await readlink(`/proc/${pid}/root`).catch(() => '');
      const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
      if (cmdline.includes(dir) || root.startsWith(dir) || cwd.startsWith(dir)) {
        leftovers.push(`${pid}: ${cmdline.replaceAll('\0', ' ')}`);
      }
    }
    expect(leftovers).toEqual([]);
  });
});
