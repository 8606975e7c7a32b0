// The controller's image as `make image` builds it (scripts/image.ts: a Debian base, node, helm,
// kustomize and the bundled CLI as layers), checked by independent clients and then run: BuildKit
// builds FROM it on runc, so its RUN step executes the image's own node, git, helm and kustomize
// as the image's user.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildControllerImage } from '../../scripts/image.ts';
import { BuildKit, buildKitUnavailableReason } from '../cluster/buildkit.ts';
import { OciRegistry } from '../cluster/registry.ts';
import pkg from '../../package.json' with { type: 'json' };

const run = promisify(execFile);
const unavailable = await buildKitUnavailableReason();
if (unavailable) console.warn(`skipping the controller image run: ${unavailable}`);

let work: string;
let registry: OciRegistry;
let image: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'controller-image-'));
  registry = await OciRegistry.start();
  const result = await buildControllerImage({
    image: `${registry.host}/kube-actions/kube-actions`,
    platforms: [{ os: 'linux', architecture: 'amd64' }],
    tags: ['test'],
    insecureRegistries: [],
  });
  image = result.images[0]!;
}, 600_000);
afterAll(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the controller image', () => {
  test('crane validates every blob; its config runs the CLI as the non-root user the chart expects', async () => {
    await run('crane', ['validate', '--remote', image, '--insecure']);
    const { stdout } = await run('crane', ['config', '--insecure', image]);
    const config = (JSON.parse(stdout) as { config: Record<string, unknown> }).config;
    expect(config.Entrypoint).toEqual(['/usr/local/bin/node', '--optimize-for-size', '/app/kube-actions.js']);
    expect(config.Cmd).toEqual(['controller']);
    expect(config.User).toBe('65532:65532');
    expect(config.Env).toContain('HOME=/tmp');
    expect(config.Env).toContain('MALLOC_ARENA_MAX=2');
    expect((config.Labels as Record<string, string>)['org.opencontainers.image.version']).toBe(pkg.version);
  });

  test('built again from the same inputs, it has the same digest', async () => {
    const again = await buildControllerImage({
      image: `${registry.host}/kube-actions/kube-actions`,
      platforms: [{ os: 'linux', architecture: 'amd64' }],
      tags: ['test'],
      insecureRegistries: [],
    });
    expect(again.images[0]).toBe(image);
    expect(again.stats?.uploaded).toBe(0);
  });

  (unavailable ? test.skip : test)(
    'runs on runc: node, git, helm, kustomize and jq answer as uid 65532',
    async () => {
      const buildkit = await BuildKit.start({ registries: [registry.host] });
      try {
        const context = join(work, 'run');
        await mkdir(context, { recursive: true });
        await writeFile(
          join(context, 'Dockerfile'),
          [
            'ARG IMAGE',
            'FROM ${IMAGE} AS image',
            // The image's own user and PATH: nothing here runs as root.
            'RUN { /usr/local/bin/node /app/kube-actions.js version; git --version; helm version --short; kustomize version; id -u; jq --version; } > /tmp/answers',
            'FROM scratch',
            'COPY --from=image /tmp/answers /answers',
          ].join('\n') + '\n',
        );
        const out = join(work, 'out');
        await buildkit.run([
          'build',
          '--frontend',
          'dockerfile.v0',
          '--local',
          `context=${context}`,
          '--local',
          `dockerfile=${context}`,
          '--opt',
          `build-arg:IMAGE=${image}`,
          '--output',
          `type=local,dest=${out}`,
        ]);
        const answers = (await readFile(join(out, 'answers'), 'utf8')).trim().split('\n');
        expect(answers[0]).toBe(`kube-actions ${pkg.version}`);
        expect(answers[1]).toMatch(/^git version 2\./);
        expect(answers[2]).toMatch(/^v4\./);
        expect(answers[3]).toMatch(/^v5\./);
        expect(answers[4]).toBe('65532');
        expect(answers[5]).toMatch(/^jq-1\./);
      } finally {
        await buildkit.stop();
      }
    },
  );
});
