import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dockerConfigCredentials, withExplicitCredentials } from '../../../src/core/image/credentials.ts';

let work: string;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'creds-test-'));
  const bin = join(work, 'bin');
  await mkdir(bin);
  // A real credential helper program, as docker-credential-pass or -ecr-login are: reads the
  // server on stdin, answers JSON, or "not found" with exit 1.
  await writeFile(
    join(bin, 'docker-credential-fake'),
    [
      '#!/bin/sh',
      'read server',
      'case "$server" in',
      '  helper.example.com) printf \'{"ServerURL":"%s","Username":"robot","Secret":"from-helper"}\' "$server" ;;',
      '  token.example.com) printf \'{"Username":"<token>","Secret":"refresh-me"}\' ;;',
      '  broken.example.com) echo "keychain locked" >&2; exit 3 ;;',
      '  *) echo "credentials not found in native keychain"; exit 1 ;;',
      'esac',
    ].join('\n') + '\n',
  );
  await chmod(join(bin, 'docker-credential-fake'), 0o755);
  env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
});
afterAll(() => rm(work, { recursive: true, force: true }));

async function config(value: unknown): Promise<string> {
  const dir = await mkdtemp(join(work, 'cfg-'));
  await writeFile(join(dir, 'config.json'), JSON.stringify(value));
  return join(dir, 'config.json');
}

describe('docker config.json credentials', () => {
  test('auths entries (base64 auth, Docker Hub legacy key) and credHelpers', async () => {
    const path = await config({
      auths: {
        'ghcr.io': { auth: Buffer.from('octocat:ghp_secret').toString('base64') },
        'https://index.docker.io/v1/': { auth: Buffer.from('hubuser:hubpass').toString('base64') },
        'plain.example.com': { username: 'u', password: 'p' },
      },
      credHelpers: { 'helper.example.com': 'fake', 'token.example.com': 'fake' },
    });
    const source = dockerConfigCredentials(path, env);
    expect(await source('ghcr.io')).toEqual({ username: 'octocat', password: 'ghp_secret' });
    expect(await source('docker.io')).toEqual({ username: 'hubuser', password: 'hubpass' });
    expect(await source('plain.example.com')).toEqual({ username: 'u', password: 'p' });
    expect(await source('helper.example.com')).toEqual({ username: 'robot', password: 'from-helper' });
    expect(await source('token.example.com')).toEqual({
      username: '',
      password: '',
      identityToken: 'refresh-me',
    });
    expect(await source('quay.io')).toBeUndefined();
  });

  test('credsStore answers for every registry; "not found" means anonymous; a failing helper is an error', async () => {
    const source = dockerConfigCredentials(await config({ credsStore: 'fake' }), env);
    expect(await source('helper.example.com')).toEqual({ username: 'robot', password: 'from-helper' });
    expect(await source('unknown.example.com')).toBeUndefined();
    await expect(source('broken.example.com')).rejects.toThrow(
      /docker-credential-fake failed .*exit 3.*keychain locked/,
    );
  });

  test('a missing helper, a missing file and broken JSON', async () => {
    await expect(dockerConfigCredentials(await config({ credsStore: 'nope' }), env)('x.io')).rejects.toThrow(
      /docker-credential-nope is not on PATH/,
    );
    expect(await dockerConfigCredentials(join(work, 'none', 'config.json'), env)('x.io')).toBeUndefined();
    const dir = await mkdtemp(join(work, 'bad-'));
    await writeFile(join(dir, 'config.json'), '{"auths": {"x.io": {"auth": "c2VjcmV0"');
    const err = await dockerConfigCredentials(join(dir, 'config.json'), env)('x.io').catch((e: Error) => e);
    expect((err as Error).message).toBe(`${join(dir, 'config.json')} is not valid JSON`);
  });

  test('explicit credentials win for their registry only', async () => {
    const fallback = dockerConfigCredentials(
      await config({ auths: { 'ghcr.io': { auth: Buffer.from('a:b').toString('base64') } } }),
      env,
    );
    const source = withExplicitCredentials(
      { registry: 'registry.example.com:5000', credentials: { username: 'ci', password: 'tok' } },
      fallback,
    );
    expect(await source('registry.example.com:5000')).toEqual({ username: 'ci', password: 'tok' });
    expect(await source('ghcr.io')).toEqual({ username: 'a', password: 'b' });
  });
});
