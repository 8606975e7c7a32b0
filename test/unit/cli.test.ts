import { describe, expect, jest, test } from '@jest/globals';
import { main } from '../../src/cli/main.ts';
import pkg from '../../package.json' with { type: 'json' };

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  return {
    out,
    err,
    restore: () => {
      stdout.mockRestore();
      stderr.mockRestore();
    },
  };
}

describe('kube-actions CLI', () => {
  test('version prints the package version', async () => {
    const io = capture();
    const code = await main(['version']);
    io.restore();
    expect(code).toBe(0);
    expect(io.out.join('')).toBe(`kube-actions ${pkg.version}\n`);
  });

  test('an unknown command is a usage error (exit 2) naming the command', async () => {
    const io = capture();
    const code = await main(['frobnicate']);
    io.restore();
    expect(code).toBe(2);
    expect(io.err.join('')).toContain('unknown command "frobnicate"');
  });

  test('no command prints usage and exits 2; --help exits 0', async () => {
    const io = capture();
    expect(await main([])).toBe(2);
    expect(await main(['--help'])).toBe(0);
    io.restore();
    expect(io.out.join('')).toContain('usage: kube-actions');
  });
});
