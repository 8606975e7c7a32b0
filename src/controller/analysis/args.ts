// Arguments: `{{args.name}}` substitution into metrics (queries, URLs, headers, bodies, job specs,
// and counts or intervals written as strings), secret values read from Secrets at measurement
// time, and their redaction. Substitution works as Argo Rollouts' does: over the metric's JSON
// text with each value JSON-escaped, so a value can never break out of the string it lands in,
// and every `{{...}}` tag must resolve.
import type { Argument, Metric } from './types.ts';

export class ArgumentError extends Error {
  override name = 'ArgumentError';
}

/** What a secret's value becomes wherever it could be seen (status, events, logs). */
export const REDACTED = '*****';

/** Replaces every `{{ tag }}` in `template`; a tag with no value is an error (Argo's fasttemplate use). */
export function substitute(template: string, values: ReadonlyMap<string, string>, escape = false): string {
  let out = '';
  let i = 0;
  for (;;) {
    const open = template.indexOf('{{', i);
    if (open < 0) return out + template.slice(i);
    const close = template.indexOf('}}', open + 2);
    if (close < 0)
      throw new ArgumentError(
        `cannot find the end of the tag starting at ${JSON.stringify(template.slice(open, open + 30))}`,
      );
    const tag = template.slice(open + 2, close);
    const key = tag.trim();
    const value = key.startsWith('args.') ? values.get(key.slice(5)) : undefined;
    if (value === undefined) throw new ArgumentError(`failed to resolve {{${tag}}}`);
    out += template.slice(i, open) + (escape ? JSON.stringify(value).slice(1, -1) : value);
    i = close + 2;
  }
}

/** The metric with its arguments substituted (through its JSON text, values escaped). */
export function resolveMetric(metric: Metric, values: ReadonlyMap<string, string>): Metric {
  const text = JSON.stringify(metric);
  if (!text.includes('{{')) return structuredClone(metric);
  return JSON.parse(substitute(text, values, true)) as Metric;
}

/**
 * Argument values as known without reading Secrets: each secret argument stands as REDACTED. Used
 * to validate and schedule metrics and for anything written to status. Every argument needs a
 * value or a secretKeyRef by now (a fieldRef is resolved when the run is created).
 */
export function publicArgValues(args: Argument[] | undefined): Map<string, string> {
  const values = new Map<string, string>();
  for (const arg of args ?? []) {
    if (arg.value !== undefined && arg.value !== null) {
      if (arg.valueFrom?.secretKeyRef)
        throw new ArgumentError(`arg ${arg.name} has both value and valueFrom`);
      values.set(arg.name, String(arg.value));
    } else if (arg.valueFrom?.secretKeyRef) {
      values.set(arg.name, REDACTED);
    } else if (arg.valueFrom?.fieldRef) {
      throw new ArgumentError(
        `argument "${arg.name}": valueFrom.fieldRef is resolved when the run is created from templates, not in an AnalysisRun`,
      );
    } else {
      throw new ArgumentError(`argument "${arg.name}" was not supplied`);
    }
  }
  return values;
}

export interface SecretArgs {
  values: Map<string, string>;
  /** The secret values, to redact wherever text could contain them. */
  secrets: string[];
}

/** Argument values with the secrets read (`readSecret` returns a Secret's decoded data). */
export async function argValuesWithSecrets(
  args: Argument[] | undefined,
  readSecret: (name: string) => Promise<Record<string, string> | undefined>,
): Promise<SecretArgs> {
  const values = publicArgValues(args);
  const secrets = new Set<string>();
  for (const arg of args ?? []) {
    const ref = arg.valueFrom?.secretKeyRef;
    if (!ref || (arg.value !== undefined && arg.value !== null)) continue;
    const data = await readSecret(ref.name);
    if (!data) throw new ArgumentError(`secret "${ref.name}" not found`);
    const value = data[ref.key];
    if (value === undefined)
      throw new ArgumentError(`key '${ref.key}' does not exist in secret '${ref.name}'`);
    values.set(arg.name, value);
    if (value !== '') secrets.add(value);
  }
  return { values, secrets: [...secrets] };
}

/**
 * Removes secret values from text, including their JSON-escaped and URL-encoded forms (a secret
 * substituted into a URL or a JSON body may come back in an error message in either form).
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first, so a secret containing another is replaced whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (!secret) continue;
    const forms = new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
    for (const form of forms) if (form) out = out.split(form).join(REDACTED);
  }
  return out;
}

/** The environment variable a job metric's container reads a secret argument from. */
export function secretArgEnvName(arg: string): string {
  return `KUBE_ACTIONS_ARG_${arg.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/**
 * For job metrics: argument values where each secret argument is `$(VAR)`, a reference the kubelet
 * expands in a container's command, args and env values, and the env entries that define VAR from
 * the Secret itself. So the secret's value is never written into the Job (where anyone who may read
 * Jobs would see it), only a reference to the Secret that the Job's pod reads with its own account.
 */
export function jobArgValues(
  args: Argument[] | undefined,
  values: ReadonlyMap<string, string>,
): {
  values: Map<string, string>;
  env: { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } }[];
} {
  const out = new Map(values);
  const env = [];
  for (const arg of args ?? []) {
    const ref = arg.valueFrom?.secretKeyRef;
    if (!ref || (arg.value !== undefined && arg.value !== null)) continue;
    const name = secretArgEnvName(arg.name);
    out.set(arg.name, `$(${name})`);
    env.push({ name, valueFrom: { secretKeyRef: { name: ref.name, key: ref.key } } });
  }
  return { values: out, env };
}

/** The label an opted-in controller (`--analysis-secrets=labelled`) requires on Secrets it reads. */
export const ANALYSIS_SECRET_LABEL = 'kube-actions.dev/analysis-secret';

/**
 * Which Secrets analysis may read with the controller's account: `any` in the run's namespace (as
 * Argo Rollouts), or only those labelled ANALYSIS_SECRET_LABEL=true, so that whoever may create an
 * AnalysisRun (or an AnalysisTemplate a Rollout uses) cannot send other Secrets of the namespace
 * to a URL of their choosing.
 */
export type SecretPolicy = 'any' | 'labelled';

/** Throws when `policy` does not let analysis read this Secret. */
export function checkSecretAllowed(
  policy: SecretPolicy,
  secret: { metadata?: { labels?: Record<string, string> } },
  where: string,
): void {
  if (policy === 'labelled' && secret.metadata?.labels?.[ANALYSIS_SECRET_LABEL] !== 'true') {
    throw new ArgumentError(
      `secret ${where} is not labelled ${ANALYSIS_SECRET_LABEL}=true, which this controller requires of the Secrets analysis reads`,
    );
  }
}
