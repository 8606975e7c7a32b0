// The two template languages of an ApplicationSet's `template`, applied to each string in it:
// - without goTemplate, Argo CD's fasttemplate: `{{key}}` (spaces inside allowed) is replaced by
//   the flat parameter `key` (e.g. `path.basename`, `path[0]`); an unknown key stays as written;
// - with goTemplate, Go's text/template over nested parameters (`{{.path.basename}}`).
//   No maintained JavaScript implementation of text/template exists, so this is a subset, and
//   anything outside it is refused with an error naming it rather than rendered differently:
//   `{{ pipeline }}` actions (with `{{-`/`-}}` trimming) whose pipeline is a field chain
//   (`.a.b`), a string or number literal, or a call of one of FUNCTIONS, then `| fn args`.
//   Control structures (if, range, with, define, template, block) and variables are refused.
//   missingkey: `default` prints Go's `<no value>`, `error` fails, as goTemplateOptions says.
// https://argo-cd.readthedocs.io/en/stable/operator-manual/applicationset/GoTemplate/
import { stringify } from 'yaml';
import { compareStrings } from '../../core/order.ts';

export class TemplateError extends Error {
  override name = 'TemplateError';
}

export type Params = Record<string, unknown>;

/** fasttemplate: `{{ key }}` from flat string parameters; unknown keys are left as they are. */
export function renderFast(text: string, params: Readonly<Record<string, string>>): string {
  return text.replace(/\{\{([^{}]*)\}\}/g, (whole, key: string) => {
    const value = params[key.trim()];
    return value === undefined ? whole : value;
  });
}

export interface GoTemplateOptions {
  /** Go's missingkey option: `default`/`zero`... prints `<no value>`; `error` refuses. */
  missingKey?: 'default' | 'error';
}

const NO_VALUE = '<no value>';
const REFUSED_KEYWORDS = new Set([
  'if',
  'else',
  'end',
  'range',
  'with',
  'define',
  'template',
  'block',
  'break',
  'continue',
]);

/** Argo CD's `normalize`: lowercase, runs of characters invalid in a DNS name become `-`. */
export function normalizeName(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '');
}

type Fn = (...args: unknown[]) => unknown;
const str = (v: unknown): string => (typeof v === 'string' ? v : printValue(v));

/** Sprig's names and argument order (the piped value comes last). */
const FUNCTIONS: Readonly<Record<string, Fn>> = {
  lower: (s) => str(s).toLowerCase(),
  upper: (s) => str(s).toUpperCase(),
  title: (s) => str(s).replace(/\b\w/g, (c) => c.toUpperCase()),
  trim: (s) => str(s).trim(),
  trimPrefix: (p, s) => (str(s).startsWith(str(p)) ? str(s).slice(str(p).length) : str(s)),
  trimSuffix: (p, s) => (str(s).endsWith(str(p)) ? str(s).slice(0, -str(p).length || undefined) : str(s)),
  replace: (old, neu, s) => str(s).split(str(old)).join(str(neu)),
  quote: (s) => JSON.stringify(str(s)),
  squote: (s) => `'${str(s)}'`,
  default: (d, v) => (v === undefined || v === null || v === '' || v === false || v === 0 ? d : v),
  normalize: (s) => normalizeName(str(s)),
  join: (sep, list) => (Array.isArray(list) ? list.map(str).join(str(sep)) : str(list)),
  toJson: (v) => JSON.stringify(v ?? null),
  toYaml: (v) => stringify(v ?? null).trimEnd(),
  index: (container, ...keys) => {
    let v = container;
    for (const k of keys) {
      if (Array.isArray(v) && typeof k === 'number') v = v[k];
      else if (v && typeof v === 'object') v = (v as Record<string, unknown>)[str(k)];
      else throw new TemplateError(`index of ${printValue(v)} with ${printValue(k)}`);
    }
    return v;
  },
};

/** How Go's text/template prints a value. */
function printValue(v: unknown): string {
  if (v === undefined) return NO_VALUE;
  if (v === null) return NO_VALUE;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(printValue).join(' ')}]`;
  const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => compareStrings(a, b));
  return `map[${entries.map(([k, x]) => `${k}:${printValue(x)}`).join(' ')}]`;
}

/** Go text/template (the subset above) over nested parameters. */
export function renderGo(text: string, params: Params, options: GoTemplateOptions = {}): string {
  let out = '';
  let rest = text;
  for (;;) {
    const open = rest.indexOf('{{');
    if (open < 0) return out + rest;
    let before = rest.slice(0, open);
    let body = rest.slice(open + 2);
    const close = body.indexOf('}}');
    if (close < 0) throw new TemplateError(`unclosed action in ${JSON.stringify(text.slice(0, 80))}`);
    let action = body.slice(0, close);
    rest = body.slice(close + 2);
    // `{{- ` trims the text before, ` -}}` the text after (Go requires the space).
    if (/^-\s/.test(action)) {
      before = before.trimEnd();
      action = action.slice(1);
    }
    if (/\s-$/.test(action)) {
      rest = rest.trimStart();
      action = action.slice(0, -1);
    }
    body = action.trim();
    out += before;
    if (body.startsWith('/*')) continue; // a comment
    out += printValue(evaluatePipeline(body, params, options));
  }
}

function evaluatePipeline(pipeline: string, params: Params, options: GoTemplateOptions): unknown {
  const stages = splitPipes(pipeline);
  let value: unknown;
  stages.forEach((stage, i) => {
    const words = tokenize(stage);
    if (words.length === 0) throw new TemplateError(`empty command in {{${pipeline}}}`);
    const head = words[0]!;
    if (REFUSED_KEYWORDS.has(head))
      throw new TemplateError(
        `{{${head}}} is not supported in ApplicationSet goTemplate here (only pipelines of fields and functions)`,
      );
    if (head.startsWith('$')) throw new TemplateError(`template variables (${head}) are not supported`);
    const args = words.slice(1).map((w) => operand(w, params, options));
    if (i > 0) args.push(value);
    if (FUNCTIONS[head]) value = FUNCTIONS[head](...args);
    else if (args.length === (i > 0 ? 1 : 0)) {
      if (i > 0) throw new TemplateError(`${head} is not a function this template supports`);
      value = operand(head, params, options);
    } else throw new TemplateError(`${head} is not a function this template supports`);
  });
  return value;
}

function operand(word: string, params: Params, options: GoTemplateOptions): unknown {
  if (word.startsWith('"')) {
    try {
      return JSON.parse(word) as string;
    } catch {
      throw new TemplateError(`bad string literal ${word}`);
    }
  }
  if (word.startsWith('`')) return word.slice(1, -1);
  if (/^-?\d+(\.\d+)?$/.test(word)) return Number(word);
  if (word === 'true' || word === 'false') return word === 'true';
  if (word === 'nil') return null;
  if (word === '.') return params;
  if (word.startsWith('.')) {
    let v: unknown = params;
    for (const key of word.slice(1).split('.')) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new TemplateError(`bad field name in ${word}`);
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        throw new TemplateError(`can't evaluate field ${key} in ${word}: not a map`);
      }
      const map = v as Record<string, unknown>;
      if (!Object.hasOwn(map, key)) {
        if (options.missingKey === 'error')
          throw new TemplateError(`map has no entry for key "${key}" (in ${word})`);
        return undefined;
      }
      v = map[key];
    }
    return v;
  }
  if (FUNCTIONS[word]) return FUNCTIONS[word]();
  throw new TemplateError(`${word} is not a field, literal or function this template supports`);
}

/** The `|`-separated stages of a pipeline, outside string literals. */
function splitPipes(pipeline: string): string[] {
  const stages: string[] = [];
  let current = '';
  let quote = '';
  for (let i = 0; i < pipeline.length; i++) {
    const c = pipeline[i]!;
    if (quote) {
      current += c;
      if (c === '\\' && quote === '"') current += pipeline[++i] ?? '';
      else if (c === quote) quote = '';
    } else if (c === '"' || c === '`') {
      quote = c;
      current += c;
    } else if (c === '(' || c === ')') {
      throw new TemplateError(`parenthesised pipelines are not supported: {{${pipeline}}}`);
    } else if (c === '|') {
      stages.push(current.trim());
      current = '';
    } else current += c;
  }
  if (quote) throw new TemplateError(`unterminated string in {{${pipeline}}}`);
  stages.push(current.trim());
  return stages;
}

/** Words of one command, keeping string literals whole. */
function tokenize(command: string): string[] {
  const words: string[] = [];
  const re = /"(?:[^"\\]|\\.)*"|`[^`]*`|[^\s]+/g;
  for (const m of command.matchAll(re)) words.push(m[0]);
  return words;
}

/** Applies `render` to every string of a JSON-like value (keys too, as Argo CD does), returning a copy. */
export function renderStrings(value: unknown, render: (s: string) => string): unknown {
  if (typeof value === 'string') return render(value);
  if (Array.isArray(value)) return value.map((v) => renderStrings(v, render));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [render(k), renderStrings(v, render)]),
    );
  }
  return value;
}
