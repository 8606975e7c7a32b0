// Starting and stopping the control plane's component processes.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ComponentProcess {
  name: string;
  pid: number;
  logFile: string;
  /** Settles with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string>;
}

export interface StartOptions {
  logDir: string;
  /**
   * Attached processes die with the process that started them, even when it is killed with
   * SIGKILL (a test runner that crashes must not leave an apiserver behind). Detached ones
   * outlive it (the demo cluster) and are stopped by pid.
   */
  attached: boolean;
  env?: NodeJS.ProcessEnv;
}

// A non-interactive shell gives background jobs /dev/null as stdin, so the parent's pipe is kept
// on fd 3: when the parent dies the pipe closes, `cat` returns, and the component is terminated,
// then its whole process group killed after 10 s (an apiserver whose etcd went first can take
// longer to drain). The group id cannot have been reused: this subshell is still a member. (No
// `--` before the group: dash's kill refuses it, and /bin/sh is dash on Debian.)
const WATCHDOG =
  'exec 3<&0; "$0" "$@" </dev/null & c=$!; ' +
  '(cat <&3 >/dev/null; kill -TERM $c 2>/dev/null; sleep 10; kill -KILL -$$ 2>/dev/null) & wait $c';

export function startComponent(
  name: string,
  binary: string,
  args: string[],
  options: StartOptions,
): ComponentProcess {
  const logFile = join(options.logDir, `${name}.log`);
  const log = openSync(logFile, 'a');
  const [command, argv] = options.attached ? ['/bin/sh', ['-c', WATCHDOG, binary, ...args]] : [binary, args];
  const child = spawn(command, argv, {
    // Its own process group, so stopping it also stops the watchdog and anything it started.
    detached: true,
    stdio: [options.attached ? 'pipe' : 'ignore', log, log],
    env: options.env ?? process.env,
  });
  closeSync(log);
  if (child.pid === undefined) throw new Error(`could not start ${name} (${binary})`);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(err.message));
  });
  if (!options.attached) child.unref();
  // The pipe must not keep the parent's event loop alive either.
  (child.stdin as { unref?: () => void } | null)?.unref?.();
  return { name, pid: child.pid, logFile, exited };
}

/** Whether any process of the group led by `pgid` is still alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Sends SIGTERM to the process group, then SIGKILL if it has not gone within `graceMs`. */
export async function stopProcessGroup(pid: number, graceMs = 5000): Promise<void> {
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      /* already gone */
    }
  };
  signalGroup('SIGTERM');
  const deadline = Date.now() + graceMs;
  // The group, not the leader: in attached mode the leader is the watchdog shell, which exits at
  // once while the component it started may still be shutting down.
  while (groupAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (groupAlive(pid)) {
    signalGroup('SIGKILL');
    while (groupAlive(pid)) await new Promise((r) => setTimeout(r, 20));
  }
}

/** The last lines of a component's log, for error messages. */
export function logTail(logFile: string, lines = 20): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Mount points at or below `dir`, deepest first (mountinfo's field 5, octal escapes decoded). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.split('/').length - a.split('/').length);
}
