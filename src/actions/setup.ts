// The `setup` action: puts the `kube-actions` CLI on PATH for the job's later steps, as
// azure/setup-kubectl does for kubectl. The CLI is this very bundle: run with `--cli` it is the
// CLI (src/cli/main.ts), so the command on PATH is a two-line wrapper calling the runner's own
// Node 24 on it, with nothing downloaded.
import * as core from '@actions/core';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/main.ts';
import { VERSION } from '../version.ts';

const CLI_FLAG = '--cli';

/** A POSIX shell word for `s` (single-quoted). */
function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export async function run(): Promise<void> {
  const dir = join(process.env.RUNNER_TEMP || tmpdir(), 'kube-actions-cli');
  await mkdir(dir, { recursive: true });
  const command = join(dir, 'kube-actions');
  const bundle = fileURLToPath(import.meta.url);
  await writeFile(command, `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(bundle)} ${CLI_FLAG} "$@"\n`);
  await chmod(command, 0o755);
  core.addPath(dir);
  core.setOutput('version', VERSION);
  core.setOutput('path', command);
  core.info(`kube-actions ${VERSION} is on PATH: ${command}`);
}

if (process.argv[2] === CLI_FLAG) {
  main(process.argv.slice(3)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`kube-actions: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
} else {
  run().catch((err: unknown) => core.setFailed(err instanceof Error ? err.message : String(err)));
}
