import { describe, expect, test } from '@jest/globals';
import {
  buildkitCommand,
  parseSecrets,
  type DockerfileBuildOptions,
} from '../../../src/core/image/buildkit.ts';

const base: DockerfileBuildOptions = {
  context: '/work/app',
  file: 'build/Dockerfile',
  target: 'runtime',
  buildArgs: ['VERSION=1.2.3'],
  platforms: [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ],
  labels: { 'org.opencontainers.image.revision': 'abc' },
  annotations: { 'org.opencontainers.image.source': 'https://github.com/acme/app' },
  secrets: [
    { id: 'npm', value: 's3cr3t-value' },
    { id: 'netrc', file: '/home/u/.netrc' },
  ],
  cacheFrom: ['type=registry,ref=ghcr.io/acme/app:cache'],
  cacheTo: ['type=gha,mode=max'],
  images: ['ghcr.io/acme/app', '127.0.0.1:5000/acme/app'],
  push: true,
  address: 'unix:///run/buildkit/buildkitd.sock',
};

describe('buildkitCommand', () => {
  test('buildctl: frontend options, secrets by env, push by digest to every name', () => {
    const { command, args, env } = buildkitCommand(base, 'buildctl', '/tmp/meta.json');
    expect(command).toBe('buildctl');
    expect(args).toEqual([
      '--addr',
      'unix:///run/buildkit/buildkitd.sock',
      'build',
      '--progress',
      'plain',
      '--frontend',
      'dockerfile.v0',
      '--local',
      'context=/work/app',
      '--local',
      'dockerfile=/work/app/build',
      '--opt',
      'filename=Dockerfile',
      '--opt',
      'target=runtime',
      '--opt',
      'platform=linux/amd64,linux/arm64',
      '--opt',
      'build-arg:VERSION=1.2.3',
      '--opt',
      'label:org.opencontainers.image.revision=abc',
      '--secret',
      'id=npm,env=KUBE_ACTIONS_BUILD_SECRET_0',
      '--secret',
      'id=netrc,src=/home/u/.netrc',
      '--import-cache',
      'type=registry,ref=ghcr.io/acme/app:cache',
      '--export-cache',
      'type=gha,mode=max',
      '--output',
      'type=image,"name=ghcr.io/acme/app,127.0.0.1:5000/acme/app",push=true,push-by-digest=true,registry.insecure=true,annotation.org.opencontainers.image.source=https://github.com/acme/app',
      '--metadata-file',
      '/tmp/meta.json',
    ]);
    // The secret's value is only in the child's environment.
    expect(env).toEqual({ KUBE_ACTIONS_BUILD_SECRET_0: 's3cr3t-value' });
    expect(args.join(' ')).not.toContain('s3cr3t-value');
  });

  test('docker buildx gets the same build', () => {
    const { command, args } = buildkitCommand({ ...base, secrets: [], cacheTo: [] }, 'buildx', '/tmp/m.json');
    expect(command).toBe('docker');
    expect(args.slice(0, 2)).toEqual(['buildx', 'build']);
    expect(args).toContain('--platform');
    expect(args[args.indexOf('--target') + 1]).toBe('runtime');
    expect(args[args.indexOf('--build-arg') + 1]).toBe('VERSION=1.2.3');
    expect(args.at(-1)).toBe('/work/app');
  });

  test('no push: the image stays in BuildKit unless other outputs are given', () => {
    const kept = buildkitCommand({ ...base, push: false, secrets: [] }, 'buildctl', '/m');
    expect(kept.args[kept.args.indexOf('--output') + 1]).toBe(
      'type=image,"name=ghcr.io/acme/app,127.0.0.1:5000/acme/app",push=false,registry.insecure=true,annotation.org.opencontainers.image.source=https://github.com/acme/app',
    );
    const local = buildkitCommand(
      { ...base, push: false, secrets: [], outputs: ['type=local,dest=out'] },
      'buildctl',
      '/m',
    );
    expect(local.args.filter((a, i) => local.args[i - 1] === '--output')).toEqual(['type=local,dest=out']);
  });

  test('a tagged image name is refused (tags come from the tags input)', () => {
    expect(() => buildkitCommand({ ...base, images: ['ghcr.io/acme/app:v1'] }, 'buildctl', '/m')).toThrow(
      /must be a name without a tag/,
    );
  });
});

describe('parseSecrets', () => {
  test('values, files and environment variables; a bad line never echoes its content', () => {
    expect(
      parseSecrets({ values: ['token=abc=def'], files: ['netrc=.netrc'], envs: ['gh=GH_TOKEN'] }, '/ws'),
    ).toEqual([
      { id: 'token', value: 'abc=def' },
      { id: 'netrc', file: '/ws/.netrc' },
      { id: 'gh', env: 'GH_TOKEN' },
    ]);
    let message = '';
    try {
      parseSecrets({ values: ['hunter2-no-id'] }, '/ws');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/secrets line is not id=/);
    expect(message).not.toContain('hunter2');
  });
});
