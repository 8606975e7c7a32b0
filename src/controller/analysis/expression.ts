// Success and failure conditions: the subset of expr-lang (the language Argo Rollouts evaluates
// them in) that analysis conditions use, parsed and interpreted here over plain JSON data. Nothing
// is ever compiled to JavaScript: an expression can read `result` and call the functions listed in
// FUNCTIONS, nothing else. Objects are read through their own properties only, so names such as
// `constructor` or `__proto__` are just missing keys (nil), never the runtime's internals.
//
// Supported: literals (numbers, 'strings', "strings", `raw strings`, true, false, nil, [arrays],
// {maps}), `result`, member access (a.b, a?.b, a[0], a[-1], a['k'], a[1:3]), arithmetic
// (+ - * / % ** ^), comparison (== != < <= > >=), logic (&& || ! and or not), `in`/`not in`,
// `contains`, `startsWith`, `endsWith`, `matches`, `??`, `cond ? a : b`, and the functions below,
// including predicates with closures: all(result, # > 1), any(result, {.ok == true}).

import { RE2JS } from 're2js';

/** A bad expression, or one that cannot be evaluated against this result. */
export class ExpressionError extends Error {
  override name = 'ExpressionError';
}

const MAX_LENGTH = 10_000;
const MAX_DEPTH = 64;
const MAX_STEPS = 1_000_000;
const MAX_MATCH_INPUT = 10_000;

type Value = unknown;

// ---------------------------------------------------------------------------------------------
// Tokens

type TokenKind = 'number' | 'string' | 'name' | 'op' | 'eof';
interface Token {
  kind: TokenKind;
  text: string;
  value?: number | string;
  pos: number;
}

const OPERATORS = [
  '**',
  '&&',
  '||',
  '==',
  '!=',
  '<=',
  '>=',
  '??',
  '?.',
  '+',
  '-',
  '*',
  '/',
  '%',
  '^',
  '<',
  '>',
  '!',
  '(',
  ')',
  '[',
  ']',
  '{',
  '}',
  ',',
  ':',
  '.',
  '?',
  '#',
];

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const fail = (msg: string, at = i): never => {
    throw new ExpressionError(`${msg} at position ${at}`);
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const start = i;
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      let text: string;
      const hex = /^0[xX][0-9a-fA-F_]+/.exec(src.slice(i));
      if (hex) {
        text = hex[0];
        i += text.length;
        tokens.push({
          kind: 'number',
          text,
          value: parseInt(text.slice(2).replace(/_/g, ''), 16),
          pos: start,
        });
        continue;
      }
      const m = /^(?:[0-9][0-9_]*)?(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9]+)?/.exec(src.slice(i))!;
      text = m[0];
      i += text.length;
      const value = Number(text.replace(/_/g, ''));
      if (!Number.isFinite(value)) fail(`invalid number "${text}"`, start);
      tokens.push({ kind: 'number', text, value, pos: start });
      continue;
    }
    if (c === '"' || c === "'") {
      let value = '';
      i++;
      for (;;) {
        if (i >= src.length) fail('unterminated string', start);
        const d = src[i]!;
        if (d === c) {
          i++;
          break;
        }
        if (d === '\\') {
          const e = src[i + 1];
          i += 2;
          switch (e) {
            case 'n':
              value += '\n';
              break;
            case 't':
              value += '\t';
              break;
            case 'r':
              value += '\r';
              break;
            case '\\':
            case '"':
            case "'":
              value += e;
              break;
            case 'u': {
              const hex = src.slice(i, i + 4);
              if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape', i - 2);
              value += String.fromCharCode(parseInt(hex, 16));
              i += 4;
              break;
            }
            default:
              fail(`invalid escape "\\${e ?? ''}"`, i - 2);
          }
          continue;
        }
        value += d;
        i++;
      }
      tokens.push({ kind: 'string', text: src.slice(start, i), value, pos: start });
      continue;
    }
    if (c === '`') {
      const end = src.indexOf('`', i + 1);
      if (end < 0) fail('unterminated string', start);
      tokens.push({
        kind: 'string',
        text: src.slice(start, end + 1),
        value: src.slice(i + 1, end),
        pos: start,
      });
      i = end + 1;
      continue;
    }
    if (/[A-Za-z_$]/.test(c)) {
      const m = /^[A-Za-z_$][A-Za-z0-9_$]*/.exec(src.slice(i))!;
      i += m[0].length;
      tokens.push({ kind: 'name', text: m[0], pos: start });
      continue;
    }
    const op = OPERATORS.find((o) => src.startsWith(o, i));
    if (!op) fail(`unexpected character "${c}"`);
    // "?." followed by a digit is a ternary and a number (a ?.5 : 1): rare, but unambiguous.
    if (op === '?.' && /[0-9]/.test(src[i + 2] ?? '')) {
      tokens.push({ kind: 'op', text: '?', pos: start });
      i += 1;
      continue;
    }
    tokens.push({ kind: 'op', text: op!, pos: start });
    i += op!.length;
  }
  tokens.push({ kind: 'eof', text: '', pos: src.length });
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

type Node =
  | { type: 'literal'; value: Value }
  | { type: 'name'; name: string; pos: number }
  | { type: 'pointer' }
  | { type: 'array'; items: Node[] }
  | { type: 'map'; entries: Array<[string, Node]> }
  | { type: 'member'; object: Node; property: Node; optional: boolean; pos: number }
  | { type: 'slice'; object: Node; from?: Node; to?: Node; pos: number }
  | { type: 'unary'; op: string; operand: Node; pos: number }
  | { type: 'binary'; op: string; left: Node; right: Node; pos: number }
  | { type: 'conditional'; test: Node; then: Node; else: Node }
  | { type: 'call'; name: string; args: Node[]; pos: number };

const BINARY: Record<string, { prec: number; right?: boolean }> = {
  or: { prec: 10 },
  '||': { prec: 10 },
  and: { prec: 15 },
  '&&': { prec: 15 },
  '==': { prec: 20 },
  '!=': { prec: 20 },
  '<': { prec: 20 },
  '>': { prec: 20 },
  '<=': { prec: 20 },
  '>=': { prec: 20 },
  in: { prec: 20 },
  'not in': { prec: 20 },
  matches: { prec: 20 },
  'not matches': { prec: 20 },
  contains: { prec: 20 },
  'not contains': { prec: 20 },
  startsWith: { prec: 20 },
  'not startsWith': { prec: 20 },
  endsWith: { prec: 20 },
  'not endsWith': { prec: 20 },
  '+': { prec: 30 },
  '-': { prec: 30 },
  '*': { prec: 60 },
  '/': { prec: 60 },
  '%': { prec: 60 },
  '**': { prec: 100, right: true },
  '^': { prec: 100, right: true },
  '??': { prec: 500 },
};
const UNARY: Record<string, number> = { not: 50, '!': 50, '-': 90, '+': 90 };
const NEGATABLE = new Set(['in', 'matches', 'contains', 'startsWith', 'endsWith']);
const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'matches', 'contains', 'startsWith', 'endsWith']);

class Parser {
  private readonly tokens: Token[];
  private at = 0;
  private depth = 0;
  private closures = 0;

  constructor(tokens: Token[]) {
    this.tokens = tokens;
  }

  parse(): Node {
    const node = this.conditional();
    const next = this.peek();
    if (next.kind !== 'eof') this.fail(`unexpected token "${next.text}"`, next);
    return node;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.at + offset, this.tokens.length - 1)]!;
  }

  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.at++;
    return t;
  }

  private is(text: string, offset = 0): boolean {
    const t = this.peek(offset);
    return (t.kind === 'op' || t.kind === 'name') && t.text === text;
  }

  private expect(text: string): Token {
    const t = this.next();
    if (t.text !== text || (t.kind !== 'op' && t.kind !== 'name')) {
      this.fail(
        t.kind === 'eof'
          ? `expected "${text}" but the expression ended`
          : `expected "${text}" but found "${t.text}"`,
        t,
      );
    }
    return t;
  }

  private fail(msg: string, t: Token = this.peek()): never {
    throw new ExpressionError(`${msg} at position ${t.pos}`);
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) this.fail('expression nested too deeply');
  }

  private conditional(): Node {
    this.enter();
    try {
      const test = this.binary(0);
      if (!this.is('?')) return test;
      this.next();
      const then = this.conditional();
      this.expect(':');
      return { type: 'conditional', test, then, else: this.conditional() };
    } finally {
      this.depth--;
    }
  }

  /** The binary operator at the cursor, if any (two tokens for "not in"). */
  private binaryOperator(): { op: string; width: number } | undefined {
    const t = this.peek();
    if (t.kind === 'name' && t.text === 'not') {
      const n = this.peek(1);
      if (n.kind === 'name' && NEGATABLE.has(n.text)) return { op: `not ${n.text}`, width: 2 };
      return undefined;
    }
    if ((t.kind === 'op' || t.kind === 'name') && Object.hasOwn(BINARY, t.text))
      return { op: t.text, width: 1 };
    return undefined;
  }

  private binary(minPrec: number): Node {
    this.enter();
    try {
      let left = this.unary();
      for (;;) {
        const found = this.binaryOperator();
        if (!found) return left;
        const info = BINARY[found.op]!;
        if (info.prec < minPrec) return left;
        const pos = this.peek().pos;
        this.at += found.width;
        const right = this.binary(info.right ? info.prec : info.prec + 1);
        left = { type: 'binary', op: found.op, left, right, pos };
      }
    } finally {
      this.depth--;
    }
  }

  private unary(): Node {
    const t = this.peek();
    if ((t.kind === 'op' || t.kind === 'name') && Object.hasOwn(UNARY, t.text)) {
      this.next();
      this.enter();
      try {
        const operand = this.binary(UNARY[t.text]!);
        return { type: 'unary', op: t.text === 'not' ? '!' : t.text, operand, pos: t.pos };
      } finally {
        this.depth--;
      }
    }
    return this.postfix(this.primary());
  }

  private primary(): Node {
    const t = this.next();
    switch (t.kind) {
      case 'number':
      case 'string':
        return { type: 'literal', value: t.value };
      case 'name': {
        if (t.text === 'true') return { type: 'literal', value: true };
        if (t.text === 'false') return { type: 'literal', value: false };
        if (t.text === 'nil') return { type: 'literal', value: null };
        if (KEYWORDS.has(t.text)) this.fail(`unexpected "${t.text}"`, t);
        if (this.is('(')) return this.call(t);
        return { type: 'name', name: t.text, pos: t.pos };
      }
      case 'op':
        switch (t.text) {
          case '(': {
            const inner = this.conditional();
            this.expect(')');
            return inner;
          }
          case '#':
            if (this.closures === 0) this.fail('"#" can only be used inside a predicate', t);
            return { type: 'pointer' };
          case '.': {
            // `.field` inside a predicate is `#.field`.
            if (this.closures === 0) this.fail('unexpected "."', t);
            const name = this.next();
            if (name.kind !== 'name') this.fail('expected a field name after "."', name);
            return {
              type: 'member',
              object: { type: 'pointer' },
              property: { type: 'literal', value: name.text },
              optional: false,
              pos: t.pos,
            };
          }
          case '[': {
            const items: Node[] = [];
            while (!this.is(']')) {
              items.push(this.conditional());
              if (!this.is(',')) break;
              this.next();
            }
            this.expect(']');
            return { type: 'array', items };
          }
          case '{': {
            const entries: Array<[string, Node]> = [];
            while (!this.is('}')) {
              const key = this.next();
              if (key.kind === 'name') entries.push([key.text, this.entryValue()]);
              else if (key.kind === 'string') entries.push([String(key.value), this.entryValue()]);
              else if (key.kind === 'number') entries.push([String(key.value), this.entryValue()]);
              else this.fail(`unexpected token "${key.text}" in a map`, key);
              if (!this.is(',')) break;
              this.next();
            }
            this.expect('}');
            return { type: 'map', entries };
          }
        }
        return this.fail(`unexpected token "${t.text}"`, t);
      case 'eof':
        return this.fail('the expression ended unexpectedly', t);
    }
  }

  private entryValue(): Node {
    this.expect(':');
    return this.conditional();
  }

  private call(name: Token): Node {
    this.expect('(');
    const fn = FUNCTIONS.get(name.text);
    const predicate = PREDICATES.has(name.text);
    if (!fn && !predicate) this.fail(`unknown function "${name.text}"`, name);
    const args: Node[] = [];
    while (!this.is(')')) {
      if (predicate && args.length === 1) {
        // The predicate: `{ body }` or a bare body, evaluated once per element.
        this.closures++;
        try {
          if (this.is('{')) {
            this.next();
            args.push(this.conditional());
            this.expect('}');
          } else {
            args.push(this.conditional());
          }
        } finally {
          this.closures--;
        }
      } else {
        args.push(this.conditional());
      }
      if (!this.is(',')) break;
      this.next();
    }
    this.expect(')');
    if (predicate && args.length !== 2) this.fail(`${name.text}() takes an array and a predicate`, name);
    return { type: 'call', name: name.text, args, pos: name.pos };
  }

  private postfix(node: Node): Node {
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'op') return node;
      if (t.text === '.' || t.text === '?.') {
        this.next();
        if (t.text === '?.' && this.is('[')) {
          node = this.index(node, true);
          continue;
        }
        const name = this.next();
        if (name.kind !== 'name') this.fail(`expected a field name after "${t.text}"`, name);
        if (this.is('(')) this.fail(`method calls are not supported ("${name.text}(")`, name);
        node = {
          type: 'member',
          object: node,
          property: { type: 'literal', value: name.text },
          optional: t.text === '?.',
          pos: t.pos,
        };
      } else if (t.text === '[') {
        node = this.index(node, false);
      } else if (t.text === '(') {
        this.fail('only the built-in functions can be called', t);
      } else {
        return node;
      }
    }
  }

  private index(object: Node, optional: boolean): Node {
    const open = this.expect('[');
    if (this.is(':')) {
      this.next();
      const to = this.is(']') ? undefined : this.conditional();
      this.expect(']');
      return { type: 'slice', object, to, pos: open.pos };
    }
    const from = this.conditional();
    if (this.is(':')) {
      this.next();
      const to = this.is(']') ? undefined : this.conditional();
      this.expect(']');
      return { type: 'slice', object, from, to, pos: open.pos };
    }
    this.expect(']');
    return { type: 'member', object, property: from, optional, pos: open.pos };
  }
}

// ---------------------------------------------------------------------------------------------
// Values

function typeName(v: Value): string {
  if (v === null || v === undefined) return 'nil';
  if (Array.isArray(v)) return 'array';
  switch (typeof v) {
    case 'number':
      return 'number';
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'object':
      return 'map';
    default:
      return 'unknown';
  }
}

function isMap(v: Value): v is Record<string, Value> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function format(v: Value): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return String(v);
  if (v === null || v === undefined) return 'nil';
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeName(v);
  }
}

function equal(a: Value, b: Value): boolean {
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (typeof a !== typeof b) return false;
  if (a === null || b === null) return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => equal(x, b[i]));
  }
  if (isMap(a) && isMap(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
  }
  return a === b;
}

function num(v: Value, what: string): number {
  if (typeof v !== 'number')
    throw new ExpressionError(`${what} needs a number, not ${typeName(v)} ${format(v)}`);
  return v;
}

function str(v: Value, what: string): string {
  if (typeof v !== 'string')
    throw new ExpressionError(`${what} needs a string, not ${typeName(v)} ${format(v)}`);
  return v;
}

function arr(v: Value, what: string): Value[] {
  if (!Array.isArray(v)) throw new ExpressionError(`${what} needs an array, not ${typeName(v)} ${format(v)}`);
  return v;
}

function bool(v: Value, what: string): boolean {
  if (typeof v !== 'boolean')
    throw new ExpressionError(`${what} needs a bool, not ${typeName(v)} ${format(v)}`);
  return v;
}

/** Go's strconv.ParseInt(s, 10, 64), as Argo's asInt uses it. */
function parseIntStrict(s: string): number {
  if (!/^[+-]?[0-9]+$/.test(s))
    throw new ExpressionError(`asInt: cannot parse ${JSON.stringify(s)} as an integer`);
  return Number(s);
}

/** Go's strconv.ParseFloat(s, 64), as Argo's asFloat uses it. */
function parseFloatStrict(s: string): number {
  const t = s.trim() === s ? s : '';
  if (/^[+-]?(inf|infinity)$/i.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(t)) return NaN;
  if (/^[+-]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?$/.test(t))
    return Number(t.replace(/_/g, ''));
  throw new ExpressionError(`asFloat: cannot parse ${JSON.stringify(s)} as a number`);
}

const runes = (s: string) => [...s];

type Fn = (args: Value[]) => Value;
const arity =
  (name: string, n: number, fn: Fn): Fn =>
  (args) => {
    if (args.length !== n)
      throw new ExpressionError(`${name}() takes ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`);
    return fn(args);
  };

function numbers(name: string, args: Value[]): number[] {
  const list = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
  if (list.length === 0) throw new ExpressionError(`${name}() of nothing`);
  return list.map((v) => num(v, `${name}()`));
}

const FUNCTIONS = new Map<string, Fn>([
  [
    'len',
    arity('len', 1, ([v]) => {
      if (typeof v === 'string') return runes(v).length;
      if (Array.isArray(v)) return v.length;
      if (isMap(v)) return Object.keys(v).length;
      throw new ExpressionError(`len() of ${typeName(v)} ${format(v)}`);
    }),
  ],
  [
    'asInt',
    arity('asInt', 1, ([v]) => {
      if (typeof v === 'number') {
        if (!Number.isFinite(v)) throw new ExpressionError(`asInt: cannot convert ${v}`);
        return Math.trunc(v);
      }
      if (typeof v === 'string') return parseIntStrict(v);
      throw new ExpressionError(`asInt() not supported on ${typeName(v)} ${format(v)}`);
    }),
  ],
  [
    'asFloat',
    arity('asFloat', 1, ([v]) => {
      if (typeof v === 'number') return v;
      if (typeof v === 'string') return parseFloatStrict(v);
      throw new ExpressionError(`asFloat() not supported on ${typeName(v)} ${format(v)}`);
    }),
  ],
  ['isNaN', arity('isNaN', 1, ([v]) => Number.isNaN(num(v, 'isNaN()')))],
  [
    'isInf',
    arity('isInf', 1, ([v]) => {
      const n = num(v, 'isInf()');
      return n === Infinity || n === -Infinity;
    }),
  ],
  ['isNil', arity('isNil', 1, ([v]) => v === null || v === undefined)],
  ['default', arity('default', 2, ([v, d]) => (v === null || v === undefined ? d : v))],
  ['abs', arity('abs', 1, ([v]) => Math.abs(num(v, 'abs()')))],
  ['ceil', arity('ceil', 1, ([v]) => Math.ceil(num(v, 'ceil()')))],
  ['floor', arity('floor', 1, ([v]) => Math.floor(num(v, 'floor()')))],
  ['round', arity('round', 1, ([v]) => Math.round(num(v, 'round()')))],
  ['max', (args) => Math.max(...numbers('max', args))],
  ['min', (args) => Math.min(...numbers('min', args))],
  ['sum', arity('sum', 1, ([v]) => arr(v, 'sum()').reduce<number>((s, x) => s + num(x, 'sum()'), 0))],
  [
    'mean',
    arity('mean', 1, ([v]) => {
      const list = arr(v, 'mean()');
      if (list.length === 0) throw new ExpressionError('mean() of an empty array');
      return list.reduce<number>((s, x) => s + num(x, 'mean()'), 0) / list.length;
    }),
  ],
  [
    'int',
    arity('int', 1, ([v]) => {
      if (typeof v === 'number') return Math.trunc(v);
      if (typeof v === 'string') return parseIntStrict(v.trim());
      throw new ExpressionError(`int() of ${typeName(v)}`);
    }),
  ],
  [
    'float',
    arity('float', 1, ([v]) => {
      if (typeof v === 'number') return v;
      if (typeof v === 'string') return parseFloatStrict(v.trim());
      throw new ExpressionError(`float() of ${typeName(v)}`);
    }),
  ],
  [
    'string',
    arity('string', 1, ([v]) => {
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      if (v === null || v === undefined) return '<nil>';
      return JSON.stringify(v);
    }),
  ],
  ['lower', arity('lower', 1, ([v]) => str(v, 'lower()').toLowerCase())],
  ['upper', arity('upper', 1, ([v]) => str(v, 'upper()').toUpperCase())],
  ['trim', arity('trim', 1, ([v]) => str(v, 'trim()').trim())],
  ['first', arity('first', 1, ([v]) => arr(v, 'first()')[0] ?? null)],
  ['last', arity('last', 1, ([v]) => arr(v, 'last()').at(-1) ?? null)],
  [
    'keys',
    arity('keys', 1, ([v]) => {
      if (!isMap(v)) throw new ExpressionError(`keys() needs a map, not ${typeName(v)}`);
      return Object.keys(v);
    }),
  ],
  [
    'values',
    arity('values', 1, ([v]) => {
      if (!isMap(v)) throw new ExpressionError(`values() needs a map, not ${typeName(v)}`);
      return Object.values(v);
    }),
  ],
]);
const PREDICATES = new Set(['all', 'any', 'none', 'one', 'filter', 'map', 'count']);

/**
 * A pattern for `matches`, compiled by RE2 (re2js, a maintained port of the engine behind Go's
 * regexp, which Argo uses): matching takes time linear in the input whatever the pattern, so a
 * hostile `(a|a)*$` cannot stall the event loop (and with it lease renewal, probes and webhooks)
 * the way JavaScript's backtracking engine does. RE2's syntax is Go's: no backreferences or
 * lookarounds. Compiled patterns are kept: the same template is evaluated at every measurement.
 */
const compiled = new Map<string, RE2JS>();
function safeRegExp(pattern: string): RE2JS {
  if (pattern.length > 1000) throw new ExpressionError('matches: pattern too long');
  let re = compiled.get(pattern);
  if (!re) {
    try {
      re = RE2JS.compile(pattern);
    } catch (err) {
      throw new ExpressionError(`matches: invalid pattern: ${(err as Error).message}`);
    }
    if (compiled.size >= 256) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

class Interpreter {
  private steps = 0;
  private readonly env: ReadonlyMap<string, Value>;

  constructor(env: ReadonlyMap<string, Value>) {
    this.env = env;
  }

  eval(node: Node, item: Value): Value {
    if (++this.steps > MAX_STEPS) throw new ExpressionError('expression too expensive to evaluate');
    switch (node.type) {
      case 'literal':
        return node.value;
      case 'pointer':
        return item;
      case 'name':
        if (!this.env.has(node.name))
          throw new ExpressionError(`unknown name "${node.name}" at position ${node.pos}`);
        return this.env.get(node.name);
      case 'array':
        return node.items.map((n) => this.eval(n, item));
      case 'map': {
        const out = Object.create(null) as Record<string, Value>;
        for (const [k, v] of node.entries) out[k] = this.eval(v, item);
        return out;
      }
      case 'member': {
        const object = this.eval(node.object, item);
        if ((object === null || object === undefined) && node.optional) return null;
        return member(object, this.eval(node.property, item), node.pos);
      }
      case 'slice': {
        const object = this.eval(node.object, item);
        const from = node.from ? num(this.eval(node.from, item), 'slice') : 0;
        if (typeof object === 'string') {
          const r = runes(object);
          const to = node.to ? num(this.eval(node.to, item), 'slice') : r.length;
          return r.slice(sliceIndex(from, r.length), sliceIndex(to, r.length)).join('');
        }
        const list = arr(object, 'slice');
        const to = node.to ? num(this.eval(node.to, item), 'slice') : list.length;
        return list.slice(sliceIndex(from, list.length), sliceIndex(to, list.length));
      }
      case 'unary': {
        const v = this.eval(node.operand, item);
        if (node.op === '!') return !bool(v, '"!"');
        if (node.op === '-') return -num(v, 'unary "-"');
        return num(v, 'unary "+"');
      }
      case 'conditional':
        return bool(this.eval(node.test, item), 'the condition of "?:"')
          ? this.eval(node.then, item)
          : this.eval(node.else, item);
      case 'binary':
        return this.binary(node, item);
      case 'call':
        return this.call(node, item);
    }
  }

  private binary(node: Extract<Node, { type: 'binary' }>, item: Value): Value {
    const { op } = node;
    // Short-circuits first: the right side may not be evaluable (result != nil && result.x > 1).
    if (op === '&&' || op === 'and') {
      return bool(this.eval(node.left, item), `"${op}"`) && bool(this.eval(node.right, item), `"${op}"`);
    }
    if (op === '||' || op === 'or') {
      return bool(this.eval(node.left, item), `"${op}"`) || bool(this.eval(node.right, item), `"${op}"`);
    }
    if (op === '??') {
      const l = this.eval(node.left, item);
      return l === null || l === undefined ? this.eval(node.right, item) : l;
    }
    const l = this.eval(node.left, item);
    const r = this.eval(node.right, item);
    if (op.startsWith('not ')) return !this.compare(op.slice(4), l, r, node.pos);
    return this.compare(op, l, r, node.pos);
  }

  private compare(op: string, l: Value, r: Value, pos: number): Value {
    const mismatch = (): never => {
      throw new ExpressionError(
        `invalid operation ${format(l)} ${op} ${format(r)} (${typeName(l)} and ${typeName(r)}) at position ${pos}`,
      );
    };
    switch (op) {
      case '==':
        return equal(l, r);
      case '!=':
        return !equal(l, r);
      case '<':
      case '>':
      case '<=':
      case '>=': {
        if (!(
          (typeof l === 'number' && typeof r === 'number') ||
          (typeof l === 'string' && typeof r === 'string')
        )) {
          mismatch();
        }
        const a = l as number | string;
        const b = r as number | string;
        return op === '<' ? a < b : op === '>' ? a > b : op === '<=' ? a <= b : a >= b;
      }
      case '+':
        if (typeof l === 'number' && typeof r === 'number') return l + r;
        if (typeof l === 'string' && typeof r === 'string') return l + r;
        if (Array.isArray(l) && Array.isArray(r)) return [...(l as Value[]), ...(r as Value[])];
        return mismatch();
      case '-':
      case '*':
      case '/':
      case '%':
      case '**':
      case '^': {
        if (typeof l !== 'number' || typeof r !== 'number') return mismatch();
        if (op === '-') return l - r;
        if (op === '*') return l * r;
        if (op === '/') return l / r;
        if (op === '%') {
          if (!Number.isInteger(l) || !Number.isInteger(r)) return mismatch();
          if (r === 0) throw new ExpressionError(`integer divide by zero at position ${pos}`);
          return l % r;
        }
        return l ** r;
      }
      case 'in':
        if (Array.isArray(r)) return r.some((x) => equal(x, l));
        if (isMap(r)) return typeof l === 'string' && Object.hasOwn(r, l);
        if (r === null || r === undefined) return false;
        return mismatch();
      case 'contains':
        if (typeof l !== 'string' || typeof r !== 'string') return mismatch();
        return l.includes(r);
      case 'startsWith':
        if (typeof l !== 'string' || typeof r !== 'string') return mismatch();
        return l.startsWith(r);
      case 'endsWith':
        if (typeof l !== 'string' || typeof r !== 'string') return mismatch();
        return l.endsWith(r);
      case 'matches':
        if (typeof l !== 'string' || typeof r !== 'string') return mismatch();
        if (l.length > MAX_MATCH_INPUT) throw new ExpressionError('matches: input too long');
        return safeRegExp(r).test(l);
    }
    throw new ExpressionError(`unknown operator "${op}"`);
  }

  private call(node: Extract<Node, { type: 'call' }>, item: Value): Value {
    if (PREDICATES.has(node.name)) {
      const list = arr(this.eval(node.args[0]!, item), `${node.name}()`);
      const body = node.args[1]!;
      const test = (x: Value) => bool(this.eval(body, x), `the predicate of ${node.name}()`);
      switch (node.name) {
        case 'all':
          return list.every(test);
        case 'any':
          return list.some(test);
        case 'none':
          return !list.some(test);
        case 'one':
          return list.filter(test).length === 1;
        case 'filter':
          return list.filter(test);
        case 'count':
          return list.filter(test).length;
        case 'map':
          return list.map((x) => this.eval(body, x));
      }
    }
    const fn = FUNCTIONS.get(node.name)!;
    return fn(node.args.map((a) => this.eval(a, item)));
  }
}

function sliceIndex(i: number, length: number): number {
  if (!Number.isInteger(i)) throw new ExpressionError(`slice index ${i} is not an integer`);
  const n = i < 0 ? length + i : i;
  return Math.max(0, Math.min(length, n));
}

function member(object: Value, key: Value, pos: number): Value {
  if (Array.isArray(object) || typeof object === 'string') {
    const list = typeof object === 'string' ? runes(object) : object;
    if (typeof key !== 'number' || !Number.isInteger(key)) {
      throw new ExpressionError(`cannot index ${typeName(object)} with ${format(key)} at position ${pos}`);
    }
    const i = key < 0 ? list.length + key : key;
    if (i < 0 || i >= list.length) {
      throw new ExpressionError(
        `index ${key} out of range (length ${list.length}) at position ${pos}${list.length === 0 ? ': the result is empty' : ''}`,
      );
    }
    return list[i];
  }
  if (isMap(object)) {
    if (typeof key !== 'string')
      throw new ExpressionError(`cannot index a map with ${format(key)} at position ${pos}`);
    // Own properties only: a missing key is nil, as for Go maps; the prototype is never reached.
    return Object.hasOwn(object, key) ? object[key] : null;
  }
  throw new ExpressionError(
    `cannot fetch ${format(key)} from ${typeName(object)} ${format(object)} at position ${pos}`,
  );
}

/** A parsed expression, evaluated as often as needed. */
export class Expression {
  readonly source: string;
  private readonly ast: Node;

  constructor(source: string) {
    if (source.length > MAX_LENGTH)
      throw new ExpressionError(`expression longer than ${MAX_LENGTH} characters`);
    this.source = source;
    this.ast = new Parser(tokenize(source)).parse();
  }

  /** Evaluates with `variables` (typically `{ result }`) in scope. */
  evaluate(variables: Record<string, unknown>): unknown {
    return new Interpreter(new Map(Object.entries(variables))).eval(this.ast, undefined);
  }
}

/** Parses an expression and throws ExpressionError if it is malformed. */
export function parseExpression(source: string): Expression {
  return new Expression(source);
}

/** Evaluates a condition over `result`; it must yield a bool. */
export function evaluateCondition(condition: string, result: unknown): boolean {
  const value = new Expression(condition).evaluate({ result: normalize(result) });
  if (typeof value !== 'boolean')
    throw new ExpressionError(`expected bool, but got ${typeName(value)} ${format(value)}`);
  return value;
}

/** Undefined (absent) is nil; nothing else changes. */
function normalize(v: unknown): unknown {
  return v === undefined ? null : v;
}

export type ConditionOutcome = 'Successful' | 'Failed' | 'Inconclusive';

/**
 * A measurement's phase from the metric's conditions (Argo's EvaluateResult): with neither
 * condition, Successful; with only a success condition, Failed when it is false; with only a
 * failure condition, Successful when it is false; with both, Failed if the failure condition
 * holds, Successful if only the success condition holds, Inconclusive if neither does.
 * Throws ExpressionError (the measurement is then an Error) naming the condition that broke.
 */
export function evaluateConditions(
  metric: { successCondition?: string; failureCondition?: string },
  result: unknown,
): ConditionOutcome {
  const evalOne = (kind: string, condition: string): boolean => {
    try {
      return evaluateCondition(condition, result);
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      const empty = result === null || result === undefined || (Array.isArray(result) && result.length === 0);
      throw new ExpressionError(
        empty
          ? `could not evaluate ${kind} "${condition}": metric result is nil or empty: no data returned from the metric provider (${err.message})`
          : `could not evaluate ${kind} "${condition}": ${err.message}`,
      );
    }
  };
  const success = metric.successCondition ? evalOne('successCondition', metric.successCondition) : undefined;
  const failure = metric.failureCondition ? evalOne('failureCondition', metric.failureCondition) : undefined;
  if (success === undefined && failure === undefined) return 'Successful';
  const failed = failure ?? !success;
  const succeeded = success ?? !failure;
  if (failed) return 'Failed';
  if (!succeeded) return 'Inconclusive';
  return 'Successful';
}
