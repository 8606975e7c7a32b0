// Writing a render: compare with what the target already holds, then write only what changed and
// remove what is gone. Planning reads only, so a caller can report the diff without writing.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { KubeObject } from './manifest.ts';
import { toFiles, toStream } from './output.ts';
import { replaceFile, resolveTargetInside } from '../fs/paths.ts';

export type OutputMode = 'files' | 'stream';

export interface OutputPlan {
  mode: OutputMode;
  /** Resolved output: a directory (files) or a file (stream). */
  target: string;
  added: string[];
  changed: string[];
  removed: string[];
  unchanged: string[];
  /** File name (relative to target for files; the target itself for stream) -> content. */
  contents: Map<string, string>;
}

export function planChanged(plan: OutputPlan): boolean {
  return plan.added.length + plan.changed.length + plan.removed.length > 0;
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch(() => undefined);
}

export async function planOutput(
  workspace: string,
  output: string,
  objects: KubeObject[],
  mode: OutputMode,
): Promise<OutputPlan> {
  const target = await resolveTargetInside(workspace, output);
  const plan: OutputPlan = {
    mode,
    target,
    added: [],
    changed: [],
    removed: [],
    unchanged: [],
    contents: new Map(),
  };
  if (mode === 'stream') {
    const content = toStream(objects);
    plan.contents.set(target, content);
    const current = await readOrUndefined(target);
    (current === undefined ? plan.added : current === content ? plan.unchanged : plan.changed).push(output);
    return plan;
  }
  plan.contents = toFiles(objects);
  const existing = await readdir(target).catch(() => [] as string[]);
  for (const [name, content] of plan.contents) {
    const current = existing.includes(name) ? await readOrUndefined(join(target, name)) : undefined;
    (current === undefined ? plan.added : current === content ? plan.unchanged : plan.changed).push(name);
  }
  // The output directory belongs to the renderer: manifests it no longer produces are removed.
  plan.removed = existing.filter((n) => /\.ya?ml$/.test(n) && !plan.contents.has(n)).sort();
  return plan;
}

export async function writeOutput(plan: OutputPlan): Promise<void> {
  if (plan.mode === 'stream') {
    if (!planChanged(plan)) return;
    await mkdir(dirname(plan.target), { recursive: true });
    await replaceFile(plan.target, plan.contents.get(plan.target)!);
    return;
  }
  await mkdir(plan.target, { recursive: true });
  for (const name of [...plan.added, ...plan.changed])
    await replaceFile(join(plan.target, name), plan.contents.get(name)!);
  for (const name of plan.removed) await rm(join(plan.target, name));
}
