// The kube-actions command line. Each command is a thin layer over src/core.
import { parseArgs } from 'node:util';
import { VERSION } from '../version.ts';
import { appCommand } from './app.ts';
import { buildCommand } from './build.ts';
import { controllerCommand } from './controller.ts';
import { dispatchCommand } from './dispatch.ts';
import { promoteCommand } from './promote.ts';
import { renderCommand } from './render.ts';
import { rolloutCommand } from './rollout.ts';

const USAGE = `usage: kube-actions <command> [options]

commands:
  build      build an image (layers without a daemon, or a Dockerfile through BuildKit) and push it
  render     render kustomize / Helm / plain YAML into final manifests
  promote    commit rendered manifests or an image bump to a GitOps repository
  dispatch   start a workflow_dispatch run and wait for it
  controller run the GitOps controller (Application sync) against a cluster
  app        list, get, diff, sync and roll back Applications
  rollout    get, watch, promote, abort, retry, undo, pause and set images of Rollouts
  version    print the kube-actions version

Run 'kube-actions <command> --help' for a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  const [command] = positionals;
  const rest = argv.slice(argv.indexOf(command ?? '') + 1);
  if (command === 'build') return await buildCommand(rest);
  if (command === 'render') return await renderCommand(rest);
  if (command === 'promote') return await promoteCommand(rest);
  if (command === 'dispatch') return await dispatchCommand(rest);
  if (command === 'controller') return await controllerCommand(rest);
  if (command === 'app') return await appCommand(rest);
  if (command === 'rollout') return await rolloutCommand(rest);
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  switch (command) {
    case 'version':
      process.stdout.write(`kube-actions ${VERSION}\n`);
      return 0;
    default:
      process.stderr.write(`kube-actions: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}
