import { describe, expect, test } from '@jest/globals';
import { describeApplication, maskSecrets } from '../../src/cli/app.ts';
import type { Application } from '../../src/controller/sync/types.ts';

describe('app diff masks Secrets', () => {
  test('values never show; a changed value is marked as changed', () => {
    const live = {
      kind: 'Secret',
      metadata: { name: 's' },
      data: { password: 'aHVudGVyMg==', user: 'YWRtaW4=' },
    };
    const desired = {
      kind: 'Secret',
      metadata: { name: 's' },
      data: { password: 'bmV3cGFzcw==', user: 'YWRtaW4=' },
    };
    const [l, d] = maskSecrets(live, desired);
    expect(JSON.stringify([l, d])).not.toMatch(/aHVudGVyMg|bmV3cGFzcw|YWRtaW4/);
    expect(d).toEqual({
      kind: 'Secret',
      metadata: { name: 's' },
      data: { password: '******** (changed)', user: '********' },
    });
    expect(l).toEqual({
      kind: 'Secret',
      metadata: { name: 's' },
      data: { password: '******** (changed)', user: '********' },
    });
  });
  test('other kinds pass through', () => {
    const cm = { kind: 'ConfigMap', data: { a: '1' } };
    expect(maskSecrets(cm, cm)).toEqual([cm, cm]);
  });
});

describe('app get', () => {
  const base: Application = {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name: 'web', namespace: 'apps' },
    spec: {
      source: { repoURL: 'https://git.example/web.git', path: 'deploy' },
      destination: { namespace: 'web' },
    },
    status: { sync: { status: 'Synced', revision: 'a'.repeat(40) }, sourceType: 'directory' },
  };

  test('one source: its repository, path, revision and type', () => {
    const text = describeApplication(base);
    expect(text).toContain('Source:         https://git.example/web.git deploy @ HEAD (directory)\n');
    expect(text).toContain(`Sync Status:    Synced to ${'a'.repeat(12)}\n`);
  });

  test('multiple sources: one line each, the ref-only source without a type, each revision shortened', () => {
    const text = describeApplication({
      ...base,
      spec: {
        ...base.spec,
        sources: [
          { repoURL: 'https://charts.example', chart: 'web', targetRevision: '1.x' },
          { repoURL: 'https://git.example/values.git', ref: 'values' },
          { repoURL: 'https://git.example/extra.git', path: 'extra' },
        ],
      },
      status: {
        sync: { status: 'Synced', revision: `1.2.0,${'b'.repeat(40)},${'c'.repeat(40)}` },
        sourceTypes: ['helm', 'directory'],
      },
    });
    expect(text).toContain(
      [
        'Sources:',
        '  1. https://charts.example chart web @ 1.x (helm)',
        '  2. https://git.example/values.git . @ HEAD (ref values)',
        '  3. https://git.example/extra.git extra @ HEAD (directory)',
      ].join('\n'),
    );
    expect(text).not.toContain('web.git');
    expect(text).toContain(`Synced to 1.2.0,${'b'.repeat(12)},${'c'.repeat(12)}\n`);
  });
});
