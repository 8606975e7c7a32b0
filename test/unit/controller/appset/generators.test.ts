// The ApplicationSet generators and template languages, against the parameters and renderings
// Argo CD documents for the same input.
import { describe, expect, test } from '@jest/globals';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  flatten,
  GeneratorError,
  generatorKind,
  gitDirectoryParams,
  gitFileMatcher,
  gitFileParams,
  globRegExp,
  listParams,
} from '../../../../src/controller/appset/generators.ts';
import {
  normalizeName,
  renderFast,
  renderGo,
  renderStrings,
  TemplateError,
} from '../../../../src/controller/appset/template.ts';
import { listTree, readTreeFile } from '../../../../src/controller/appset/tree.ts';

const fast = { goTemplate: false };
const go = { goTemplate: true };

describe('fasttemplate', () => {
  test('replaces known keys, spaces inside braces allowed, and leaves unknown keys as written', () => {
    expect(
      renderFast('{{cluster}}-{{ path.basename }}-{{nope}}', { cluster: 'eu', 'path.basename': 'web' }),
    ).toBe('eu-web-{{nope}}');
  });
  test('renders map keys too', () => {
    expect(renderStrings({ '{{k}}': ['{{v}}', 1] }, (s) => renderFast(s, { k: 'key', v: 'val' }))).toEqual({
      key: ['val', 1],
    });
  });
});

describe('goTemplate subset', () => {
  const params = { path: { basename: 'Web_App', segments: ['apps', 'web'] }, n: 3, list: ['a', 'b'] };
  test('field chains, functions and pipes', () => {
    expect(renderGo('{{.path.basename}}', params)).toBe('Web_App');
    expect(renderGo('{{ .path.basename | normalize }}', params)).toBe('web-app');
    expect(renderGo('{{ index .path.segments 1 }}', params)).toBe('web');
    expect(renderGo('{{ .missing | default "x" }}', params)).toBe('x');
    expect(renderGo('{{ join "," .list }}/{{.n}}', params)).toBe('a,b/3');
    expect(renderGo('a {{- " b" -}} c', params)).toBe('a bc');
    expect(renderGo('{{ .path.segments }}', params)).toBe('[apps web]');
  });
  test("a missing key prints Go's <no value>, or fails with missingkey=error", () => {
    expect(renderGo('{{.nope}}', params)).toBe('<no value>');
    expect(() => renderGo('{{.nope}}', params, { missingKey: 'error' })).toThrow(/no entry for key "nope"/);
  });
  test('control structures, variables and parentheses are refused, never rendered differently', () => {
    expect(() => renderGo('{{if .n}}x{{end}}', params)).toThrow(TemplateError);
    expect(() => renderGo('{{ $x := 1 }}', params)).toThrow(/variables/);
    expect(() => renderGo('{{ upper (lower .n) }}', params)).toThrow(/parenthesised/);
    expect(() => renderGo('{{ env "HOME" }}', params)).toThrow(
      /env is not a function this template supports/,
    );
    expect(() => renderGo('{{ .a', params)).toThrow(/unclosed/);
  });
  test("normalize follows Argo CD's", () => {
    expect(normalizeName('-My_App.v2!-')).toBe('my-app.v2');
  });
});

describe('generators', () => {
  test('the kind: exactly one, and only the supported ones', () => {
    expect(generatorKind({ list: { elements: [] } })).toBe('list');
    expect(() => generatorKind({ clusters: {} })).toThrow(/clusters generator is not supported/);
    expect(() => generatorKind({ list: { elements: [] }, git: { repoURL: 'x' } })).toThrow(/several kinds/);
  });

  test('list: strings only without goTemplate, values.* flattened; anything with goTemplate', () => {
    expect(listParams({ elements: [{ cluster: 'eu', values: { size: '3' } }] }, fast)).toEqual([
      { cluster: 'eu', 'values.size': '3' },
    ]);
    expect(() => listParams({ elements: [{ replicas: 3 }] }, fast)).toThrow(/replicas is not a string/);
    expect(listParams({ elements: [{ replicas: 3, tags: ['a'] }] }, go)).toEqual([
      { replicas: 3, tags: ['a'] },
    ]);
  });

  test('path.Match semantics for directories: * stops at /, [] classes, exclude wins', () => {
    const dirs = ['apps', 'apps/api', 'apps/web', 'apps/web/config', 'apps/x-old', 'other'];
    const gen = { repoURL: 'r', directories: [{ path: 'apps/*' }, { path: 'apps/*-old', exclude: true }] };
    expect(gitDirectoryParams(gen, dirs, fast).map((p) => p.path)).toEqual(['apps/api', 'apps/web']);
    expect(gitDirectoryParams(gen, dirs, fast)[1]).toEqual({
      path: 'apps/web',
      'path.basename': 'web',
      'path.basenameNormalized': 'web',
      'path[0]': 'apps',
      'path[1]': 'web',
    });
    expect(globRegExp('apps/[a-v]*', false).matches('apps/web')).toBe(false);
    expect(globRegExp('apps/[^w]*', false).matches('apps/api')).toBe(true);
    expect(globRegExp('a?c', false).matches('a/c')).toBe(false);
    expect(() => globRegExp('apps/[', false)).toThrow(GeneratorError);
  });

  test('goTemplate path parameters are nested, with segments; pathParamPrefix and values apply', () => {
    const gen = {
      repoURL: 'r',
      directories: [{ path: 'apps/*' }],
      pathParamPrefix: 'src',
      values: { name: '{{ .src.path.basename }}-prod' },
    };
    expect(gitDirectoryParams(gen, ['apps/Web_1'], go)).toEqual([
      {
        src: {
          path: {
            path: 'apps/Web_1',
            basename: 'Web_1',
            basenameNormalized: 'web-1',
            segments: ['apps', 'Web_1'],
          },
        },
        values: { name: 'Web_1-prod' },
      },
    ]);
  });

  test("files: git's glob (* crosses /), one set per object, flattened without goTemplate", () => {
    const gen = {
      repoURL: 'r',
      files: [{ path: 'clusters/**/config.yaml' }, { path: 'clusters/old/**', exclude: true }],
    };
    const keep = gitFileMatcher(gen);
    expect(
      [
        'clusters/eu/config.yaml',
        'clusters/a/b/config.yaml',
        'clusters/old/x/config.yaml',
        'clusters/config.yaml',
      ].filter(keep),
    ).toEqual(['clusters/eu/config.yaml', 'clusters/a/b/config.yaml']);
    const files = [
      {
        path: 'clusters/eu/config.yaml',
        content: 'cluster:\n  name: eu\n  zones: [a, b]\nreplicas: 2\nempty: null\n',
      },
      {
        path: 'clusters/us/config.json',
        content: '[{"cluster": {"name": "us1"}}, {"cluster": {"name": "us2"}}]',
      },
    ];
    const flat = gitFileParams(gen, files, fast);
    expect(flat).toHaveLength(3);
    expect(flat[0]).toEqual({
      'cluster.name': 'eu',
      'cluster.zones.0': 'a',
      'cluster.zones.1': 'b',
      replicas: '2',
      empty: '<nil>',
      path: 'clusters/eu',
      'path.basename': 'eu',
      'path.basenameNormalized': 'eu',
      'path.filename': 'config.yaml',
      'path.filenameNormalized': 'config.yaml',
      'path[0]': 'clusters',
      'path[1]': 'eu',
    });
    expect(flat.slice(1).map((p) => p['cluster.name'])).toEqual(['us1', 'us2']);
    const nested = gitFileParams(gen, files.slice(0, 1), go)[0]!;
    expect(nested.cluster).toEqual({ name: 'eu', zones: ['a', 'b'] });
    expect((nested.path as { filename: string }).filename).toBe('config.yaml');
  });

  test('files: bad YAML, a scalar and a billion-laughs file are errors naming the file', () => {
    const gen = { repoURL: 'r', files: [{ path: '*' }] };
    expect(() => gitFileParams(gen, [{ path: 'a.yaml', content: 'a: [' }], fast)).toThrow(/a.yaml: not YAML/);
    expect(() => gitFileParams(gen, [{ path: 'b.yaml', content: '42' }], fast)).toThrow(
      /b.yaml: item 0 is not an object/,
    );
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++)
      laughs.push(`${'bcdefghi'[i]}: &${'bcdefghi'[i]} [${Array(10).fill(`*${'abcdefgh'[i]}`).join(', ')}]`);
    expect(() => gitFileParams(gen, [{ path: 'c.yaml', content: laughs.join('\n') }], fast)).toThrow(
      /c.yaml/,
    );
  });

  test('flatten prints like Go %v', () => {
    expect(flatten({ a: { b: true, c: [1, { d: 'x' }] } })).toEqual({
      'a.b': 'true',
      'a.c.0': '1',
      'a.c.1.d': 'x',
    });
  });
});

describe('the tree a git generator reads', () => {
  test('directories skip hidden ones and their subtree; files keep them; symlinks and huge files are refused', async () => {
    const root = await mkdtemp(join(tmpdir(), 'appset-tree-'));
    try {
      for (const d of ['apps/web', '.hidden/inner', 'apps/.cfg', '.git/objects'])
        await mkdir(join(root, d), { recursive: true });
      await writeFile(join(root, 'apps/web/a.yaml'), 'a: 1\n');
      await writeFile(join(root, '.hidden/inner/b.yaml'), 'b: 1\n');
      await writeFile(join(root, '.git/objects/x'), 'x');
      await symlink('/etc/passwd', join(root, 'apps/link.yaml'));
      await writeFile(join(root, 'big.yaml'), Buffer.alloc(1024 * 1024 + 1, 'a'));
      const tree = await listTree(root);
      expect(tree.directories).toEqual(['apps', 'apps/web']);
      expect(tree.files).toEqual(['.hidden/inner/b.yaml', 'apps/web/a.yaml', 'big.yaml']);
      expect(await readTreeFile(root, 'apps/web/a.yaml')).toBe('a: 1\n');
      await expect(readTreeFile(root, 'apps/link.yaml')).rejects.toThrow(/not a regular file/);
      await expect(readTreeFile(root, 'big.yaml')).rejects.toThrow(/more than the 1048576/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
