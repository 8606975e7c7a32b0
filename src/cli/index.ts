#!/usr/bin/env node
// Entry point of the bundled CLI (dist/cli/index.js); the commands live in main.ts.
import { serveCredentialHelper } from '../core/image/buildkit.ts';
import { main } from './main.ts';

// BuildKit runs this same program as its docker credential helper during `kube-actions build`.
if (!(await serveCredentialHelper())) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`kube-actions: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
