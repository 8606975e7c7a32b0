// The daemonless layers builder against the real distribution registry (htpasswd and token auth),
// with independent clients checking what it pushed: crane validates every manifest, config and
// layer digest, and skopeo reads the image back.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildLayersImage, clientCache } from '../../src/core/image/layers-builder.ts';
import { parseLayerSpec } from '../../src/core/image/layer.ts';
import { RegistryClient, sha256Digest } from '../../src/core/image/registry.ts';
import { dockerConfigCredentials } from '../../src/core/image/credentials.ts';
import { pushMultiPlatformBase } from '../cluster/base-images.ts';
import { OciRegistry } from '../cluster/registry.ts';

const run = promisify(execFile);
let work: string;
let htpasswd: OciRegistry;
let tokens: OciRegistry;
const user = { username: 'ci', password: 'p4ss-w0rd-never-printed' };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'image-layers-'));
  [htpasswd, tokens] = await Promise.all([
    OciRegistry.start({ auth: user }),
    OciRegistry.start({
      tokenAuth: {
        users: { [user.username]: user.password, reader: 'r' },
        grants: { reader: [{ repository: '*', actions: ['pull'] }] },
      },
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([htpasswd?.stop(), tokens?.stop()]);
  await rm(work, { recursive: true, force: true });
});

const creds =
  (c = user) =>
  () =>
    Promise.resolve(c);

/** An app with its dependencies apart, as jib lays them out. */
async function app(name: string): Promise<string> {
  const root = join(work, name);
  await mkdir(join(root, 'deps', 'lib'), { recursive: true });
  await mkdir(join(root, 'src'), { recursive: true });
  await writeFile(join(root, 'deps', 'lib', 'vendor.js'), 'export const v = 1;\n'.repeat(200));
  await writeFile(join(root, 'src', 'server.js'), 'console.log("v1");\n');
  await writeFile(join(root, 'src', 'start.sh'), '#!/bin/sh\nexec node /app/server.js\n');
  await chmod(join(root, 'src', 'start.sh'), 0o755);
  return root;
}

function layersOf(root: string) {
  return [
    parseLayerSpec(`${join(root, 'deps')}:/app/node_modules`, root),
    parseLayerSpec(`${join(root, 'src')}:/app`, root),
  ];
}

/** crane's own check of a remote image: every descriptor's digest and size against the blobs. */
async function craneValidate(ref: string, registry: OciRegistry): Promise<void> {
  const dockerConfig = await mkdtemp(join(work, 'docker-config-'));
  const c = registry.credentials();
  if (c) {
    await writeFile(
      join(dockerConfig, 'config.json'),
      JSON.stringify({
        auths: { [registry.host]: { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') } },
      }),
    );
  }
  await run('crane', ['validate', '--remote', ref, '--insecure'], {
    env: { ...process.env, DOCKER_CONFIG: dockerConfig },
  });
}

async function skopeoInspect(
  ref: string,
  registry: OciRegistry,
  raw = false,
): Promise<Record<string, unknown>> {
  const c = registry.credentials()!;
  const { stdout } = await run('skopeo', [
    'inspect',
    ...(raw ? ['--raw'] : []),
    '--tls-verify=false',
    '--creds',
    `${c.username}:${c.password}`,
    `docker://${ref}`,
  ]);
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('layers builder', () => {
  test('builds reproducibly: two clean copies give the same digest, which crane and skopeo verify', async () => {
    const a = await app('repro-a');
    const b = await app('repro-b');
    // A different checkout: other mtimes, other read bits.
    await chmod(join(b, 'src', 'server.js'), 0o600);
    const common = {
      base: 'scratch',
      tags: ['v1'],
      sourceDateEpoch: 1_700_000_000,
      config: { entrypoint: ['/app/start.sh'], env: ['NODE_ENV=production'], ports: ['8080'], user: '65532' },
      credentials: creds(),
    };
    const first = await buildLayersImage({
      ...common,
      layers: layersOf(a),
      images: [`${htpasswd.host}/acme/repro`],
    });
    const second = await buildLayersImage({
      ...common,
      layers: layersOf(b),
      images: [`${htpasswd.host}/acme/repro2`],
    });
    expect(second.digest).toBe(first.digest);
    expect(first.stats.uploaded).toBe(3); // two layers and the config

    await craneValidate(`${htpasswd.host}/acme/repro:v1`, htpasswd);
    const inspected = await skopeoInspect(`${htpasswd.host}/acme/repro:v1`, htpasswd);
    expect(inspected.Digest).toBe(first.digest);
    expect(inspected.Layers).toEqual(first.layers.map((l) => l.digest));
    expect(inspected.Env).toEqual(['NODE_ENV=production']);
    expect(inspected.Created).toBe('2023-11-14T22:13:20Z');
  });

  test('a one-file change uploads exactly one layer (and the config)', async () => {
    const root = await app('incremental');
    const options = {
      base: 'scratch',
      images: [`${htpasswd.host}/acme/incremental`],
      tags: ['latest'],
      sourceDateEpoch: 1_700_000_000,
      credentials: creds(),
    };
    const before = await buildLayersImage({ ...options, layers: layersOf(root) });
    await writeFile(join(root, 'src', 'server.js'), 'console.log("v2");\n');
    const after = await buildLayersImage({ ...options, layers: layersOf(root) });
    expect(after.digest).not.toBe(before.digest);
    const uploaded = Object.entries(after.stats.blobs)
      .filter(([, r]) => r === 'uploaded')
      .map(([d]) => d);
    expect(uploaded.sort()).toEqual([after.layers[1]!.digest, after.manifests[0]!.configDigest].sort());
    expect(after.stats.blobs[after.layers[0]!.digest]).toBe('exists');
    expect(after.stats.bytesUploaded).toBeLessThan(before.stats.bytesUploaded);
    await craneValidate(`${htpasswd.host}/acme/incremental:latest`, htpasswd);
  });

  test('a multi-platform base gives one manifest per platform under an OCI index; base layers are mounted', async () => {
    const base = await pushMultiPlatformBase(tokens, 'base/multi', 'v1');
    const root = await app('multi');
    const result = await buildLayersImage({
      base: base.reference,
      layers: layersOf(root),
      images: [`${tokens.host}/acme/multi`],
      tags: ['v1'],
      sourceDateEpoch: 1_700_000_000,
      credentials: creds(),
      annotations: { 'org.opencontainers.image.revision': 'abc123' },
    });
    expect(result.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(result.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort()).toEqual([
      'linux/amd64',
      'linux/arm64',
    ]);
    expect(result.stats.mounted).toBeGreaterThan(0);
    // The token asked for carries pull on the base repository, so the registry allowed the mount.
    expect(
      tokens.tokenRequests.some((r) => r.scopes.includes('repository:base/multi:pull') && r.status === 200),
    ).toBe(true);
    const index = (await skopeoInspect(`${tokens.host}/acme/multi:v1`, tokens, true)) as {
      manifests: { digest: string; platform: { architecture: string } }[];
      annotations: Record<string, string>;
    };
    expect(index.manifests.map((m) => m.digest).sort()).toEqual(result.manifests.map((m) => m.digest).sort());
    expect(index.annotations['org.opencontainers.image.revision']).toBe('abc123');
    await craneValidate(`${tokens.host}/acme/multi:v1`, tokens);
    // Each platform keeps its own base layers.
    const arm = (await skopeoInspect(
      `${tokens.host}/acme/multi@${result.manifests.find((m) => m.platform.architecture === 'arm64')!.digest}`,
      tokens,
    )) as { Architecture: string; Layers: string[] };
    expect(arm.Architecture).toBe('arm64');
    expect(arm.Layers.slice(-2)).toEqual(result.layers.map((l) => l.digest));
  });

  test('token auth: one token per scope set, reused across requests', async () => {
    const root = await app('token-reuse');
    const before = tokens.tokenRequests.length;
    const clientFor = clientCache({ credentials: creds() });
    await buildLayersImage({
      base: 'scratch',
      layers: layersOf(root),
      images: [`${tokens.host}/acme/reuse`],
      tags: ['a', 'b', 'c'],
      sourceDateEpoch: 0,
      clientFor,
    });
    const client = clientFor(tokens.host);
    const sent = Object.entries(client.requests)
      .filter(([m]) => m !== 'TOKEN')
      .reduce((n, [, c]) => n + c, 0);
    const asked = tokens.tokenRequests.slice(before);
    expect(sent).toBeGreaterThan(10);
    // pull for the HEADs, pull+push for the uploads and manifests.
    expect(asked.length).toBeLessThanOrEqual(2);
    expect(asked.every((r) => r.status === 200 && r.user === user.username)).toBe(true);
  });

  test('a user without push is refused with a clear error and no tag appears', async () => {
    const root = await app('denied');
    const err = await buildLayersImage({
      base: 'scratch',
      layers: layersOf(root),
      images: [`${tokens.host}/acme/denied`],
      tags: ['v1'],
      sourceDateEpoch: 0,
      credentials: creds({ username: 'reader', password: 'r' }),
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/HTTP 401|HTTP 403|denied/);
    const tags = await fetch(`${tokens.url}/v2/acme/denied/tags/list`, {
      headers: { authorization: `Bearer ${await tokens.bearerToken(['repository:acme/denied:pull'])}` },
    });
    expect(tags.status).toBe(404);
  });

  test.each([
    ['htpasswd', () => htpasswd],
    ['token', () => tokens],
  ])(
    '%s: rejected credentials fail clearly and the password is never in the message',
    async (_kind, registry) => {
      const root = await app(`rejected-${_kind}`);
      const wrong = { username: user.username, password: 'wrong-secret-value' };
      const err = await buildLayersImage({
        base: 'scratch',
        layers: layersOf(root),
        images: [`${registry().host}/acme/rejected`],
        tags: ['v1'],
        sourceDateEpoch: 0,
        credentials: creds(wrong),
      }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/credentials (for \S+ )?were rejected/);
      expect((err as Error).message).not.toContain(wrong.password);
      expect((err as Error).message).not.toContain(
        Buffer.from(`${wrong.username}:${wrong.password}`).toString('base64'),
      );
    },
  );

  test('credentials from a docker config.json with a credential helper', async () => {
    const dir = await mkdtemp(join(work, 'helper-'));
    const helper = join(dir, 'docker-credential-testhelper');
    await writeFile(
      helper,
      `#!/bin/sh\nread server\n[ "$server" = "${tokens.host}" ] || { echo "credentials not found"; exit 1; }\nprintf '{"Username":"${user.username}","Secret":"${user.password}"}'\n`,
    );
    await chmod(helper, 0o755);
    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({ credHelpers: { [tokens.host]: 'testhelper' } }),
    );
    const root = await app('helper');
    const result = await buildLayersImage({
      base: 'scratch',
      layers: layersOf(root),
      images: [`${tokens.host}/acme/helper`],
      tags: ['v1'],
      sourceDateEpoch: 0,
      credentials: dockerConfigCredentials(join(dir, 'config.json'), {
        ...process.env,
        PATH: `${dir}:${process.env.PATH}`,
      }),
    });
    expect(result.stats.uploaded).toBe(3);
    await craneValidate(`${tokens.host}/acme/helper:v1`, tokens);
  });

  test('push: false computes the digest and writes nothing', async () => {
    const root = await app('dry');
    const clientFor = clientCache({ credentials: creds() });
    const result = await buildLayersImage({
      base: 'scratch',
      layers: layersOf(root),
      images: [`${htpasswd.host}/acme/dry`],
      tags: ['v1'],
      sourceDateEpoch: 1_700_000_000,
      push: false,
      clientFor,
    });
    expect(result.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(clientFor(htpasswd.host).requests).toEqual({});
  });

  test('an unknown base and an unreachable registry are clear errors', async () => {
    const root = await app('bad-base');
    await expect(
      buildLayersImage({
        base: `${htpasswd.host}/no/such-base:v1`,
        layers: layersOf(root),
        images: [`${htpasswd.host}/acme/x`],
        tags: ['v1'],
        sourceDateEpoch: 0,
        credentials: creds(),
      }),
    ).rejects.toThrow(/no\/such-base.*HTTP 404.*MANIFEST_UNKNOWN/);
    await expect(
      buildLayersImage({
        base: 'scratch',
        layers: layersOf(root),
        images: ['127.0.0.1:9/acme/x'],
        tags: ['v1'],
        sourceDateEpoch: 0,
      }),
    ).rejects.toThrow(/registry 127\.0\.0\.1:9 .* is unreachable/);
  });
});

describe('registry client transport', () => {
  test('chunked uploads honour the chunk size and land intact', async () => {
    const client = new RegistryClient({
      registry: htpasswd.host,
      credentials: creds(),
      chunkSize: 64 * 1024,
    });
    const data = randomBytes(300 * 1024);
    const digest = sha256Digest(data);
    expect(await client.pushBlob('acme/chunked', { digest, data })).toBe('uploaded');
    expect(client.requests.PATCH).toBe(5);
    expect((await client.getBlob('acme/chunked', digest)).equals(data)).toBe(true);
    expect(await client.pushBlob('acme/chunked', { digest, data })).toBe('exists');
  });

  test('429 and 503 answers are retried after Retry-After; the upload still lands once', async () => {
    // A faulty front: every third request is refused before it reaches the real registry.
    let n = 0;
    let refused = 0;
    const proxy: Server = createServer((req, res) => {
      if (++n % 3 === 0) {
        refused++;
        res.writeHead(n % 2 ? 503 : 429, { 'retry-after': '0' }).end('{"errors":[{"code":"UNAVAILABLE"}]}');
        req.resume();
        return;
      }
      const [host, port] = htpasswd.host.split(':');
      const upstream = request(
        { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const { port } = proxy.address() as { port: number };
      const root = await app('faulty');
      const result = await buildLayersImage({
        base: 'scratch',
        layers: layersOf(root),
        images: [`127.0.0.1:${port}/acme/faulty`],
        tags: ['v1', 'v2'],
        sourceDateEpoch: 0,
        clientFor: (registry) => new RegistryClient({ registry, credentials: creds(), retryDelayMs: 1 }),
      });
      expect(refused).toBeGreaterThan(2);
      await craneValidate(`${htpasswd.host}/acme/faulty:v2`, htpasswd);
      expect(result.stats.uploaded).toBe(3);
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });
});
