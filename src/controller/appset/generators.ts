// ApplicationSet generators: each turns its spec (and, for git, a commit's files) into parameter
// sets, one per Application to generate. The functions here are pure over what was gathered (a
// list of paths and file contents), so every rule is unit-tested without a repository:
// - list: the elements as they are;
//   https://argo-cd.readthedocs.io/en/stable/operator-manual/applicationset/Generators-List/
// - git directories: every directory of the commit matched by an include pattern and by no
//   exclude pattern (Go's path.Match on the whole path: `*` stops at `/`), hidden ones skipped;
// - git files: every file matched (git's pathspec glob: `*` crosses `/`), parsed as YAML/JSON,
//   one parameter set per object (a file may hold one object or a list of them).
//   https://argo-cd.readthedocs.io/en/stable/operator-manual/applicationset/Generators-Git/
// Patterns are user input: they become RE2 expressions (re2js), which match in linear time, so a
// hostile pattern cannot stall the event loop.
import { posix } from 'node:path';
import { RE2JS } from 're2js';
import { parseAllDocuments } from 'yaml';
import type { Generator, GitPathPattern } from './types.ts';
import {
  normalizeName,
  renderFast,
  renderGo,
  TemplateError,
  type GoTemplateOptions,
  type Params,
} from './template.ts';

export class GeneratorError extends Error {
  override name = 'GeneratorError';
}

/** At most this many parameter sets per ApplicationSet: a generator gone wrong must not create 10⁶ Applications. */
export const MAX_PARAMETER_SETS = 5_000;
/** Largest git files generator file read. */
export const MAX_FILE_BYTES = 1024 * 1024;

export interface GenerateOptions {
  goTemplate: boolean;
  goTemplateOptions?: GoTemplateOptions;
}

/** The kind of a generator, or an error naming the kinds this controller does not have. */
export function generatorKind(generator: Generator): 'list' | 'git' {
  const kinds = Object.keys(generator).filter(
    (k) => k !== 'selector' && k !== 'template' && generator[k] != null,
  );
  if (kinds.length !== 1)
    throw new GeneratorError(
      kinds.length === 0
        ? 'a generator with no kind'
        : `one generator has several kinds: ${kinds.join(', ')}`,
    );
  const kind = kinds[0]!;
  if (kind === 'list' || kind === 'git') return kind;
  throw new GeneratorError(
    `the ${kind} generator is not supported (supported: list, git directories, git files)`,
  );
}

export function listParams(generator: NonNullable<Generator['list']>, options: GenerateOptions): Params[] {
  const elements = generator.elements ?? [];
  return elements.map((element, i) => {
    if (!element || typeof element !== 'object' || Array.isArray(element))
      throw new GeneratorError(`list element ${i} is not an object`);
    if (options.goTemplate) return structuredClone(element as Params);
    // Without goTemplate every value must be a string, as Argo CD requires ("values" holds strings too).
    const params: Record<string, string> = {};
    for (const [key, value] of Object.entries(element as Record<string, unknown>)) {
      if (key === 'values' && value && typeof value === 'object' && !Array.isArray(value)) {
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          if (typeof v !== 'string')
            throw new GeneratorError(`list element ${i}: values.${k} is not a string`);
          params[`values.${k}`] = v;
        }
      } else if (typeof value === 'string') params[key] = value;
      else
        throw new GeneratorError(
          `list element ${i}: ${key} is not a string (set goTemplate: true for other values)`,
        );
    }
    return params;
  });
}

/** A glob as an RE2 expression over the whole path. `crossSlash`: `*` and `?` match `/` too. */
export function globRegExp(pattern: string, crossSlash: boolean): RE2JS {
  const any = crossSlash ? '.' : '[^/]';
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      while (pattern[i + 1] === '*') i++; // `**` is `*` for both path.Match and git's default pathspec
      out += `${any}*`;
    } else if (c === '?') out += any;
    else if (c === '\\') {
      const next = pattern[++i];
      if (next === undefined) throw new GeneratorError(`bad pattern ${JSON.stringify(pattern)}: trailing \\`);
      out += RE2JS.quote(next);
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw new GeneratorError(`bad pattern ${JSON.stringify(pattern)}: unclosed [`);
      let body = pattern.slice(i + 1, end);
      const negated = body.startsWith('^') || body.startsWith('!');
      if (negated) body = body.slice(1);
      if (body === '') throw new GeneratorError(`bad pattern ${JSON.stringify(pattern)}: empty []`);
      const escaped = body.replace(/[\]\\[^]/g, (m) => `\\${m}`);
      out += negated ? `[^${crossSlash ? '' : '/'}${escaped}]` : `[${escaped}]`;
      i = end;
    } else out += RE2JS.quote(c);
  }
  return RE2JS.compile(`^${out}$`, RE2JS.DOTALL);
}

function matcher(patterns: GitPathPattern[] | undefined, crossSlash: boolean): (path: string) => boolean {
  const compiled = (patterns ?? []).map((p) => {
    if (typeof p?.path !== 'string' || p.path === '')
      throw new GeneratorError('a git generator path needs a non-empty path');
    return { exclude: p.exclude === true, re: globRegExp(p.path, crossSlash) };
  });
  const includes = compiled.filter((p) => !p.exclude);
  const excludes = compiled.filter((p) => p.exclude);
  // An exclude wins over any include (Argo CD).
  return (path) => includes.some((p) => p.re.matches(path)) && !excludes.some((p) => p.re.matches(path));
}

/** The path parameters of a directory (and of a file in it), flat or nested as the template language wants. */
function pathParams(
  dir: string,
  options: GenerateOptions,
  prefix: string | undefined,
  file?: string,
): Params {
  const segments = dir === '.' || dir === '' ? [] : dir.split('/');
  const basename = segments.at(-1) ?? '';
  const nested: Record<string, unknown> = {
    path: dir,
    basename,
    basenameNormalized: normalizeName(basename),
    segments,
    ...(file !== undefined ? { filename: file, filenameNormalized: normalizeName(file) } : {}),
  };
  if (options.goTemplate) return prefix ? { [prefix]: { path: nested } } : { path: nested };
  const key = prefix ? `${prefix}.path` : 'path';
  const flat: Record<string, string> = {
    [key]: dir,
    [`${key}.basename`]: basename,
    [`${key}.basenameNormalized`]: normalizeName(basename),
  };
  if (file !== undefined) {
    flat[`${key}.filename`] = file;
    flat[`${key}.filenameNormalized`] = normalizeName(file);
  }
  segments.forEach((s, i) => (flat[`${key}[${i}]`] = s));
  return flat;
}

/** `values` of a git generator, rendered with the generated parameters (Argo CD's appendTemplatedValues). */
function withValues(
  params: Params,
  values: Record<string, string> | undefined,
  options: GenerateOptions,
): Params {
  if (!values) return params;
  const rendered: Record<string, string> = {};
  for (const [k, v] of Object.entries(values)) {
    if (typeof v !== 'string') throw new GeneratorError(`values.${k} is not a string`);
    rendered[k] = options.goTemplate
      ? renderGo(v, params, options.goTemplateOptions)
      : renderFast(v, params as Record<string, string>);
  }
  if (options.goTemplate) return { ...params, values: rendered };
  return { ...params, ...Object.fromEntries(Object.entries(rendered).map(([k, v]) => [`values.${k}`, v])) };
}

/** Parameter sets of a git directories generator over the commit's directories (relative, `/`-separated). */
export function gitDirectoryParams(
  generator: NonNullable<Generator['git']>,
  directories: readonly string[],
  options: GenerateOptions,
): Params[] {
  const matches = matcher(generator.directories, false);
  const out: Params[] = [];
  for (const dir of directories) {
    if (!matches(dir)) continue;
    out.push(withValues(pathParams(dir, options, generator.pathParamPrefix), generator.values, options));
  }
  return out;
}

/** Whether a path is kept by the files generator's patterns. */
export function gitFileMatcher(generator: NonNullable<Generator['git']>): (path: string) => boolean {
  return matcher(generator.files, true);
}

/** Parameter sets of a git files generator over the matched files' contents. */
export function gitFileParams(
  generator: NonNullable<Generator['git']>,
  files: readonly { path: string; content: string }[],
  options: GenerateOptions,
): Params[] {
  const out: Params[] = [];
  for (const file of files) {
    let documents: unknown[];
    try {
      documents = parseAllDocuments(file.content).map((d) => {
        if (d.errors.length > 0) throw d.errors[0]!;
        // A bounded alias count: a "billion laughs" file is an error, not a frozen controller.
        return d.toJS({ maxAliasCount: 100 }) as unknown;
      });
    } catch (err) {
      throw new GeneratorError(`${file.path}: not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
    }
    const value = documents.length === 1 ? documents[0] : documents;
    const objects = Array.isArray(value) ? value : [value];
    const dir = posix.dirname(file.path);
    const paths = pathParams(dir, options, generator.pathParamPrefix, posix.basename(file.path));
    objects.forEach((object, i) => {
      if (!object || typeof object !== 'object' || Array.isArray(object))
        throw new GeneratorError(`${file.path}: item ${i} is not an object`);
      const own = options.goTemplate ? (object as Params) : flatten(object as Record<string, unknown>);
      // The generated path parameters win over a file's own `path` key, as in Argo CD.
      out.push(withValues({ ...own, ...paths }, generator.values, options));
    });
  }
  return out;
}

/** A scalar as Go's %v prints it (nil as `<nil>`, times as RFC 3339). */
function goValue(value: unknown): string {
  if (value === null || value === undefined) return '<nil>';
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Argo CD's flattening for fasttemplate: nested keys joined with `.`, lists by index, values printed as Go's %v. */
export function flatten(object: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (value: unknown, key: string) => {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, key ? `${key}.${i}` : String(i)));
    else if (value && typeof value === 'object' && !(value instanceof Date))
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) walk(v, key ? `${key}.${k}` : k);
    else out[key] = goValue(value);
  };
  walk(object, '');
  return out;
}

export { TemplateError };
