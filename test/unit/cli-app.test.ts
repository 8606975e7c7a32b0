import { describe, expect, test } from '@jest/globals';
import { maskSecrets } from '../../src/cli/app.ts';

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
