// `kube-actions controller` as a process on the host (the bundled CLI on Node 24), for tests that
// run the controller as it ships rather than its reconcilers in-process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './ports.ts';
import { NODE24 } from './run-action.ts';

export const CLI = resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'index.js');

export interface ControllerProcess {
  process: ChildProcess;
  metricsPort: number;
  webhookPort: number;
  /** Its log lines so far (stdout and stderr). */
  logs: string[];
  stop(): Promise<void>;
}

/**
 * Starts the controller with `args` (after which free ports, a cache directory and `--log-level`
 * are appended: the last value of a flag wins) and waits until /readyz answers.
 */
export async function startControllerProcess(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; logLevel?: string } = {},
): Promise<ControllerProcess> {
  const [metricsPort, webhookPort] = await Promise.all([freePort(), freePort()]);
  const cache = await mkdtemp(join(tmpdir(), 'kube-actions-controller-'));
  const child = spawn(
    NODE24,
    [
      CLI,
      ...args,
      `--metrics-port=${metricsPort}`,
      `--webhook-port=${webhookPort}`,
      `--cache-dir=${cache}`,
      `--log-level=${options.logLevel ?? 'info'}`,
    ],
    { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    // A git child of the controller may still be finishing a write in there: retry (ENOTEMPTY).
    await rm(cache, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  };
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`the controller exited with ${child.exitCode}:\n${logs.slice(-20).join('\n')}`);
    }
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) return { process: child, metricsPort, webhookPort, logs, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the controller was not ready in time:\n${logs.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
