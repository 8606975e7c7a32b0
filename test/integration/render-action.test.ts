// The render action as the runner runs it (bundled dist under Node 24, INPUT_* env, output and
// summary files), and the same engine through the bundled CLI.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { NODE24, runAction } from '../cluster/run-action.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const DIGEST = `sha256:${'c'.repeat(64)}`;
let ws: string;

beforeAll(async () => {
  ws = await mkdtemp(join(tmpdir(), 'render-action-'));
  await cp(join(ROOT, 'gitops'), join(ws, 'gitops'), { recursive: true });
});
afterAll(() => rm(ws, { recursive: true, force: true }));

describe('render action', () => {
  const inputs = {
    path: 'gitops/apps/guestbook/overlays/staging',
    output: 'rendered/guestbook/staging',
    images: `ghcr.io/kube-actions/guestbook@${DIGEST}`,
  };

  test('renders into the output, sets outputs and writes a job summary; a re-run changes nothing', async () => {
    const first = await runAction('render', inputs, { GITHUB_WORKSPACE: ws });
    expect(first.stderr).toBe('');
    expect(first.exitCode).toBe(0);
    expect(first.outputs.changed).toBe('true');
    expect(first.outputs.type).toBe('kustomize');
    expect(first.outputs.objects).toBe('3');
    expect(JSON.parse(first.outputs.files!)).toContain('deployment-guestbook.yaml');
    expect(first.outputs.manifests).toBe(join(ws, 'rendered/guestbook/staging'));
    expect(await readFile(join(ws, inputs.output, 'deployment-guestbook.yaml'), 'utf8')).toContain(
      `image: ghcr.io/kube-actions/guestbook@${DIGEST}`,
    );
    expect(first.summary).toContain('<table>');
    expect(first.summary).toContain('deployment-guestbook.yaml');

    const second = await runAction('render', inputs, { GITHUB_WORKSPACE: ws });
    expect(second.outputs.changed).toBe('false');
    expect(JSON.parse(second.outputs.files!)).toEqual([]);
  });

  test('an override that matches nothing is a warning annotation', async () => {
    const result = await runAction(
      'render',
      { ...inputs, images: 'typo/guestbok:1.0' },
      { GITHUB_WORKSPACE: ws },
    );
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('::warning::image override "typo/guestbok" matched no container');
  });

  test('bad input fails the step with the reason and writes nothing', async () => {
    const escape = await runAction(
      'render',
      { ...inputs, path: '../../etc', output: 'rendered/x' },
      { GITHUB_WORKSPACE: ws },
    );
    expect(escape.exitCode).toBe(1);
    expect(escape.stdout).toMatch(/::error::source path "..\/..\/etc" is outside the workspace/);
    const missing = await runAction('render', { ...inputs, output: '' }, { GITHUB_WORKSPACE: ws });
    expect(missing.exitCode).toBe(1);
    expect(missing.stdout).toContain('::error::Input required and not supplied: output');
    const mode = await runAction('render', { ...inputs, mode: 'tree' }, { GITHUB_WORKSPACE: ws });
    expect(mode.exitCode).toBe(1);
    expect(mode.stdout).toContain('::error::input "mode" must be one of "files", "stream", got "tree"');
    expect(await readdir(join(ws, 'rendered'))).toEqual(['guestbook']);
  });
});

describe('kube-actions render (bundled CLI)', () => {
  const cli = join(ROOT, 'dist', 'cli', 'index.js');

  test('prints one stream to stdout with overrides applied', async () => {
    const { stdout } = await run(
      NODE24,
      [
        cli,
        'render',
        'gitops/apps/guestbook/overlays/production',
        '-i',
        'ghcr.io/kube-actions/guestbook:9.9.9',
      ],
      {
        cwd: ws,
      },
    );
    // Dependency order: the ConfigMap and Service before the Deployment that uses them.
    const at = (kind: string) => stdout.indexOf(`\nkind: ${kind}\n`);
    expect(stdout.startsWith('---\n')).toBe(true);
    expect(at('ConfigMap')).toBeGreaterThan(0);
    expect(at('ConfigMap')).toBeLessThan(at('Service'));
    expect(at('Service')).toBeLessThan(at('Deployment'));
    expect(stdout).toContain('image: ghcr.io/kube-actions/guestbook:9.9.9');
    expect(stdout).toContain('namespace: guestbook-production');
  });

  test('a failed render exits 1 with the reason on stderr', async () => {
    const bad = await run(
      NODE24,
      [cli, 'render', 'gitops/apps/guestbook/overlays/staging', '--type', 'helm'],
      { cwd: ws },
    ).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad?.code).toBe(1);
    expect(bad?.stderr).toMatch(/Chart\.yaml/);
  });
});
