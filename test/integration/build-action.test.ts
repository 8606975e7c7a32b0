// The build action run as the runner runs it (node24 build/dist/index.js with INPUT_* variables),
// against the real registry: the tags docker/metadata-action's rules give for each kind of event,
// the outputs, and bad input.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OciRegistry } from '../cluster/registry.ts';
import { runAction } from '../cluster/run-action.ts';

let work: string;
let registry: OciRegistry;
const user = { username: 'pipeline', password: 'registry-password-1234' };
const SHA = '0123456789abcdef0123456789abcdef01234567';

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'build-action-'));
  registry = await OciRegistry.start({ auth: user });
  await mkdir(join(work, 'app', 'bin'), { recursive: true });
  await writeFile(join(work, 'app', 'bin', 'server'), '#!/bin/sh\necho v1\n');
  await chmod(join(work, 'app', 'bin', 'server'), 0o755);
});
afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

async function tagsOf(repository: string): Promise<string[]> {
  const res = await fetch(`${registry.url}/v2/${repository}/tags/list`, {
    headers: { authorization: registry.authorization()! },
  });
  return res.ok ? ((await res.json()) as { tags: string[] }).tags.sort() : [];
}

async function event(payload: unknown): Promise<string> {
  const path = join(work, `event-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(path, JSON.stringify(payload));
  return path;
}

function build(repository: string, env: Record<string, string>, inputs: Record<string, string> = {}) {
  return runAction(
    'build',
    {
      images: `${registry.host}/${repository}`,
      layers: 'app:/app',
      entrypoint: '/app/bin/server',
      username: user.username,
      password: user.password,
      'source-date-epoch': '1700000000',
      ...inputs,
    },
    {
      GITHUB_WORKSPACE: work,
      GITHUB_REPOSITORY: 'acme/web',
      GITHUB_SHA: SHA,
      GITHUB_SERVER_URL: 'https://github.com',
      ...env,
    },
  );
}

describe('build action (as the runner runs it)', () => {
  test('push to main: branch and sha tags, outputs ready for render and promote', async () => {
    const run = await build(
      'acme/main',
      {
        GITHUB_EVENT_NAME: 'push',
        GITHUB_REF: 'refs/heads/main',
        GITHUB_EVENT_PATH: await event({ repository: { default_branch: 'main' } }),
      },
      { tags: 'type=ref,event=branch\ntype=sha' },
    );
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    expect(run.outputs.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(run.outputs.image).toBe(`${registry.host}/acme/main@${run.outputs.digest}`);
    expect(run.outputs.tags!.split('\n')).toEqual([
      `${registry.host}/acme/main:main`,
      `${registry.host}/acme/main:sha-0123456`,
    ]);
    expect(await tagsOf('acme/main')).toEqual(['main', 'sha-0123456']);
    const metadata = JSON.parse(run.outputs.metadata!) as {
      stats: { uploaded: number };
      platforms: string[];
    };
    expect(metadata.platforms).toEqual(['linux/amd64']);
    expect(run.outputs.labels).toContain(`org.opencontainers.image.revision=${SHA}`);
    expect(run.summary).toContain(run.outputs.digest!);
    // The password is masked for the rest of the job, and never printed.
    expect(run.stdout).toContain(`::add-mask::${user.password}`);
    expect(run.stdout.replace(`::add-mask::${user.password}`, '')).not.toContain(user.password);
  });

  test('a tag v1.2.3: semver tags and latest', async () => {
    const run = await build(
      'acme/release',
      { GITHUB_EVENT_NAME: 'push', GITHUB_REF: 'refs/tags/v1.2.3' },
      {
        tags: 'type=semver,pattern={{version}}\ntype=semver,pattern={{major}}.{{minor}}\ntype=semver,pattern={{major}}',
      },
    );
    expect(run.exitCode).toBe(0);
    expect(await tagsOf('acme/release')).toEqual(['1', '1.2', '1.2.3', 'latest']);
    expect(run.outputs.version).toBe('1.2.3');
  });

  test('a pull request: pr-7 and the sanitized source branch', async () => {
    const run = await build(
      'acme/pr',
      {
        GITHUB_EVENT_NAME: 'pull_request',
        GITHUB_REF: 'refs/pull/7/merge',
        GITHUB_HEAD_REF: 'feature/Login_Fix',
        GITHUB_BASE_REF: 'main',
        GITHUB_EVENT_PATH: await event({
          number: 7,
          pull_request: { number: 7, head: { ref: 'feature/Login_Fix' } },
        }),
      },
      { tags: 'type=ref,event=pr\ntype=ref,event=pr-branch' },
    );
    expect(run.exitCode).toBe(0);
    expect(await tagsOf('acme/pr')).toEqual(['pr-7', 'pr-feature-Login_Fix']);
  });

  test('a schedule with the default rules: nightly, and the branch (as metadata-action does: the ref is a branch)', async () => {
    const run = await build('acme/nightly', { GITHUB_EVENT_NAME: 'schedule', GITHUB_REF: 'refs/heads/main' });
    expect(run.exitCode).toBe(0);
    expect(await tagsOf('acme/nightly')).toEqual(['main', 'nightly']);
  });

  test('bad input: an invalid image name, a missing layer and rejected credentials each fail clearly, tagging nothing', async () => {
    const env = { GITHUB_EVENT_NAME: 'push', GITHUB_REF: 'refs/heads/main' };
    const invalid = await build('Acme/Bad Name', env);
    expect(invalid.exitCode).toBe(1);
    expect(invalid.stdout).toMatch(/::error::invalid image name .*Bad Name/);

    const missing = await build('acme/missing', env, { layers: 'no-such-dir:/app' });
    expect(missing.exitCode).toBe(1);
    expect(missing.stdout).toMatch(/::error::layer source .*no-such-dir does not exist/);

    const rejected = await build('acme/rejected', env, { password: 'not-the-password-xyz' });
    expect(rejected.exitCode).toBe(1);
    expect(rejected.stdout).toMatch(/::error::.*credentials for .* were rejected/);
    expect(rejected.stdout.replace('::add-mask::not-the-password-xyz', '')).not.toContain(
      'not-the-password-xyz',
    );
    expect(await tagsOf('acme/rejected')).toEqual([]);
  });
});
