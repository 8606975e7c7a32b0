import { describe, expect, test } from '@jest/globals';
import {
  jobArgValues,
  argValuesWithSecrets,
  publicArgValues,
  redact,
  REDACTED,
  resolveMetric,
  substitute,
} from '../../../src/controller/analysis/args.ts';
import type { Metric } from '../../../src/controller/analysis/types.ts';

describe('substitute', () => {
  const values = new Map([
    ['svc', 'api'],
    ['q', 'a"b\nc'],
  ]);
  test('replaces {{args.x}} and {{ args.x }}', () => {
    expect(substitute('http://{{args.svc}}/x?{{ args.svc }}', values)).toBe('http://api/x?api');
  });
  test('unresolved and unterminated tags are errors, as in Argo', () => {
    expect(() => substitute('{{args.nope}}', values)).toThrow('failed to resolve {{args.nope}}');
    expect(() => substitute('{{inputs.svc}}', values)).toThrow('failed to resolve {{inputs.svc}}');
    expect(() => substitute('x {{args.svc', values)).toThrow(/cannot find the end/);
  });
  test('resolveMetric escapes values so they stay inside their JSON string', () => {
    const metric: Metric = {
      name: 'm',
      count: '{{args.n}}',
      provider: { web: { url: 'http://x/{{args.q}}', headers: [{ key: 'A', value: '{{args.q}}' }] } },
    };
    const resolved = resolveMetric(metric, new Map([...values, ['n', '3']]));
    expect(resolved.provider.web!.url).toBe('http://x/a"b\nc');
    expect(resolved.provider.web!.headers![0]!.value).toBe('a"b\nc');
    expect(resolved.count).toBe('3');
    // The input is not modified.
    expect(metric.provider.web!.url).toBe('http://x/{{args.q}}');
  });
});

describe('argument values', () => {
  test('public values stand secrets in as *****; missing values are errors', () => {
    expect(
      publicArgValues([
        { name: 'a', value: '1' },
        { name: 's', valueFrom: { secretKeyRef: { name: 'sec', key: 'k' } } },
      ]),
    ).toEqual(
      new Map([
        ['a', '1'],
        ['s', REDACTED],
      ]),
    );
    expect(() => publicArgValues([{ name: 'a' }])).toThrow('argument "a" was not supplied');
    expect(() =>
      publicArgValues([{ name: 'f', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]),
    ).toThrow(/fieldRef is resolved when the run is created/);
  });

  test('secrets are read and listed for redaction', async () => {
    const read = (name: string) => Promise.resolve(name === 'sec' ? { k: 's3cret' } : undefined);
    const got = await argValuesWithSecrets(
      [
        { name: 'a', value: '1' },
        { name: 's', valueFrom: { secretKeyRef: { name: 'sec', key: 'k' } } },
      ],
      read,
    );
    expect(got.values.get('s')).toBe('s3cret');
    expect(got.secrets).toEqual(['s3cret']);
    await expect(
      argValuesWithSecrets([{ name: 's', valueFrom: { secretKeyRef: { name: 'sec', key: 'nope' } } }], read),
    ).rejects.toThrow("key 'nope' does not exist in secret 'sec'");
    await expect(
      argValuesWithSecrets([{ name: 's', valueFrom: { secretKeyRef: { name: 'gone', key: 'k' } } }], read),
    ).rejects.toThrow('secret "gone" not found');
  });

  test('job metrics: a secret argument becomes $(VAR), defined from its Secret', () => {
    const { values, env } = jobArgValues(
      [
        { name: 'api-token', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } },
        { name: 'env', value: 'prod' },
      ],
      new Map([
        ['api-token', 'the-secret'],
        ['env', 'prod'],
      ]),
    );
    expect(Object.fromEntries(values)).toEqual({ 'api-token': '$(KUBE_ACTIONS_ARG_API_TOKEN)', env: 'prod' });
    expect(env).toEqual([
      { name: 'KUBE_ACTIONS_ARG_API_TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } },
    ]);
  });

  test('redact removes plain, JSON-escaped and URL-encoded forms', () => {
    const secret = 'p@ss "w/rd"';
    const text = `a ${secret} b ${JSON.stringify(secret)} c ${encodeURIComponent(secret)}`;
    const out = redact(text, [secret]);
    expect(out).not.toContain('p@ss');
    expect(out).not.toContain('ss%20');
    expect(out).toContain(REDACTED);
  });
});
