import { describe, expect, test } from '@jest/globals';
import { parseDurationMs } from '../../../src/core/duration.ts';
import { credentialsMatch } from '../../../src/controller/sync/controller.ts';
import { backoffMs, checkRepoURL } from '../../../src/controller/sync/reconciler.ts';
import { helmValues, instanceLabel, trackingId } from '../../../src/controller/sync/source.ts';
import type { Application } from '../../../src/controller/sync/types.ts';
import { owningApplication } from '../../../src/controller/sync/live.ts';

describe('parseDurationMs', () => {
  test.each([
    ['90s', 90_000],
    ['3m', 180_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1.5s', 1500],
    ['0', 0],
  ])('%s → %d', (text, ms) => expect(parseDurationMs(text)).toBe(ms));

  test.each(['', '3', 'm', '3x', '3m junk', '-1s'])('rejects "%s"', (text) => {
    expect(parseDurationMs(text)).toBeUndefined();
  });
});

describe("Argo CD's retry backoff", () => {
  test('duration × factor^attempt, capped at maxDuration', () => {
    const backoff = { duration: '5s', factor: 2, maxDuration: '30s' };
    expect([0, 1, 2, 3, 4].map((a) => backoffMs(backoff, a))).toEqual([5000, 10_000, 20_000, 30_000, 30_000]);
  });
  test('defaults: 5s, factor 2, 3m', () => {
    expect(backoffMs(undefined, 0)).toBe(5000);
    expect(backoffMs({}, 10)).toBe(180_000);
  });
});

describe('tracking', () => {
  const app = { metadata: { name: 'guestbook', namespace: 'apps' } } as Application;
  test("tracking ids follow Argo CD's <app>:<group>/<kind>:<namespace>/<name>, with the app's namespace", () => {
    const id = trackingId(app, { apiVersion: 'apps/v1', kind: 'Deployment' }, 'web', 'frontend');
    expect(id).toBe('apps_guestbook:apps/Deployment:web/frontend');
    expect(trackingId(app, { apiVersion: 'v1', kind: 'Namespace' }, '', 'web')).toBe(
      'apps_guestbook:/Namespace:/web',
    );
    const owner = owningApplication({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'frontend', annotations: { 'kube-actions.dev/tracking-id': id } },
    });
    expect(owner).toEqual({ namespace: 'apps', name: 'guestbook' });
  });
  test('the instance label stays a valid label value for long names', () => {
    const long = { metadata: { name: 'a'.repeat(200), namespace: 'x' } } as Application;
    const label = instanceLabel(long);
    expect(label.length).toBeLessThanOrEqual(63);
    expect(label).toMatch(/^a{50}-[0-9a-f]{8}$/);
    expect(instanceLabel(app)).toBe('guestbook');
  });
});

describe('helm values', () => {
  test('valuesObject is merged over values, deeply', () => {
    expect(helmValues('image:\n  tag: "1"\n  repo: web\nreplicas: 2\n', { image: { tag: '2' } })).toBe(
      'image:\n  tag: "2"\n  repo: web\nreplicas: 2\n',
    );
    expect(helmValues('a: 1\n', undefined)).toBe('a: 1\n');
    expect(helmValues('', undefined)).toBeUndefined();
  });

  test('an alias bomb in values is a RenderError naming the field, not a ReferenceError', () => {
    let bomb = 'a0: &a0 "lol"\n';
    for (let i = 1; i < 9; i++)
      bomb += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]\n`;
    expect(() => helmValues(bomb, { a: 1 })).toThrow(
      expect.objectContaining({
        name: 'RenderError',
        message: expect.stringMatching(/^spec\.source\.helm\.values: Excessive alias count/),
      }),
    );
  });
});

describe('repository URLs and credentials', () => {
  test.each([
    ['https://github.com/acme/gitops.git', undefined],
    ['ssh://git@github.com/acme/gitops.git', undefined],
    ['git@github.com:acme/gitops.git', undefined],
    ['file:///var/cache/kube-actions/git/mirrors/x.git', /must be an https, http, ssh or git URL/],
    ['/var/cache/kube-actions/git/mirrors/x.git', /must be an https, http, ssh or git URL/],
    ['--upload-pack=touch /tmp/pwned', /is not a repository URL/],
    ['https://user:hunter2@github.com/acme/gitops.git', /must not contain credentials/],
  ])('%s', (url, problem) => {
    const got = checkRepoURL(url);
    if (problem) expect(got).toMatch(problem);
    else expect(got).toBeUndefined();
    expect(got ?? '').not.toContain('hunter2');
  });

  test('credentials go only to the same scheme and host, and a prefix ends at a path boundary', () => {
    expect(
      credentialsMatch('exact', 'https://github.com/acme/gitops', 'https://github.com/acme/gitops.git'),
    ).toBe(true);
    expect(credentialsMatch('exact', 'https://github.com/acme/gitops', 'http://github.com/acme/gitops')).toBe(
      false,
    );
    expect(credentialsMatch('prefix', 'https://git.example.com/', 'https://git.example.com/team/app')).toBe(
      true,
    );
    expect(credentialsMatch('prefix', 'https://git.example.com/', 'https://git.example.com.evil.io/x')).toBe(
      false,
    );
    expect(credentialsMatch('prefix', 'https://github.com/org', 'https://github.com/org-evil/r')).toBe(false);
    expect(credentialsMatch('prefix', 'https://github.com/org', 'https://github.com/org/r')).toBe(true);
  });
});
