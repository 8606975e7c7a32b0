import { describe, expect, test } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Git, GitError } from '../../../src/core/gitops/git.ts';
import { assertNoCredentialsInURL, commitMessage, promote, PromoteError } from '../../../src/core/gitops/promote.ts';

const TOKEN = 'ghp_unit-test-token-0123456789abcdef';

describe('Git credentials', () => {
  test('a token that git echoes in its error output is scrubbed, as is its base64 form', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'git-redact-'));
    try {
      const git = new Git(dir, { credentials: { token: TOKEN } });
      await git.run(['init', '--quiet']);
      const basic = Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
      // git repeats an unknown revision verbatim: "ambiguous argument '<arg>'".
      for (const arg of [TOKEN, basic]) {
        const err = await git.run(['rev-parse', arg]).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(GitError);
        expect((err as GitError).message).toContain('***');
        expect(`${(err as GitError).message}${(err as GitError).stderr}`).not.toContain(arg);
      }
      // Nothing about the credentials is written to the repository's config.
      expect(await readFile(join(dir, '.git', 'config'), 'utf8')).not.toMatch(/extraheader|Authorization/i);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('promote input checks', () => {
  test.each(['https://user@git.example/r.git', `https://:${TOKEN}@git.example/r.git`, `https://x:${TOKEN}@git.example/r.git`])(
    'refuses a URL with credentials: %s',
    (url) => {
      expect(() => assertNoCredentialsInURL(url)).toThrow(PromoteError);
    },
  );

  test('promote refuses before running git, and the message does not repeat the URL', async () => {
    const err = await promote({
      repoURL: `https://:${TOKEN}@git.example/r.git`,
      branch: 'main',
      change: { type: 'yaml-value', file: 'v.yaml', key: 'a', value: 'b' },
      message: 'x',
    }).then(() => undefined, (e: unknown) => e);
    expect((err as Error).message).toBe('the repository URL must not contain credentials: pass the token separately');
  });

  test('commit trailers are appended after a blank line; bad trailer names are refused', () => {
    expect(commitMessage('deploy web', { 'Source-Commit': 'abc', 'Image-Digest': '' })).toBe('deploy web\n\nSource-Commit: abc\n');
    expect(() => commitMessage('x', { 'Bad Name': 'v' })).toThrow(/invalid trailer name/);
  });
});
