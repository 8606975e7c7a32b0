// The kube-actions command line. Each command is a thin layer over src/core.
import { parseArgs } from 'node:util';
import { VERSION } from '../version.ts';

const USAGE = `usage: kube-actions <command> [options]

commands:
  version    print the kube-actions version
`;

// Async: later commands await their work; callers already treat the result as a promise.
// eslint-disable-next-line @typescript-eslint/require-await
export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  const [command] = positionals;
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
