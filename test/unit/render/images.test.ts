import { describe, expect, test } from '@jest/globals';
import {
  applyImageOverrides,
  ImageOverrideError,
  parseImageOverride,
  parseImageRef,
} from '../../../src/core/render/images.ts';
import type { KubeObject } from '../../../src/core/render/manifest.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseImageRef', () => {
  test.each([
    ['nginx', { name: 'nginx' }],
    ['nginx:1.27', { name: 'nginx', tag: '1.27' }],
    ['localhost:5000/team/app', { name: 'localhost:5000/team/app' }],
    ['localhost:5000/team/app:v2', { name: 'localhost:5000/team/app', tag: 'v2' }],
    [`ghcr.io/o/app:v2@${DIGEST}`, { name: 'ghcr.io/o/app', tag: 'v2', digest: DIGEST }],
  ])('%s', (ref, expected) => {
    expect(parseImageRef(ref)).toEqual(expected);
  });
});

describe('parseImageOverride', () => {
  test.each([
    ['app=registry.example/app:2.0', { name: 'app', newName: 'registry.example/app', newTag: '2.0' }],
    [`app=registry.example/app@${DIGEST}`, { name: 'app', newName: 'registry.example/app', digest: DIGEST }],
    ['app=mirror.example/app', { name: 'app', newName: 'mirror.example/app' }],
    ['ghcr.io/o/app:2.0', { name: 'ghcr.io/o/app', newTag: '2.0' }],
    [`ghcr.io/o/app@${DIGEST}`, { name: 'ghcr.io/o/app', digest: DIGEST }],
  ])('%s', (spec, expected) => {
    expect(parseImageOverride(spec)).toEqual(expected);
  });

  test.each([
    ['app', /nothing to change/],
    ['app=registry.example/app:bad tag', /not a valid tag/],
    ['app@sha256:short', /not a valid digest/],
    ['=x:1', /not an image name/],
  ])('rejects %s', (spec, message) => {
    expect(() => parseImageOverride(spec)).toThrow(ImageOverrideError);
    expect(() => parseImageOverride(spec)).toThrow(message);
  });
});

describe('applyImageOverrides', () => {
  const workload = (kind: string, spec: unknown): KubeObject => ({
    apiVersion: 'apps/v1',
    kind,
    metadata: { name: kind.toLowerCase() },
    spec,
  });
  const pod = (image: string) => ({
    initContainers: [{ name: 'init', image }],
    containers: [
      { name: 'main', image },
      { name: 'sidecar', image: 'envoy:1.30' },
    ],
  });

  test('replaces containers and init containers of every workload kind, leaving others alone', () => {
    const objects = [
      workload('Deployment', { template: { spec: pod('app:1.0') } }),
      workload('StatefulSet', { template: { spec: pod('app:1.0') } }),
      workload('DaemonSet', { template: { spec: pod('app:1.0') } }),
      workload('Job', { template: { spec: pod('app:1.0') } }),
      workload('CronJob', { jobTemplate: { spec: { template: { spec: pod('app:1.0') } } } }),
      workload('Pod', pod('app:1.0')),
      workload('Rollout', { template: { spec: pod('app:1.0') } }),
      workload('ConfigMap', { template: { spec: pod('app:1.0') } }),
    ];
    const changes = applyImageOverrides(objects, [parseImageOverride('app=registry.example/app:2.0')]);
    expect(changes).toHaveLength(7 * 2);
    expect(new Set(changes.map((c) => c.to))).toEqual(new Set(['registry.example/app:2.0']));
    const cron = objects[4]!.spec as {
      jobTemplate: { spec: { template: { spec: ReturnType<typeof pod> } } };
    };
    expect(cron.jobTemplate.spec.template.spec.containers[0]!.image).toBe('registry.example/app:2.0');
    expect(cron.jobTemplate.spec.template.spec.containers[1]!.image).toBe('envoy:1.30');
    // Not a workload kind: untouched even though its shape matches.
    const cm = objects[7]!.spec as { template: { spec: ReturnType<typeof pod> } };
    expect(cm.template.spec.containers[0]!.image).toBe('app:1.0');
  });

  test('a digest replaces the tag; a rename keeps the tag', () => {
    const a = workload('Deployment', {
      template: { spec: { containers: [{ name: 'c', image: 'app:1.0' }] } },
    });
    applyImageOverrides([a], [parseImageOverride(`app@${DIGEST}`)]);
    expect(
      (a.spec as { template: { spec: { containers: [{ image: string }] } } }).template.spec.containers[0]
        .image,
    ).toBe(`app@${DIGEST}`);
    const b = workload('Deployment', {
      template: { spec: { containers: [{ name: 'c', image: 'app:1.0' }] } },
    });
    applyImageOverrides([b], [parseImageOverride('app=mirror.example/app')]);
    expect(
      (b.spec as { template: { spec: { containers: [{ image: string }] } } }).template.spec.containers[0]
        .image,
    ).toBe('mirror.example/app:1.0');
  });

  test('matches the whole name, not a prefix', () => {
    const d = workload('Deployment', {
      template: { spec: { containers: [{ name: 'c', image: 'app-worker:1.0' }] } },
    });
    expect(applyImageOverrides([d], [parseImageOverride('app:2.0')])).toEqual([]);
  });
});
