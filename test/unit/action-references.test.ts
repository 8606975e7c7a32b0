// Every action reference of ours that the README and the ready-to-copy workflows show must resolve
// the way GitHub (and act) resolve it: `uses: OWNER/REPO/PATH@REF` reads PATH/action.yml from the
// repository root, and `uses: ./PATH` reads it from the workspace (this checkout in our own CI).
import { describe, expect, test } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';

const ROOT = resolve(import.meta.dirname, '..', '..');

function documents(): { file: string; text: string }[] {
  const files = ['README.md'];
  for (const dir of ['workflows', '.github/workflows']) {
    for (const name of readdirSync(join(ROOT, dir))) if (/\.ya?ml$/.test(name)) files.push(join(dir, name));
  }
  return files.map((file) => ({ file, text: readFileSync(join(ROOT, file), 'utf8') }));
}

/** The action paths (relative to the repository root) that a document's `uses:` lines name. */
function referencedActions(text: string): string[] {
  const paths: string[] = [];
  for (const match of text.matchAll(/uses:\s*['"]?([^\s'"#]+)/g)) {
    const ref = match[1]!;
    const ours = /^[^/]+\/kube-actions\/([^@]+)@/.exec(ref);
    // `<org>/kube-actions/<name>@v1` in prose names no action in particular.
    if (ours && !ours[1]!.includes('<')) paths.push(ours[1]!);
    else if (ref.startsWith('./')) paths.push(ref.slice(2).replace(/\/$/, ''));
  }
  return paths;
}

describe('action references', () => {
  test('the scanner finds both remote and local references', () => {
    const text =
      'uses: <org>/kube-actions/<name>@v1\nuses: <org>/kube-actions/build@v1\n  - uses: acme/kube-actions/render@v1.2\nuses: ./promote\nuses: actions/checkout@v5\n';
    expect(referencedActions(text)).toEqual(['build', 'render', 'promote']);
  });

  test.each(documents().map((d) => [d.file, d.text] as const))(
    '%s names only actions that exist at the repository root',
    (_file, text) => {
      const missing = referencedActions(text).filter((path) => !existsSync(join(ROOT, path, 'action.yml')));
      expect(missing).toEqual([]);
    },
  );

  test('every action.yml at the root runs a committed node24 bundle', () => {
    const actions = readdirSync(ROOT).filter((name) => existsSync(join(ROOT, name, 'action.yml')));
    expect(actions.length).toBeGreaterThanOrEqual(2);
    for (const name of actions) {
      const action = parse(readFileSync(join(ROOT, name, 'action.yml'), 'utf8')) as {
        runs: { using: string; main: string };
      };
      expect({ name, using: action.runs.using }).toEqual({ name, using: 'node24' });
      expect({ name, main: existsSync(join(ROOT, name, action.runs.main)) }).toEqual({ name, main: true });
      expect({ name, source: existsSync(join(ROOT, 'src', 'actions', `${name}.ts`)) }).toEqual({
        name,
        source: true,
      });
    }
  });
});
