import { describe, expect, test } from '@jest/globals';
import { assertNoDuplicates, ManifestError, parseManifests } from '../../../src/core/render/manifest.ts';

const cm = (name: string, ns?: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n${ns ? `  namespace: ${ns}\n` : ''}`;

function problemsOf(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (err instanceof ManifestError) return err.problems;
    throw err;
  }
  throw new Error('expected a ManifestError');
}

describe('parseManifests', () => {
  test('parses multi-document YAML, skipping empty documents and recording lines', () => {
    const text = `${cm('a')}---\n# only a comment\n---\n${cm('b')}`;
    const manifests = parseManifests(text, 'app.yaml');
    expect(manifests.map((m) => m.object.metadata.name)).toEqual(['a', 'b']);
    expect(manifests.map((m) => m.line)).toEqual([1, 8]);
  });

  test('flattens a List', () => {
    const text =
      'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n';
    expect(parseManifests(text, 'l.yaml').map((m) => m.object.kind)).toEqual(['ConfigMap']);
  });

  test('invalid YAML is reported with file and line', () => {
    const problems = problemsOf(() => parseManifests(`${cm('a')}---\nkind: [unclosed\n`, 'bad.yaml'));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.source).toBe('bad.yaml');
    expect(problems[0]!.line).toBeGreaterThanOrEqual(6);
  });

  test('duplicate keys are an error, not a silent last-wins', () => {
    const problems = problemsOf(() => parseManifests(`${cm('a')}  name: b\n`, 'dup.yaml'));
    expect(problems[0]!.message).toMatch(/unique|duplicate/i);
  });

  test('every missing required field is named, for every bad document', () => {
    const text =
      'kind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {generateName: x-}\n';
    const problems = problemsOf(() => parseManifests(text, 'm.yaml'));
    expect(problems.map((p) => [p.line, p.message])).toEqual([
      [1, 'ConfigMap object is missing apiVersion'],
      [4, 'Secret object is missing metadata.name'],
    ]);
  });

  test('only hooks may go without a name, and then only with generateName', () => {
    const hook = (annotation: string) =>
      `apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: notify-\n  annotations:\n    ${annotation}: PostSync\n`;
    for (const a of ['argocd.argoproj.io/hook', 'helm.sh/hook']) {
      expect(parseManifests(hook(a), 'h.yaml').map((m) => m.object.metadata.generateName)).toEqual([
        'notify-',
      ]);
    }
    const nameless =
      'apiVersion: batch/v1\nkind: Job\nmetadata:\n  annotations:\n    helm.sh/hook: post-install\n';
    expect(problemsOf(() => parseManifests(nameless, 'h.yaml'))[0]!.message).toBe(
      'Job object is missing metadata.name',
    );
  });

  test('a scalar document is not a manifest', () => {
    expect(problemsOf(() => parseManifests('just a string\n', 's.yaml'))[0]!.message).toMatch(
      /must be a mapping/,
    );
  });
});

describe('assertNoDuplicates', () => {
  test('the same object twice names both places', () => {
    const manifests = [
      ...parseManifests(cm('a', 'prod'), 'one.yaml'),
      ...parseManifests(cm('a', 'prod'), 'two.yaml'),
    ];
    const problems = problemsOf(() => assertNoDuplicates(manifests));
    expect(problems[0]!.message).toBe(
      'duplicate ConfigMap "a" in namespace prod (first defined at one.yaml:1)',
    );
  });

  test('same name in another namespace or group is a different object', () => {
    const manifests = [
      ...parseManifests(cm('a', 'prod'), 'one.yaml'),
      ...parseManifests(cm('a', 'staging'), 'two.yaml'),
      ...parseManifests(
        'apiVersion: example.com/v1\nkind: ConfigMap\nmetadata: {name: a, namespace: prod}\n',
        'three.yaml',
      ),
    ];
    expect(() => assertNoDuplicates(manifests)).not.toThrow();
  });
});
