// Image tags, labels and annotations computed with docker/metadata-action's rules (v5/v6), as a pure
// function: the caller passes the GitHub context in, nothing here reads the environment, the clock
// (unless `now` is omitted) or the network.
//
// Tag rules are the lines of metadata-action's `tags` input, e.g. `type=semver,pattern={{version}}`.
// Each line is CSV (quote a field that holds a comma: `type=match,"pattern=^v(\d+),(\d+)$",group=1`);
// each field is `key=value` (split at the first `=`, both sides trimmed, key case-insensitive) or a
// bare value, which sets `value`. Without `type=` a line is `type=raw`. Rules are sorted by
// `priority` (highest first, stable); the first enabled rule that yields a value is the `version`
// and decides, with `flavor: latest=auto`, whether `latest` is added:
//
//   type=schedule  on schedule events; pattern= (default `nightly`) with {{date 'FMT' tz='Zone'}}.
//   type=semver    on tag refs, or on value=; pattern= over {{raw}} {{version}} {{major}} {{minor}}
//                  {{patch}}; match= (regex, group 1 taken) before parsing; a leading `v` is
//                  accepted. Pre-releases only ever emit {{version}} (or the pattern if it is exactly
//                  {{raw}}) and never count for `latest`. Build metadata is not part of {{version}}.
//   type=pep440    NOT SUPPORTED (rejected with an error): we have no PEP 440 users, and a correct
//                  PEP 440 normaliser is a project of its own.
//   type=match     on tag refs, or on value=; pattern= is a regex (optionally `/re/flags`, flags
//                  i, m, s, u), group= (default 0). Regexes are user-supplied, so they run on RE2
//                  (re2js, linear time): no backreferences or lookarounds, but no catastrophic
//                  backtracking either.
//   type=edge      `edge` on a push to branch= (default: ctx.defaultBranch).
//   type=ref       event=branch (branch name), event=tag (tag name, counts for `latest`),
//                  event=pr (`pr-<number>`, from refs/pull/<number>/merge), and OUR EXTENSION
//                  event=pr-branch: the pull request's source branch (ctx.headRef), default prefix
//                  `pr-` like event=pr, e.g. `feature/Login_Fix` → `pr-feature-Login_Fix`. The prefix
//                  keeps a fork's `main` branch from producing the tag `main`; `prefix=` drops it.
//   type=raw       value= (or a bare value).
//   type=sha       `sha-` + 7 hex digits; format=long for all 40.
//   all types      enable=true|false, priority=<int>, prefix=, suffix= (prefix/suffix replace the
//                  flavor's; `type=ref,event=pr` and `type=sha` come with their own prefix).
//
// Global expressions in value=, prefix=, suffix=, enable=, the schedule pattern, flavor
// prefix/suffix and label/annotation values: {{branch}} {{tag}} {{sha}} {{base_ref}}
// {{is_default_branch}} {{is_not_default_branch}} {{date 'FMT' tz='Zone'}} and
// {{commit_date 'FMT' tz='Zone'}}. FMT is a moment.js format (the common tokens are implemented
// here; the locale ones throw). `\{{` is a literal `{{`.
//
// Deviations from metadata-action, all on purpose:
// - Mistakes are errors, not silence: unknown attributes, duplicate attributes, an unknown
//   {{expression}} (Handlebars renders it empty), a bad priority, a match group the pattern does not
//   have, label lines without `=`, a bad time zone, and any resulting tag that Docker would reject
//   (metadata-action only replaces bad characters, so `-x` or a 200-character tag fail at push time).
// - Expression output is not HTML-escaped (Handlebars turns `&` into `&amp;`, which then becomes
//   `-amp-` in a tag).
// - The flavor's prefix/suffix get expressions evaluated on `latest` too (metadata-action does not).
// - The final tag list is de-duplicated (metadata-action can repeat `latest`).
// - The schedule pattern also accepts the global expressions (metadata-action offers only date and
//   commit_date there); label and annotation keys are literal, only their values are templated;
//   `/re/flags` accepts i, m, s and u (`g` would change what JavaScript's match returns).
// - `created` is `now` if given, else ctx.commitTime (reproducible), else the clock; metadata-action
//   always uses the clock. {{date}} uses `now`, else the clock; {{commit_date}} ctx.commitTime, else
//   `now`.
// - DOCKER_METADATA_SHORT_SHA_LENGTH and DOCKER_METADATA_PR_HEAD_SHA are not read: pass the head SHA
//   as ctx.sha if that is what you want. Annotations in `json` use the default `manifest` level.
// - Like metadata-action: with no enabled image, `tags` holds the bare tag names; a push to the
//   default branch gets no `latest` under latest=auto (use `type=raw,value=latest,
//   enable={{is_default_branch}}`); a pull_request_target event is treated as refs/pull/<N>/merge.
import { RE2JS } from 're2js';
import { HOST, PATH_COMPONENT, isValidTag } from './reference.ts';

export interface GitHubContext {
  eventName: string;
  ref: string;
  sha: string;
  /** github.head_ref: the source branch of a pull request. */
  headRef?: string;
  /** github.base_ref for pull requests; for tag pushes the push payload's `base_ref`. */
  baseRef?: string;
  prNumber?: number;
  /** owner/name */
  repository: string;
  /** Default https://github.com. */
  serverUrl?: string;
  defaultBranch?: string;
  commitTime?: Date;
  /** Accepted for the caller's convenience; no rule uses it. */
  runNumber?: number;
}

export interface MetadataInput {
  /** Image names, one a line, or metadata-action's `name=...,enable=false` form. */
  images: string[];
  /** Rule lines as metadata-action's `tags` input; empty means the default rules. */
  tags: string[];
  /** latest=auto|true|false, prefix=...[,onlatest=true], suffix=...[,onlatest=true] */
  flavor?: string[];
  /** key=value lines; they override the generated OCI labels. */
  labels?: string[];
  /** key=value lines; they override the generated OCI annotations. */
  annotations?: string[];
  now?: Date;
  /** Default: the repository's name. */
  title?: string;
  description?: string;
  /** Default: serverUrl/owner/name. */
  url?: string;
  /** SPDX expression. */
  license?: string;
}

export interface Metadata {
  /** The first (highest priority) tag name, or '' when no rule produced one. */
  version: string;
  /** Full references image:tag, per image: version, other tags by priority, then latest. */
  tags: string[];
  tagNames: string[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** metadata-action's `json` output: tags, tag-names, labels, annotations (`manifest:k=v`). */
  json: { tags: string[]; 'tag-names': string[]; labels: Record<string, string>; annotations: string[] };
  /** What metadata-action would log as warnings: a value that is not semver, a regex that misses. */
  warnings: string[];
}

export type TagType = 'schedule' | 'semver' | 'match' | 'edge' | 'ref' | 'raw' | 'sha';
export type RefEvent = 'branch' | 'tag' | 'pr' | 'pr-branch';

export interface TagRule {
  readonly type: TagType;
  /** All attributes with their defaults filled in, as strings (enable and priority included). */
  readonly attrs: Readonly<Record<string, string>>;
  readonly priority: number;
  /** The line this rule was parsed from, for messages. */
  readonly source: string;
}

export interface Flavor {
  latest: 'auto' | 'true' | 'false';
  prefix: string;
  prefixLatest: boolean;
  suffix: string;
  suffixLatest: boolean;
}

export class MetadataError extends Error {
  override name = 'MetadataError';
}

const DEFAULT_PRIORITY: Record<TagType, number> = {
  schedule: 1000,
  semver: 900,
  match: 800,
  edge: 700,
  ref: 600,
  raw: 200,
  sha: 100,
};

const DEFAULT_RULES = ['type=schedule', 'type=ref,event=branch', 'type=ref,event=tag', 'type=ref,event=pr'];

const COMMON_ATTRS = ['enable', 'priority', 'prefix', 'suffix'];
const TYPE_ATTRS: Record<TagType, string[]> = {
  schedule: ['pattern'],
  semver: ['pattern', 'value', 'match'],
  match: ['pattern', 'group', 'value'],
  edge: ['branch'],
  ref: ['event'],
  raw: ['value'],
  sha: ['format'],
};
const REF_EVENTS: readonly string[] = ['branch', 'tag', 'pr', 'pr-branch'];

const SHORT_SHA_LENGTH = 7;
const MAX_IMAGE_NAME = 255;
const PATH_COMPONENT_RE = PATH_COMPONENT;
const DOMAIN_RE = HOST;

/** Quotes a value for a message, escaping only `"` and control characters (regexes stay readable). */
function q(s: string): string {
  let out = '"';
  for (const c of s) {
    const code = c.charCodeAt(0);
    if (c === '"') out += '\\"';
    else if (code < 0x20 || code === 0x7f) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += c;
  }
  return `${out}"`;
}

// ---------------------------------------------------------------------------------------------
// Tags and image names

/** Replaces each run of characters Docker does not allow in a tag with `-` (metadata-action's rule). */
export function sanitizeTag(s: string): string {
  return s.replace(/[^a-zA-Z0-9._-]+/g, '-');
}

/** Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. */
export { isValidTag };

/** Lowercases an image name (registry[:port]/path, no tag or digest) and checks Docker's grammar. */
export function normalizeImageName(name: string): string {
  const lower = name.trim().toLowerCase();
  const bad = (why: string) => new MetadataError(`invalid image name ${q(name)}: ${why}`);
  if (lower === '') throw bad('it is empty');
  if (lower.length > MAX_IMAGE_NAME) throw bad(`it is longer than ${MAX_IMAGE_NAME} characters`);
  if (lower.includes('@')) throw bad('it must not contain a digest (@...); give the repository only');
  const parts = lower.split('/');
  const first = parts[0] ?? '';
  const hasDomain = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasDomain && !DOMAIN_RE.test(first)) throw bad(`${q(first)} is not a valid registry host[:port]`);
  const path = hasDomain ? parts.slice(1) : parts;
  const last = path[path.length - 1] ?? '';
  if (last.includes(':')) throw bad('it must not contain a tag (:...); tags come from the tag rules');
  for (const component of path) {
    if (!PATH_COMPONENT_RE.test(component)) {
      throw bad(
        `path component ${q(component)} must be lowercase letters and digits, separated by ".", "_", "__" or dashes`,
      );
    }
  }
  return lower;
}

interface Image {
  name: string;
  enable: boolean;
}

function parseImages(lines: string[]): Image[] {
  const images: Image[] = [];
  for (const line of cleanLines(lines)) {
    const fields = splitCsv(line, `images ${q(line)}`);
    if (fields.every((f) => !f.includes('='))) {
      for (const f of fields) images.push({ name: normalizeImageName(f), enable: true });
      continue;
    }
    let name = '';
    let enable = true;
    for (const field of fields) {
      const kv = splitField(field);
      if (kv === undefined) {
        name = field.trim();
        continue;
      }
      const [key, value] = kv;
      if (key === 'name') name = value;
      else if (key === 'enable') {
        if (value !== 'true' && value !== 'false') {
          throw new MetadataError(`images: enable must be true or false in ${q(line)}`);
        }
        enable = value === 'true';
      } else throw new MetadataError(`images: unknown attribute ${q(key)} in ${q(line)}`);
    }
    if (name === '') throw new MetadataError(`images: no image name in ${q(line)}`);
    images.push({ name: normalizeImageName(name), enable });
  }
  return images;
}

// ---------------------------------------------------------------------------------------------
// Input lines

/** Splits multi-line strings, trims, drops blank lines and `#` comment lines. */
function cleanLines(lines: readonly string[]): string[] {
  return lines
    .flatMap((l) => l.split(/\r?\n/))
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** One CSV record, as csv-parse reads it by default: `"` quotes a whole field, `""` is a quote. */
function splitCsv(line: string, where: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    while (line[i] === ' ' || line[i] === '\t') {
      field += line[i];
      i++;
    }
    if (line[i] === '"') {
      field = '';
      i++;
      for (;;) {
        if (i >= line.length) throw new MetadataError(`${where}: unterminated quote`);
        if (line[i] === '"') {
          if (line[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += line[i];
        i++;
      }
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (i < line.length && line[i] !== ',') {
        throw new MetadataError(`${where}: unexpected text after a closing quote`);
      }
    } else {
      const end = line.indexOf(',', i);
      const stop = end < 0 ? line.length : end;
      field += line.slice(i, stop);
      i = stop;
      if (field.includes('"')) {
        throw new MetadataError(
          `${where}: a quote inside a field; quote the whole field instead, e.g. "pattern=a,b"`,
        );
      }
    }
    if (field.trim() !== '') fields.push(field);
    if (i >= line.length) return fields;
    i++; // the comma
  }
}

/** `key=value` at the first `=`, key lowercased, both trimmed; undefined for a bare value. */
function splitField(field: string): [string, string] | undefined {
  const eq = field.indexOf('=');
  if (eq <= 0) return undefined;
  return [field.slice(0, eq).trim().toLowerCase(), field.slice(eq + 1).trim()];
}

// ---------------------------------------------------------------------------------------------
// Templates: the small Handlebars subset metadata-action uses

interface Expr {
  name: string;
  args: string[];
  hash: Record<string, string>;
  text: string;
}
type TemplateNode = string | Expr;
type Template = TemplateNode[];

const SEMVER_VARS = ['raw', 'version', 'major', 'minor', 'patch'];
const GLOBAL_VARS = ['branch', 'tag', 'sha', 'base_ref', 'is_default_branch', 'is_not_default_branch'];
const DATE_HELPERS = ['date', 'commit_date'];

type TemplateKind = 'global' | 'semver';

function parseTemplate(src: string, kind: TemplateKind, where: string): Template {
  const nodes: Template = [];
  let text = '';
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) {
      text += src.slice(i);
      break;
    }
    if (open > 0 && src[open - 1] === '\\') {
      text += src.slice(i, open - 1) + '{{';
      i = open + 2;
      continue;
    }
    text += src.slice(i, open);
    const triple = src.startsWith('{{{', open);
    const closing = triple ? '}}}' : '}}';
    const start = open + closing.length;
    const close = src.indexOf(closing, start);
    if (close < 0) throw new MetadataError(`${where}: unclosed "{{" in ${q(src)}`);
    if (text !== '') nodes.push(text);
    text = '';
    nodes.push(parseExpr(src.slice(start, close), src.slice(open, close + closing.length), kind, where));
    i = close + closing.length;
  }
  if (text !== '') nodes.push(text);
  return nodes;
}

const EXPR_TOKEN =
  /\s*(?:([A-Za-z_][A-Za-z0-9_]*)=(?:'([^']*)'|"([^"]*)")|'([^']*)'|"([^"]*)"|([A-Za-z_][A-Za-z0-9_]*))/y;

function parseExpr(body: string, text: string, kind: TemplateKind, where: string): Expr {
  const bad = (why: string) => new MetadataError(`${where}: ${why} in ${q(text)}`);
  const trimmed = body.trim();
  if (trimmed === '') throw bad('empty expression');
  if (/^[#/!^>&~]/.test(trimmed) || trimmed.endsWith('~')) {
    throw bad('unsupported Handlebars syntax (only {{name}} and {{date ...}} expressions are supported)');
  }
  const expr: Expr = { name: '', args: [], hash: {}, text };
  EXPR_TOKEN.lastIndex = 0;
  let pos = 0;
  while (pos < trimmed.length) {
    EXPR_TOKEN.lastIndex = pos;
    const m = EXPR_TOKEN.exec(trimmed);
    if (m === null) throw bad(`cannot parse ${q(trimmed.slice(pos))}`);
    pos = EXPR_TOKEN.lastIndex;
    const [, hashKey, hashSq, hashDq, argSq, argDq, ident] = m;
    if (expr.name === '') {
      if (ident === undefined) throw bad('an expression must start with a name');
      expr.name = ident;
    } else if (hashKey !== undefined) {
      if (hashKey in expr.hash) throw bad(`${hashKey}= given twice`);
      expr.hash[hashKey] = hashSq ?? hashDq ?? '';
    } else if (argSq !== undefined || argDq !== undefined) {
      expr.args.push(argSq ?? argDq ?? '');
    } else {
      throw bad(`unexpected ${q(ident ?? '')}; arguments must be quoted strings`);
    }
  }
  const known = kind === 'semver' ? SEMVER_VARS : [...GLOBAL_VARS, ...DATE_HELPERS];
  if (!known.includes(expr.name)) {
    throw bad(`unknown expression {{${expr.name}}} (known: ${known.map((k) => `{{${k}}}`).join(' ')})`);
  }
  if (DATE_HELPERS.includes(expr.name)) {
    if (expr.args.length !== 1)
      throw bad(`{{${expr.name}}} takes one quoted format, e.g. {{${expr.name} 'YYYYMMDD'}}`);
    for (const key of Object.keys(expr.hash)) {
      if (key !== 'tz') throw bad(`unknown attribute ${key}= (only tz= is supported)`);
    }
    const tz = expr.hash['tz'];
    if (tz !== undefined) checkTimeZone(tz, where);
    checkDateFormat(expr.args[0] ?? '', where);
  } else if (expr.args.length > 0 || Object.keys(expr.hash).length > 0) {
    throw bad(`{{${expr.name}}} takes no arguments`);
  }
  return expr;
}

type Vars = Record<string, (expr: Expr) => string>;

function render(template: Template, vars: Vars): string {
  let out = '';
  for (const node of template) {
    if (typeof node === 'string') out += node;
    else {
      const fn = vars[node.name];
      if (fn === undefined) throw new MetadataError(`unknown expression ${node.text}`);
      out += fn(node);
    }
  }
  return out;
}

/** metadata-action keeps a pre-release's pattern only when it is exactly one {{raw}} expression. */
function isRawStatement(template: Template): boolean {
  const only = template.length === 1 ? template[0] : undefined;
  return only !== undefined && typeof only !== 'string' && only.name === 'raw';
}

// ---------------------------------------------------------------------------------------------
// Dates: moment.js format tokens (English locale) in a time zone, via Intl

function checkTimeZone(tz: string, where: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new MetadataError(`${where}: unknown time zone ${q(tz)} (use an IANA name such as Asia/Tokyo)`);
  }
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  ms: number;
  /** Minutes east of UTC. */
  offset: number;
  epochMs: number;
}

function wallClock(date: Date, tz: string): WallClock {
  const epochMs = date.getTime();
  if (Number.isNaN(epochMs)) throw new MetadataError('invalid date');
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const parts: Record<string, number> = {};
  for (const p of fmt.formatToParts(date)) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  const get = (k: string): number => parts[k] ?? 0;
  const ms = ((epochMs % 1000) + 1000) % 1000;
  const year = get('year');
  const month = get('month');
  const day = get('day');
  const hour = get('hour') % 24;
  const minute = get('minute');
  const second = get('second');
  const asUtc = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  return {
    year,
    month,
    day,
    hour,
    minute,
    second,
    ms,
    offset: Math.round((asUtc - epochMs) / 60000),
    epochMs,
  };
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const DAY_MS = 86_400_000;

const pad = (n: number, width: number): string => {
  const s = String(Math.abs(n)).padStart(width, '0');
  return n < 0 ? `-${s}` : s;
};
const ordinal = (n: number): string => {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
};

function isoWeek(w: WallClock): { week: number; year: number } {
  const dayStart = Date.UTC(w.year, w.month - 1, w.day);
  const isoDay = new Date(dayStart).getUTCDay() || 7;
  const thursday = dayStart + (4 - isoDay) * DAY_MS;
  const year = new Date(thursday).getUTCFullYear();
  return { week: Math.floor((thursday - Date.UTC(year, 0, 1)) / DAY_MS / 7) + 1, year };
}

const zone = (offset: number, sep: string): string => {
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  return `${sign}${pad(Math.floor(abs / 60), 2)}${sep}${pad(abs % 60, 2)}`;
};

const DATE_TOKENS: Record<string, (w: WallClock) => string> = {
  YYYYYY: (w) => (w.year < 0 ? '-' : '+') + pad(Math.abs(w.year), 6),
  YYYYY: (w) => pad(w.year, 5),
  YYYY: (w) => (w.year <= 9999 ? pad(w.year, 4) : `+${w.year}`),
  Y: (w) => (w.year <= 9999 ? pad(w.year, 4) : `+${w.year}`),
  YY: (w) => pad(w.year % 100, 2),
  Q: (w) => String(Math.ceil(w.month / 3)),
  Qo: (w) => ordinal(Math.ceil(w.month / 3)),
  MMMM: (w) => MONTHS[w.month - 1] ?? '',
  MMM: (w) => (MONTHS[w.month - 1] ?? '').slice(0, 3),
  MM: (w) => pad(w.month, 2),
  M: (w) => String(w.month),
  Mo: (w) => ordinal(w.month),
  DDDD: (w) => pad(dayOfYear(w), 3),
  DDDo: (w) => ordinal(dayOfYear(w)),
  DDD: (w) => String(dayOfYear(w)),
  DD: (w) => pad(w.day, 2),
  Do: (w) => ordinal(w.day),
  D: (w) => String(w.day),
  dddd: (w) => WEEKDAYS[weekday(w)] ?? '',
  ddd: (w) => (WEEKDAYS[weekday(w)] ?? '').slice(0, 3),
  dd: (w) => (WEEKDAYS[weekday(w)] ?? '').slice(0, 2),
  do: (w) => ordinal(weekday(w)),
  d: (w) => String(weekday(w)),
  e: (w) => String(weekday(w)),
  E: (w) => String(weekday(w) || 7),
  WW: (w) => pad(isoWeek(w).week, 2),
  Wo: (w) => ordinal(isoWeek(w).week),
  W: (w) => String(isoWeek(w).week),
  GGGG: (w) => pad(isoWeek(w).year, 4),
  HH: (w) => pad(w.hour, 2),
  H: (w) => String(w.hour),
  hh: (w) => pad(w.hour % 12 || 12, 2),
  h: (w) => String(w.hour % 12 || 12),
  kk: (w) => pad(w.hour || 24, 2),
  k: (w) => String(w.hour || 24),
  Hmmss: (w) => `${w.hour}${pad(w.minute, 2)}${pad(w.second, 2)}`,
  Hmm: (w) => `${w.hour}${pad(w.minute, 2)}`,
  hmmss: (w) => `${w.hour % 12 || 12}${pad(w.minute, 2)}${pad(w.second, 2)}`,
  hmm: (w) => `${w.hour % 12 || 12}${pad(w.minute, 2)}`,
  mm: (w) => pad(w.minute, 2),
  m: (w) => String(w.minute),
  ss: (w) => pad(w.second, 2),
  s: (w) => String(w.second),
  A: (w) => (w.hour < 12 ? 'AM' : 'PM'),
  a: (w) => (w.hour < 12 ? 'am' : 'pm'),
  ZZ: (w) => zone(w.offset, ''),
  Z: (w) => zone(w.offset, ':'),
  X: (w) => String(Math.floor(w.epochMs / 1000)),
  x: (w) => String(w.epochMs),
};
// Longest first, as moment's tokenizer; S{1,9} fractions are handled separately.
const DATE_TOKEN_NAMES = Object.keys(DATE_TOKENS).sort((a, b) => b.length - a.length);
// Letters moment would format but we do not implement: better an error than a silent difference.
const UNSUPPORTED_DATE_LETTERS = new Set(['w', 'g', 'G', 'N', 'y', 'z', 'L', 'l']);

function dayOfYear(w: WallClock): number {
  return (Date.UTC(w.year, w.month - 1, w.day) - Date.UTC(w.year, 0, 1)) / DAY_MS + 1;
}
function weekday(w: WallClock): number {
  return new Date(Date.UTC(w.year, w.month - 1, w.day)).getUTCDay();
}

type DatePiece = { literal: string } | { token: string };

function tokenizeDateFormat(format: string): DatePiece[] {
  const pieces: DatePiece[] = [];
  let i = 0;
  while (i < format.length) {
    const c = format[i] ?? '';
    if (c === '[') {
      const nextOpen = format.indexOf('[', i + 1);
      const limit = nextOpen < 0 ? format.length : nextOpen;
      const close = format.lastIndexOf(']', limit - 1);
      if (close > i) {
        pieces.push({ literal: format.slice(i + 1, close) });
        i = close + 1;
        continue;
      }
    }
    const escaped = c === '\\';
    const at = escaped ? i + 1 : i;
    const fraction = /^S{1,9}/.exec(format.slice(at, at + 9))?.[0];
    const token = fraction ?? DATE_TOKEN_NAMES.find((t) => format.startsWith(t, at));
    if (token !== undefined) {
      pieces.push(escaped ? { literal: token } : { token });
      i = at + token.length;
      continue;
    }
    const ch = format[at] ?? '';
    if (!escaped && UNSUPPORTED_DATE_LETTERS.has(ch)) {
      throw new MetadataError(
        `date format ${q(format)}: the moment.js token starting with ${q(ch)} is not supported`,
      );
    }
    pieces.push({ literal: ch });
    i = at + Math.max(ch.length, 1);
  }
  return pieces;
}

function checkDateFormat(format: string, where: string): void {
  try {
    tokenizeDateFormat(format);
  } catch (err) {
    throw new MetadataError(`${where}: ${(err as Error).message}`);
  }
}

/** Formats like moment-timezone's `moment(date).tz(tz).format(format)` (English locale). */
function formatDate(date: Date, format: string, tz = 'UTC'): string {
  const w = wallClock(date, tz);
  let out = '';
  for (const piece of tokenizeDateFormat(format)) {
    if ('literal' in piece) out += piece.literal;
    else if (piece.token.startsWith('S')) {
      const digits = piece.token.length;
      out += pad(Math.floor((w.ms * 10 ** digits) / 1000), digits);
    } else out += DATE_TOKENS[piece.token]?.(w) ?? '';
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Regexes: user-supplied, so RE2 (linear time)

interface CompiledRegex {
  re: RE2JS;
  groups: number;
}

function compileRegex(source: string, flags: string, where: string): CompiledRegex {
  let bits = 0;
  for (const f of flags) {
    if (f === 'i') bits |= RE2JS.CASE_INSENSITIVE;
    else if (f === 'm') bits |= RE2JS.MULTILINE;
    else if (f === 's') bits |= RE2JS.DOTALL;
    else if (f !== 'u') {
      throw new MetadataError(`${where}: regex flag ${q(f)} is not supported (only i, m, s and u)`);
    }
  }
  try {
    const re = RE2JS.compile(RE2JS.translateRegExp(source), bits);
    return { re, groups: re.groupCount() };
  } catch (err) {
    throw new MetadataError(
      `${where}: invalid regular expression ${q(source)}: ${(err as Error).message} ` +
        '(patterns run on RE2: no backreferences or lookaheads)',
    );
  }
}

/** metadata-action's type=match accepts `/re/flags` or a bare regex. */
function compileMatchPattern(pattern: string, where: string): CompiledRegex {
  const slashed = /^\/(.+)\/([a-z]*)$/s.exec(pattern);
  return slashed ? compileRegex(slashed[1] ?? '', slashed[2] ?? '', where) : compileRegex(pattern, '', where);
}

/** The first match anywhere (like String.prototype.match without `g`): groups, null if unmatched. */
function execRegex(compiled: CompiledRegex, input: string): (string | null)[] | undefined {
  const m = compiled.re.matcher(input);
  if (!m.find()) return undefined;
  const groups: (string | null)[] = [];
  for (let g = 0; g <= compiled.groups; g++) groups.push(m.group(g));
  return groups;
}

// ---------------------------------------------------------------------------------------------
// Semver (node-semver's strict grammar, which metadata-action checks with semver.valid)

interface SemVer {
  raw: string;
  major: number;
  minor: number;
  patch: number;
  prerelease: string;
  version: string;
}

const NUM_ID = '0|[1-9]\\d*';
const PRE_ID = `(?:${NUM_ID}|\\d*[a-zA-Z-][a-zA-Z0-9-]*)`;
const SEMVER_RE = new RegExp(
  `^v?(${NUM_ID})\\.(${NUM_ID})\\.(${NUM_ID})(?:-(${PRE_ID}(?:\\.${PRE_ID})*))?(?:\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?$`,
);

function parseSemver(raw: string): SemVer | undefined {
  if (raw.length > 256) return undefined;
  const m = SEMVER_RE.exec(raw);
  if (m === null) return undefined;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (![major, minor, patch].every(Number.isSafeInteger)) return undefined;
  const prerelease = m[4] ?? '';
  const version = `${major}.${minor}.${patch}${prerelease ? `-${prerelease}` : ''}`;
  return { raw, major, minor, patch, prerelease, version };
}

// ---------------------------------------------------------------------------------------------
// Parsing rules and flavor

interface ParsedRule extends TagRule {
  readonly templates: Readonly<Record<string, Template>>;
  readonly regex?: CompiledRegex;
}

/**
 * Parses tag rule lines (blank and `#` lines skipped; none at all means metadata-action's defaults:
 * schedule, ref branch, ref tag, ref pr) and sorts them by priority, highest first.
 */
export function parseTagRules(lines: string[]): TagRule[] {
  return parseRules(lines).map(({ type, attrs, priority, source }) => ({ type, attrs, priority, source }));
}

function parseRules(lines: readonly string[]): ParsedRule[] {
  const cleaned = cleanLines(lines);
  const rules = (cleaned.length > 0 ? cleaned : DEFAULT_RULES).map(parseRule);
  return rules.sort((a, b) => b.priority - a.priority);
}

function parseRule(line: string): ParsedRule {
  const where = `tag rule ${q(line)}`;
  const attrs: Record<string, string> = {};
  let type: TagType | undefined;
  let bareValue = false;
  for (const field of splitCsv(line, where)) {
    const kv = splitField(field);
    const [key, value] = kv ?? ['value', field.trim()];
    if (kv === undefined) bareValue = true;
    if (key === 'type') {
      if (value === 'pep440') {
        throw new MetadataError(`${where}: type=pep440 is not supported; use type=semver or type=match`);
      }
      if (!(value in DEFAULT_PRIORITY)) {
        throw new MetadataError(
          `${where}: unknown type ${q(value)} (known: ${Object.keys(DEFAULT_PRIORITY).join(', ')})`,
        );
      }
      if (type !== undefined) throw new MetadataError(`${where}: type= given twice`);
      type = value as TagType;
      continue;
    }
    if (key in attrs) {
      throw new MetadataError(
        `${where}: ${key === 'value' ? 'value (or a bare value)' : `${key}=`} given twice`,
      );
    }
    attrs[key] = value;
  }
  type ??= 'raw';

  const allowed = [...COMMON_ATTRS, ...TYPE_ATTRS[type]];
  for (const key of Object.keys(attrs)) {
    if (!allowed.includes(key)) {
      const what = key === 'value' && bareValue ? `the bare value ${q(attrs[key] ?? '')}` : `${key}=`;
      throw new MetadataError(
        `${where}: ${what} is not an attribute of type=${type} (allowed: ${allowed.join(', ')})`,
      );
    }
  }
  const has = (k: string) => Object.prototype.hasOwnProperty.call(attrs, k);
  const templates: Record<string, Template> = {};
  let regex: CompiledRegex | undefined;

  switch (type) {
    case 'schedule':
      if (!has('pattern')) attrs['pattern'] = 'nightly';
      templates['pattern'] = parseTemplate(attrs['pattern'] ?? '', 'global', where);
      break;
    case 'semver':
      if (!has('pattern') || attrs['pattern'] === '') {
        throw new MetadataError(`${where}: type=semver needs pattern=, e.g. pattern={{version}}`);
      }
      templates['pattern'] = parseTemplate(attrs['pattern'] ?? '', 'semver', where);
      if (!has('value')) attrs['value'] = '';
      if (!has('match')) attrs['match'] = '';
      if (attrs['match'] !== '') {
        regex = compileRegex(attrs['match'] ?? '', '', where);
        if (regex.groups < 1) {
          throw new MetadataError(`${where}: match= needs a capture group; its group 1 is the version`);
        }
      }
      break;
    case 'match': {
      if (!has('pattern') || attrs['pattern'] === '') {
        throw new MetadataError(`${where}: type=match needs pattern=`);
      }
      if (!has('group')) attrs['group'] = '0';
      if (!/^\d+$/.test(attrs['group'] ?? '')) {
        throw new MetadataError(`${where}: group= must be a group number, not ${q(attrs['group'] ?? '')}`);
      }
      if (!has('value')) attrs['value'] = '';
      regex = compileMatchPattern(attrs['pattern'] ?? '', where);
      const group = Number(attrs['group']);
      if (group > regex.groups) {
        throw new MetadataError(
          `${where}: group ${group} does not exist; the pattern has ${regex.groups} capture group(s)`,
        );
      }
      break;
    }
    case 'edge':
      if (!has('branch')) attrs['branch'] = '';
      break;
    case 'ref':
      if (!has('event'))
        throw new MetadataError(`${where}: type=ref needs event= (${REF_EVENTS.join(', ')})`);
      if (!REF_EVENTS.includes(attrs['event'] ?? '')) {
        throw new MetadataError(
          `${where}: unknown event ${q(attrs['event'] ?? '')} (known: ${REF_EVENTS.join(', ')})`,
        );
      }
      if ((attrs['event'] === 'pr' || attrs['event'] === 'pr-branch') && !has('prefix'))
        attrs['prefix'] = 'pr-';
      break;
    case 'raw':
      if (!has('value') || attrs['value'] === '') {
        throw new MetadataError(`${where}: type=raw needs value= (or a bare value)`);
      }
      break;
    case 'sha':
      if (!has('prefix')) attrs['prefix'] = 'sha-';
      if (!has('format')) attrs['format'] = 'short';
      if (attrs['format'] !== 'short' && attrs['format'] !== 'long') {
        throw new MetadataError(`${where}: format= must be short or long, not ${q(attrs['format'] ?? '')}`);
      }
      break;
  }

  if (!has('enable')) attrs['enable'] = 'true';
  const enable = attrs['enable'] ?? '';
  if (!enable.includes('{{') && enable !== 'true' && enable !== 'false') {
    throw new MetadataError(`${where}: enable= must be true, false or an expression, not ${q(enable)}`);
  }
  if (!has('priority')) attrs['priority'] = String(DEFAULT_PRIORITY[type]);
  const priority = attrs['priority'] ?? '';
  if (!/^-?\d{1,15}$/.test(priority)) {
    throw new MetadataError(`${where}: priority= must be an integer, not ${q(priority)}`);
  }
  for (const key of ['value', 'prefix', 'suffix', 'enable']) {
    if (has(key)) templates[key] = parseTemplate(attrs[key] ?? '', 'global', where);
  }
  const rule: ParsedRule = { type, attrs, priority: Number(priority), source: line, templates };
  return regex === undefined ? rule : { ...rule, regex };
}

/** metadata-action's `flavor` input; `onlatest=` applies to the prefix/suffix given on its line. */
export function parseFlavor(lines: string[]): Flavor {
  const flavor: Flavor = { latest: 'auto', prefix: '', prefixLatest: false, suffix: '', suffixLatest: false };
  for (const line of cleanLines(lines)) {
    let onLatestFor: 'prefix' | 'suffix' | undefined;
    for (const field of splitCsv(line, `flavor ${q(line)}`)) {
      const kv = splitField(field);
      if (kv === undefined)
        throw new MetadataError(`flavor: ${q(field.trim())} is not key=value in ${q(line)}`);
      const [key, value] = kv;
      const where = `flavor ${q(line)}`;
      switch (key) {
        case 'latest':
          if (value !== 'auto' && value !== 'true' && value !== 'false') {
            throw new MetadataError(`${where}: latest= must be auto, true or false, not ${q(value)}`);
          }
          flavor.latest = value;
          break;
        case 'prefix':
        case 'suffix':
          parseTemplate(value, 'global', where);
          flavor[key] = value;
          onLatestFor = key;
          break;
        case 'onlatest':
          if (value !== 'true' && value !== 'false') {
            throw new MetadataError(`${where}: onlatest= must be true or false, not ${q(value)}`);
          }
          if (onLatestFor === undefined) {
            throw new MetadataError(`${where}: onlatest= must follow prefix= or suffix= on the same line`);
          }
          flavor[onLatestFor === 'prefix' ? 'prefixLatest' : 'suffixLatest'] = value === 'true';
          break;
        default:
          throw new MetadataError(
            `${where}: unknown flavor ${q(key)} (known: latest, prefix, suffix, onlatest)`,
          );
      }
    }
  }
  return flavor;
}

// ---------------------------------------------------------------------------------------------
// Computing

interface Version {
  main: string | undefined;
  partial: string[];
  latest: boolean | undefined;
}

const stripHeads = (ref: string): string => ref.replace(/^refs\/heads\//, '');

/** Computes what docker/metadata-action would output for these inputs and this context. */
export function computeMetadata(input: MetadataInput, ctx: GitHubContext): Metadata {
  const rules = parseRules(input.tags);
  const flavor = parseFlavor(input.flavor ?? []);
  const images = parseImages(input.images);
  const now = input.now ?? new Date();
  const commitTime = ctx.commitTime ?? now;
  const warnings: string[] = [];

  // metadata-action rewrites the ref of pull_request_target (the base branch) to the PR's merge ref.
  const ref =
    ctx.eventName.includes('pull_request_target') && ctx.prNumber !== undefined
      ? `refs/pull/${ctx.prNumber}/merge`
      : ctx.ref;
  const sha = ctx.sha ?? '';
  const shortSha = sha.slice(0, SHORT_SHA_LENGTH);
  const isTag = ref.startsWith('refs/tags/');
  const isBranch = ref.startsWith('refs/heads/');
  const isPull = ref.startsWith('refs/pull/');

  const isDefaultBranch = (): boolean => {
    const branch = stripHeads(ref);
    if (branch === '') return false;
    if (ctx.defaultBranch !== undefined && ctx.defaultBranch === branch) return true;
    // These events always run on the default branch's last commit.
    return ['create', 'discussion', 'issues', 'schedule'].some((e) => ctx.eventName.includes(e));
  };
  const dateHelper =
    (date: Date) =>
    (expr: Expr): string =>
      formatDate(date, expr.args[0] ?? '', expr.hash['tz'] ?? 'UTC');
  const globals: Vars = {
    branch: () => (isBranch ? stripHeads(ref) : ''),
    tag: () => (isTag ? ref.slice('refs/tags/'.length) : ''),
    sha: () => shortSha,
    base_ref: () => ((isTag || isPull) && ctx.baseRef !== undefined ? stripHeads(ctx.baseRef) : ''),
    is_default_branch: () => String(isDefaultBranch()),
    is_not_default_branch: () => String(!isDefaultBranch()),
    date: dateHelper(now),
    commit_date: dateHelper(commitTime),
  };
  const evalGlobal = (src: string, where: string): string =>
    render(parseTemplate(src, 'global', where), globals);

  const version: Version = { main: undefined, partial: [], latest: undefined };

  for (const rule of rules) {
    const where = `tag rule ${q(rule.source)}`;
    const tpl = (key: string): Template => rule.templates[key] ?? [];
    const enabled = render(tpl('enable'), globals);
    if (enabled !== 'true' && enabled !== 'false') {
      throw new MetadataError(`${where}: enable= evaluated to ${q(enabled)}; expected true or false`);
    }
    if (enabled === 'false') continue;

    const withAffixes = (val: string): string => {
      let out = val;
      if ('prefix' in rule.attrs) out = render(tpl('prefix'), globals) + out;
      else if (flavor.prefix !== '') out = evalGlobal(flavor.prefix, 'flavor prefix') + out;
      if ('suffix' in rule.attrs) out += render(tpl('suffix'), globals);
      else if (flavor.suffix !== '') out += evalGlobal(flavor.suffix, 'flavor suffix');
      return out;
    };
    const add = (val: string, latestIfAuto: boolean): void => {
      if (val === '') return;
      const tag = sanitizeTag(val);
      if (!isValidTag(tag)) {
        throw new MetadataError(
          `${where} produced ${q(tag)}, which is not a valid image tag: ${tagProblem(tag)}`,
        );
      }
      if (version.main === undefined) version.main = tag;
      else if (tag !== version.main) version.partial.push(tag);
      version.latest ??= flavor.latest === 'auto' ? latestIfAuto : flavor.latest === 'true';
    };
    /** semver and match read the tag name, or value= when it is set. */
    const tagOrValue = (): string | undefined => {
      const value = rule.attrs['value'] ?? '';
      if (!isTag && value === '') return undefined;
      return value !== '' ? render(tpl('value'), globals) : ref.slice('refs/tags/'.length);
    };

    switch (rule.type) {
      case 'schedule':
        if (ctx.eventName.includes('schedule')) add(withAffixes(render(tpl('pattern'), globals)), false);
        break;
      case 'semver': {
        let vraw = tagOrValue();
        if (vraw === undefined) break;
        if (rule.regex !== undefined) {
          const m = execRegex(rule.regex, vraw);
          if (m === undefined)
            warnings.push(`${where}: match= ${q(rule.attrs['match'] ?? '')} does not match ${q(vraw)}`);
          else if (m[1] === null || m[1] === undefined) {
            warnings.push(`${where}: match= group 1 did not take part in the match on ${q(vraw)}`);
            break;
          } else vraw = m[1];
        }
        vraw = vraw.replace(/\//g, '-');
        const sv = parseSemver(vraw);
        if (sv === undefined) {
          warnings.push(`${where}: ${q(vraw)} is not a valid semver (https://semver.org/)`);
          break;
        }
        const semverVars: Vars = {
          raw: () => sv.raw,
          version: () => sv.version,
          major: () => String(sv.major),
          minor: () => String(sv.minor),
          patch: () => String(sv.patch),
        };
        const pattern = tpl('pattern');
        if (sv.prerelease !== '') {
          add(withAffixes(isRawStatement(pattern) ? sv.raw : sv.version), false);
        } else add(withAffixes(render(pattern, semverVars)), true);
        break;
      }
      case 'match': {
        const vraw = tagOrValue();
        if (vraw === undefined || rule.regex === undefined) break;
        const m = execRegex(rule.regex, vraw);
        const group = Number(rule.attrs['group'] ?? '0');
        if (m === undefined) {
          warnings.push(`${where}: pattern ${q(rule.attrs['pattern'] ?? '')} does not match ${q(vraw)}`);
          break;
        }
        const value = m[group];
        if (value === null || value === undefined) {
          warnings.push(`${where}: group ${group} did not take part in the match on ${q(vraw)}`);
          break;
        }
        add(withAffixes(value), true);
        break;
      }
      case 'edge': {
        if (!isBranch) break;
        const branch = rule.attrs['branch'] || ctx.defaultBranch;
        if (branch === undefined) {
          warnings.push(`${where}: the default branch is unknown; set branch= or pass defaultBranch`);
          break;
        }
        if (branch === stripHeads(ref)) add(withAffixes('edge'), false);
        break;
      }
      case 'ref':
        switch (rule.attrs['event']) {
          case 'branch':
            if (isBranch) add(withAffixes(stripHeads(ref)), false);
            break;
          case 'tag':
            if (isTag) add(withAffixes(ref.slice('refs/tags/'.length)), true);
            break;
          case 'pr':
            if (isPull) add(withAffixes(ref.replace(/^refs\/pull\//, '').replace(/\/merge$/, '')), false);
            break;
          case 'pr-branch':
            if (isPull && ctx.headRef) add(withAffixes(ctx.headRef), false);
            break;
        }
        break;
      case 'raw':
        add(withAffixes(render(tpl('value'), globals)), false);
        break;
      case 'sha':
        if (sha !== '') add(withAffixes(rule.attrs['format'] === 'long' ? sha : shortSha), false);
        break;
    }
  }

  const partial = [...new Set(version.partial)];
  const tagNames: string[] = [];
  if (version.main !== undefined) {
    tagNames.push(version.main, ...partial);
    if (version.latest === true) {
      const prefix = flavor.prefixLatest ? evalGlobal(flavor.prefix, 'flavor prefix') : '';
      const suffix = flavor.suffixLatest ? evalGlobal(flavor.suffix, 'flavor suffix') : '';
      const latest = sanitizeTag(`${prefix}latest${suffix}`);
      if (!isValidTag(latest)) {
        throw new MetadataError(
          `flavor produced the latest tag ${q(latest)}, which is not valid: ${tagProblem(latest)}`,
        );
      }
      tagNames.push(latest);
    }
  } else warnings.push('no image tag was generated; check the tag rules');
  const names = [...new Set(tagNames)];
  const enabledImages = [...new Set(images.filter((i) => i.enable).map((i) => i.name))];
  const tags =
    enabledImages.length === 0 ? names : enabledImages.flatMap((image) => names.map((t) => `${image}:${t}`));

  const serverUrl = (ctx.serverUrl ?? 'https://github.com').replace(/\/+$/, '');
  const repoUrl = `${serverUrl}/${ctx.repository}`;
  const repoName = ctx.repository.slice(ctx.repository.lastIndexOf('/') + 1);
  const created = input.now ?? ctx.commitTime ?? now;
  if (Number.isNaN(created.getTime())) throw new MetadataError('the creation time is not a valid date');
  const oci: [string, string][] = [
    ['org.opencontainers.image.title', input.title ?? repoName],
    ['org.opencontainers.image.description', input.description ?? ''],
    ['org.opencontainers.image.url', input.url ?? repoUrl],
    ['org.opencontainers.image.source', repoUrl],
    ['org.opencontainers.image.version', version.main ?? ''],
    ['org.opencontainers.image.created', created.toISOString()],
    ['org.opencontainers.image.revision', sha],
    ['org.opencontainers.image.licenses', input.license ?? ''],
  ];
  const withCustom = (lines: string[], what: string): Record<string, string> => {
    const map = new Map(oci);
    for (const line of cleanLines(lines)) {
      const eq = line.indexOf('=');
      const key = eq < 0 ? '' : line.slice(0, eq).trim();
      if (key === '') throw new MetadataError(`${what}: ${q(line)} is not key=value`);
      map.set(key, evalGlobal(line.slice(eq + 1).trim(), `${what} ${q(line)}`));
    }
    const sorted = [...map].sort(([a], [b]) => a.localeCompare(b, 'en'));
    return Object.fromEntries(sorted);
  };
  const labels = withCustom(input.labels ?? [], 'labels');
  const annotations = withCustom(input.annotations ?? [], 'annotations');

  return {
    version: version.main ?? '',
    tags,
    tagNames: names,
    labels,
    annotations,
    json: {
      tags,
      'tag-names': names,
      labels,
      annotations: Object.entries(annotations).map(([k, v]) => `manifest:${k}=${v}`),
    },
    warnings,
  };
}

function tagProblem(tag: string): string {
  if (tag.length > 128) return `it has ${tag.length} characters, at most 128 are allowed`;
  if (tag === '') return 'it is empty';
  return 'it must start with a letter, digit or "_" and contain only letters, digits, "_", "." and "-"';
}
