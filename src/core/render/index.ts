// The render library's front door: render a source, plan the output against what the target
// holds, and write it, in that order, so a failed render writes nothing.
import { planChanged, planOutput, writeOutput, type OutputMode, type OutputPlan } from './write.ts';
import { render, type RenderOptions, type RenderResult } from './render.ts';

export * from './images.ts';
export * from './manifest.ts';
export * from './output.ts';
export * from '../fs/paths.ts';
export * from './render.ts';
export * from './write.ts';

export interface RenderToPathOptions extends RenderOptions {
  /** Output file (stream) or directory (files), relative to the workspace. */
  output: string;
  mode?: OutputMode;
  /** Plan and report, but write nothing. */
  dryRun?: boolean;
}

export interface RenderToPathResult {
  render: RenderResult;
  plan: OutputPlan;
  changed: boolean;
}

export async function renderToPath(options: RenderToPathOptions): Promise<RenderToPathResult> {
  const result = await render(options);
  const plan = await planOutput(options.workspace, options.output, result.objects, options.mode ?? 'files');
  if (!options.dryRun) await writeOutput(plan);
  return { render: result, plan, changed: planChanged(plan) };
}
