// The web metric's `jsonPath`: the part of Kubernetes' JSONPath (k8s.io/client-go/util/jsonpath,
// which Argo Rollouts uses) that selects values from a JSON document. A template is one
// expression in braces, `{$.data.ok}`; the braces may be left out. Supported steps: `.field`,
// `['field']`, `[n]` (negative from the end), `[a:b]`, `[*]` and `.*`, `..field` (recursive), and
// filters `[?(@.field)]`, `[?(@.field == 'x')]` with == != < <= > >= against a number, string,
// bool or null. Like client-go, a missing field is an error, not an empty answer.

export class JsonPathError extends Error {
  override name = 'JsonPathError';
}

type Literal = string | number | boolean | null;
type Step =
  | { kind: 'field'; name: string }
  | { kind: 'index'; index: number }
  | { kind: 'slice'; from?: number; to?: number }
  | { kind: 'wildcard' }
  | { kind: 'recursive'; name: string } // '*': every descendant
  | { kind: 'filter'; path: Step[]; op?: string; value?: Literal };

export interface JsonPath {
  readonly source: string;
  /** Every value the path selects, in document order. Throws JsonPathError. */
  find(data: unknown): unknown[];
}

const NAME = /^[^.[\]{}()\s'"=!<>@,]+/;

export function parseJsonPath(template: string): JsonPath {
  let src = template.trim();
  if (src === '') src = '{$}';
  if (src.startsWith('{')) {
    if (!src.endsWith('}')) throw new JsonPathError(`jsonPath ${JSON.stringify(template)}: unclosed "{"`);
    src = src.slice(1, -1).trim();
  }
  if (src.includes('{') || src.includes('}')) {
    throw new JsonPathError(`jsonPath ${JSON.stringify(template)}: only one {expression} is supported`);
  }
  const steps = parseSteps(src, template, false).steps;
  return {
    source: template,
    find: (data) => evaluate(steps, [data], template),
  };
}

function parseSteps(src: string, template: string, inFilter: boolean): { steps: Step[]; rest: string } {
  const fail = (msg: string): never => {
    throw new JsonPathError(`jsonPath ${JSON.stringify(template)}: ${msg}`);
  };
  let s = src;
  if (inFilter) {
    if (!s.startsWith('@')) fail('a filter must start with "@"');
    s = s.slice(1);
  } else if (s.startsWith('$')) {
    s = s.slice(1);
  }
  const steps: Step[] = [];
  while (s.length) {
    if (inFilter && /^\s*(==|!=|<=|>=|<|>|\))/.test(s)) break;
    if (s.startsWith('..')) {
      s = s.slice(2);
      if (s.startsWith('*')) {
        steps.push({ kind: 'recursive', name: '*' });
        s = s.slice(1);
        continue;
      }
      const m = NAME.exec(s);
      if (!m) fail(`expected a field name after ".." in ${JSON.stringify(src)}`);
      steps.push({ kind: 'recursive', name: m![0] });
      s = s.slice(m![0].length);
    } else if (s.startsWith('.')) {
      s = s.slice(1);
      if (s.startsWith('*')) {
        steps.push({ kind: 'wildcard' });
        s = s.slice(1);
        continue;
      }
      if (s === '' || s.startsWith('[')) continue; // "$." and ".[0]" are the same as "$" and "[0]"
      const m = NAME.exec(s);
      if (!m) fail(`expected a field name at ${JSON.stringify(s)}`);
      steps.push({ kind: 'field', name: m![0] });
      s = s.slice(m![0].length);
    } else if (s.startsWith('[')) {
      const parsed = parseBracket(s.slice(1), template, fail);
      steps.push(parsed.step);
      s = parsed.rest;
    } else if (!inFilter && steps.length === 0 && NAME.test(s)) {
      // "data.ok" without the leading dot, as people write it.
      const m = NAME.exec(s)!;
      steps.push({ kind: 'field', name: m[0] });
      s = s.slice(m[0].length);
    } else {
      fail(`unexpected ${JSON.stringify(s.slice(0, 20))}`);
    }
  }
  return { steps, rest: s };
}

function parseBracket(
  s: string,
  template: string,
  fail: (msg: string) => never,
): { step: Step; rest: string } {
  let m: RegExpExecArray | null;
  if ((m = /^\s*\*\s*\]/.exec(s))) return { step: { kind: 'wildcard' }, rest: s.slice(m[0].length) };
  if ((m = /^\s*'((?:[^'\\]|\\.)*)'\s*\]/.exec(s)) || (m = /^\s*"((?:[^"\\]|\\.)*)"\s*\]/.exec(s))) {
    return { step: { kind: 'field', name: m[1]!.replace(/\\(.)/g, '$1') }, rest: s.slice(m[0].length) };
  }
  if ((m = /^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*\]/.exec(s))) {
    return {
      step: {
        kind: 'slice',
        ...(m[1] !== undefined ? { from: Number(m[1]) } : {}),
        ...(m[2] !== undefined ? { to: Number(m[2]) } : {}),
      },
      rest: s.slice(m[0].length),
    };
  }
  if ((m = /^\s*(-?\d+)\s*\]/.exec(s)))
    return { step: { kind: 'index', index: Number(m[1]) }, rest: s.slice(m[0].length) };
  if ((m = /^\s*\?\(\s*/.exec(s))) {
    const inner = parseSteps(s.slice(m[0].length), template, true);
    let rest = inner.rest.trimStart();
    let op: string | undefined;
    let value: Literal | undefined;
    const opMatch = /^(==|!=|<=|>=|<|>)\s*/.exec(rest);
    if (opMatch) {
      op = opMatch[1];
      rest = rest.slice(opMatch[0].length);
      const lit =
        /^'((?:[^'\\]|\\.)*)'/.exec(rest) ??
        /^"((?:[^"\\]|\\.)*)"/.exec(rest) ??
        /^(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(rest);
      if (!lit) fail(`expected a literal after "${op}" in a filter`);
      const text = lit[0];
      if (text.startsWith("'") || text.startsWith('"')) value = lit[1]!.replace(/\\(.)/g, '$1');
      else if (text === 'true' || text === 'false') value = text === 'true';
      else if (text === 'null') value = null;
      else value = Number(text);
      rest = rest.slice(text.length).trimStart();
    }
    const close = /^\)\s*\]/.exec(rest);
    if (!close) fail('unclosed filter, expected ")]"');
    return {
      step: { kind: 'filter', path: inner.steps, ...(op ? { op, value } : {}) },
      rest: rest.slice(close[0].length),
    };
  }
  return fail(`unsupported subscript "[${s.slice(0, 20)}"`);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function evaluate(steps: Step[], start: unknown[], template: string, lenient = false): unknown[] {
  let current = start;
  for (const step of steps) {
    const next: unknown[] = [];
    for (const node of current) {
      switch (step.kind) {
        case 'field':
          if (isObject(node) && Object.hasOwn(node, step.name)) next.push(node[step.name]);
          else if (!lenient)
            throw new JsonPathError(
              isObject(node)
                ? `${step.name} is not found`
                : `cannot get field ${JSON.stringify(step.name)} of ${describe(node)}`,
            );
          break;
        case 'index': {
          if (!Array.isArray(node)) {
            if (lenient) break;
            throw new JsonPathError(`cannot index ${describe(node)} with [${step.index}]`);
          }
          const i = step.index < 0 ? node.length + step.index : step.index;
          if (i < 0 || i >= node.length) {
            if (lenient) break;
            throw new JsonPathError(`array index out of bounds: index ${step.index}, length ${node.length}`);
          }
          next.push(node[i]);
          break;
        }
        case 'slice': {
          if (!Array.isArray(node)) {
            if (lenient) break;
            throw new JsonPathError(`cannot slice ${describe(node)}`);
          }
          next.push(...(node.slice(step.from ?? 0, step.to ?? node.length) as unknown[]));
          break;
        }
        case 'wildcard':
          if (Array.isArray(node)) next.push(...(node as unknown[]));
          else if (isObject(node)) next.push(...Object.values(node));
          break;
        case 'recursive':
          collect(node, step.name, next);
          break;
        case 'filter': {
          if (!Array.isArray(node)) break;
          for (const item of node) {
            const found = evaluate(step.path, [item], template, true);
            if (
              step.op === undefined ? found.length > 0 : found.some((v) => compare(v, step.op!, step.value!))
            ) {
              next.push(item);
            }
          }
          break;
        }
      }
    }
    current = next;
  }
  return current;
}

function collect(node: unknown, name: string, out: unknown[]): void {
  if (Array.isArray(node)) {
    for (const item of node) {
      if (name === '*') out.push(item);
      collect(item, name, out);
    }
  } else if (isObject(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (name === '*' || k === name) out.push(v);
      collect(v, name, out);
    }
  }
}

function compare(v: unknown, op: string, lit: Literal): boolean {
  switch (op) {
    case '==':
      return v === lit;
    case '!=':
      return v !== lit;
  }
  if (typeof v === 'number' && typeof lit === 'number') {
    return op === '<' ? v < lit : op === '<=' ? v <= lit : op === '>' ? v > lit : v >= lit;
  }
  if (typeof v === 'string' && typeof lit === 'string') {
    return op === '<' ? v < lit : op === '<=' ? v <= lit : op === '>' ? v > lit : v >= lit;
  }
  return false;
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}
