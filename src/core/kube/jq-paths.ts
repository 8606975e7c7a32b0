// ignoreDifferences' jqPathExpressions, evaluated by jq itself (Debian's `jq` package, in the
// controller's image): `[path(EXPR)]` over the live object gives the fields the expression
// names, the same fields Argo CD's gojq `del(EXPR)` removes. A separate process, not a jq built
// into this one: an expression comes from whoever may write an Application, and jq runs any
// program (`def f: f; f` never ends), so it runs with a deadline (Argo CD's default: 1 s) and is
// killed past it, never blocking the event loop; and it runs with no environment but PATH and
// without the builtins that read outside its input, so an error message cannot carry a secret.
import { execFile } from 'node:child_process';
import { IgnoreRuleError, type FieldPath } from './ignore-differences.ts';

export const JQ_TIMEOUT_MS = 1000;

/**
 * Builtins that reach beyond the object (environment, files, other inputs, stderr); a field of
 * the same name (`.env`) is fine.
 */
const REFUSED =
  /\$ENV|\$__prog_args|\$__loc__|(?<![.\w$])(env|input|inputs|input_filename|debug|stderr|halt_error|import|include|get_search_list|modulemeta)\b/;

export class JqError extends IgnoreRuleError {
  override name = 'JqError';
}

/** The paths `expression` names in `obj`; throws JqError with jq's message when it cannot. */
export async function jqPaths(
  expression: string,
  obj: unknown,
  timeoutMs = JQ_TIMEOUT_MS,
): Promise<FieldPath[]> {
  const refused = REFUSED.exec(expression);
  if (refused)
    throw new JqError(`jq expression ${JSON.stringify(expression)}: ${refused[0]} is not allowed here`);
  const out = await new Promise<string>((resolve, reject) => {
    const child = execFile(
      'jq',
      ['--compact-output', `[path(${expression})]`],
      // PATH alone, to find jq wherever it is installed: no variable that could hold a secret.
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 4 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        if (e.code === 'ENOENT')
          return reject(
            new JqError('jqPathExpressions need the jq program on PATH (the Debian/Ubuntu package jq)'),
          );
        if (e.killed)
          return reject(
            new JqError(`jq expression ${JSON.stringify(expression)} took longer than ${timeoutMs} ms`),
          );
        const message = stderr.trim().split('\n')[0]?.slice(0, 300) || e.message;
        reject(new JqError(`jq expression ${JSON.stringify(expression)}: ${message}`));
      },
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(JSON.stringify(obj));
  });
  const paths = JSON.parse(out) as unknown;
  if (!Array.isArray(paths) || !paths.every((p) => Array.isArray(p)))
    throw new JqError(`jq expression ${JSON.stringify(expression)} did not name fields`);
  return paths as FieldPath[];
}
