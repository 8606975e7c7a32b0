import { describe, expect, test } from '@jest/globals';
import {
  formatReference,
  isLoopbackRegistry,
  parseReference,
  registryApiHost,
} from '../../../src/core/image/reference.ts';

describe('parseReference', () => {
  test.each([
    ['nginx', { registry: 'docker.io', repository: 'library/nginx' }],
    ['acme/web:1.2', { registry: 'docker.io', repository: 'acme/web', tag: '1.2' }],
    ['ghcr.io/Acme/Web:v1', { registry: 'ghcr.io', repository: 'acme/web', tag: 'v1' }],
    ['127.0.0.1:5000/team/app', { registry: '127.0.0.1:5000', repository: 'team/app' }],
    ['localhost/app:dev', { registry: 'localhost', repository: 'app', tag: 'dev' }],
    [
      `ghcr.io/acme/web:1@sha256:${'a'.repeat(64)}`,
      { registry: 'ghcr.io', repository: 'acme/web', tag: '1', digest: `sha256:${'a'.repeat(64)}` },
    ],
    ['[::1]:5000/x', { registry: '[::1]:5000', repository: 'x' }],
  ])('%s', (input, expected) => {
    expect(parseReference(input)).toEqual(expected);
  });

  test.each([
    ['', /empty/],
    ['ghcr.io/acme/web:-bad', /tag "-bad"/],
    ['ghcr.io/acme/web@sha256:abc', /digest "sha256:abc"/],
    ['ghcr.io/acme//web', /repository "acme\/\/web"/],
    ['ghcr.io/ac me/web', /whitespace/],
    ['ghcr.io/acme/web_-x', /repository/],
    [`ghcr.io/acme/web:${'t'.repeat(129)}`, /tag/],
  ])('%j is refused with a message naming the part', (input, message) => {
    expect(() => parseReference(input)).toThrow(message);
  });

  test('round-trips through formatReference', () => {
    const ref = `127.0.0.1:5000/a/b:c@sha256:${'b'.repeat(64)}`;
    expect(formatReference(parseReference(ref))).toBe(ref);
  });

  test('Docker Hub is reached at its API host; loopback registries are plain HTTP', () => {
    expect(registryApiHost('docker.io')).toBe('registry-1.docker.io');
    expect(registryApiHost('ghcr.io')).toBe('ghcr.io');
    expect(
      ['127.0.0.1:5000', 'localhost:80', '[::1]:5000', 'ghcr.io', '10.0.0.1:5000'].map(isLoopbackRegistry),
    ).toEqual([true, true, true, false, false]);
  });
});
