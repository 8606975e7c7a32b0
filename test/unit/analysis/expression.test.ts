import { describe, expect, test } from '@jest/globals';
import {
  evaluateCondition,
  evaluateConditions,
  ExpressionError,
  parseExpression,
} from '../../../src/controller/analysis/expression.ts';

describe('evaluateCondition', () => {
  const cases: Array<[string, unknown, boolean]> = [
    // Prometheus vectors and scalars
    ['result[0] >= 0.95', [0.97], true],
    ['result[0] >= 0.95', [0.9], false],
    ['result >= 0.95', 0.99, true],
    ['result[-1] < 1', [5, 0.5], true],
    ['len(result) == 0', [], true],
    ['len(result) > 0 && result[0] > 1', [], false],
    ['all(result, # > 0.9)', [0.95, 0.99], true],
    ['all(result, {# > 0.9})', [0.95, 0.5], false],
    ['any(result, # < 0.5)', [0.95, 0.4], true],
    ['none(result, # < 0)', [1, 2], true],
    ['one(result, # == 2)', [1, 2, 3], true],
    ['count(result, # > 1) == 2', [1, 2, 3], true],
    ['len(filter(result, # > 1)) == 2', [1, 2, 3], true],
    ['sum(result) == 6 && mean(result) == 2 && max(result) == 3 && min(result) == 1', [1, 2, 3], true],
    ['isNaN(result[0])', [NaN], true],
    ['isInf(result)', Infinity, true],
    ['!isNaN(result) and not isInf(result)', 1, true],
    // Web results: strings, bools, maps
    ["result == 'true'", 'true', true],
    ['result == "true"', 'true', true],
    ['result == true', true, true],
    ['result == true', 'true', false],
    ['asInt(result) > 2', '3', true],
    ['asFloat(result) >= 0.9', '0.95', true],
    ['asFloat(result) >= 0.9', 0.95, true],
    ['asInt(result) == 3', 3.7, true],
    ['result.ok && result.rate > 0.9', { ok: true, rate: 0.95 }, true],
    ["result['ok-ish'] == 1", { 'ok-ish': 1 }, true],
    ['result.missing == nil', { ok: true }, true],
    ['result?.a?.b == nil', null, true],
    ['isNil(result)', null, true],
    ['default(result, 5) == 5', null, true],
    ['result.items[1].v == 2', { items: [{ v: 1 }, { v: 2 }] }, true],
    ['all(result.items, .v > 0)', { items: [{ v: 1 }, { v: 2 }] }, true],
    ["'b' in result", ['a', 'b'], true],
    ["'c' not in result", ['a', 'b'], true],
    ["'ok' in result", { ok: 1 }, true],
    ["result contains 'ell' && result startsWith 'he' && result endsWith 'lo'", 'hello', true],
    ["result matches '^v[0-9]+\\\\.[0-9]+$'", 'v1.2', true],
    ["result not matches '^x'", 'v1.2', true],
    // Arithmetic and precedence
    ['1 + 2 * 3 == 7', null, true],
    ['(1 + 2) * 3 == 9', null, true],
    ['2 ** 3 ** 2 == 512', null, true],
    ['-2 ** 2 == -4', null, true],
    ['7 % 3 == 1 && 7 / 2 == 3.5', null, true],
    ['1_000 == 1e3 && 0x10 == 16', null, true],
    ['result ?? 3 == 3', null, true],
    ['result > 1 ? result < 3 : false', 2, true],
    ['not true == false', null, true],
    ['"a" + "b" == "ab"', null, true],
    ['[1, 2] == [1, 2] && {a: 1} == {a: 1}', null, true],
    ['result[1:3] == [2, 3] && result[:1] == [1]', [1, 2, 3], true],
    ['false || true and false', null, false],
    ['lower("AB") == "ab" && upper("a") == "A" && trim(" x ") == "x"', null, true],
    ['string(1) == "1" && int("42") == 42 && float("1.5") == 1.5', null, true],
    ['abs(-1) == 1 && ceil(1.2) == 2 && floor(1.8) == 1 && round(1.5) == 2', null, true],
    ['first(result) == 1 && last(result) == 3', [1, 2, 3], true],
    ['len(keys(result)) == 2 && 1 in values(result)', { a: 1, b: 2 }, true],
    ['len("héllo") == 5', null, true],
  ];
  test.each(cases)('%s with result %p is %p', (condition, result, expected) => {
    expect(evaluateCondition(condition, result)).toBe(expected);
  });

  const errors: Array<[string, unknown, RegExp]> = [
    ['result[0] > 1', [], /index 0 out of range \(length 0\).*the result is empty/],
    ['result > 1', 'x', /invalid operation/],
    ['result.x', 5, /cannot fetch "x" from number/],
    ['result', 1, /expected bool, but got number 1/],
    ['asInt(result) > 1', '1.5', /cannot parse "1.5" as an integer/],
    ['asFloat(result) > 1', 'abc', /cannot parse "abc" as a number/],
    ['result && true', 1, /needs a bool/],
    ['unknownVar > 1', 1, /unknown name "unknownVar"/],
    ['foo(1)', 1, /unknown function "foo"/],
    ['result >', 1, /ended unexpectedly/],
    ['(result > 1', 1, /expected "\)"/],
    ['result > 1 1', 1, /unexpected token "1"/],
    ["'abc", 1, /unterminated string/],
    ['result @ 1', 1, /unexpected character "@"/],
    ['1 % 0 == 0', 1, /divide by zero/],
    ['# > 1', 1, /inside a predicate/],
    ["result matches '(a)\\\\1'", 'aa', /invalid pattern/],
    ["result matches '(?=a)'", 'aa', /invalid pattern/],
  ];
  test('a pattern that backtracks exponentially in JavaScript matches in linear time (RE2)', () => {
    // With RegExp, this input takes longer than the age of the universe; RE2 answers at once.
    const input = `${'a'.repeat(5000)}!`;
    expect(evaluateCondition("result matches '^(a|a)*$'", input)).toBe(false);
    expect(evaluateCondition("result matches '(a+)+$'", 'aaaa')).toBe(true);
    expect(evaluateCondition("result matches '^(a|a)*$'", 'aaaa')).toBe(true);
  });

  test.each(errors)('%s with result %p fails: %p', (condition, result, message) => {
    expect(() => evaluateCondition(condition, result)).toThrow(ExpressionError);
    expect(() => evaluateCondition(condition, result)).toThrow(message);
  });
});

describe('malicious expressions fail safely', () => {
  const attempts = [
    'constructor.constructor("return process")()',
    'result.constructor.constructor("return process")()',
    'result["constructor"]["constructor"]("return process")()',
    'result.__proto__.polluted == 1',
    'result.toString() == ""',
    'this.process == nil',
    'globalThis.process',
    'process.exit(1)',
    'require("child_process")',
    'eval("1")',
    'Function("return 1")()',
    '`${process}`',
    '(() => 1)()',
    'result.x = 1',
    'import("fs")',
  ];
  test.each(attempts)('%s', (condition) => {
    let outcome: unknown;
    try {
      outcome = evaluateCondition(condition, { x: 1 });
    } catch (err) {
      expect(err).toBeInstanceOf(ExpressionError);
      return;
    }
    // Evaluating without an error is acceptable only as a harmless bool (a missing key is nil).
    expect(typeof outcome).toBe('boolean');
  });

  test('prototype keys are missing keys, not the runtime objects', () => {
    expect(evaluateCondition('result.constructor == nil', {})).toBe(true);
    expect(evaluateCondition('result.__proto__ == nil', {})).toBe(true);
    expect(evaluateCondition("result['hasOwnProperty'] == nil", {})).toBe(true);
    // A JSON key named __proto__ is data like any other.
    expect(evaluateCondition('result.__proto__.a == 1', JSON.parse('{"__proto__": {"a": 1}}'))).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(evaluateCondition("{__proto__: 1}['__proto__'] == 1", null)).toBe(true);
    expect(({} as Record<string, unknown>)['__proto__']).toBe(Object.prototype);
  });

  test('resource limits: deep nesting, huge expressions and expensive loops are refused', () => {
    expect(() => parseExpression('('.repeat(500) + '1' + ')'.repeat(500))).toThrow(/nested too deeply/);
    expect(() => parseExpression('1 + '.repeat(5000) + '1')).toThrow(/longer than/);
    const big = Array.from({ length: 2000 }, (_, i) => i);
    expect(() => evaluateCondition('all(result, {all(result, {# >= 0})})', big)).toThrow(/too expensive/);
  });
});

describe('evaluateConditions (Argo EvaluateResult)', () => {
  test.each([
    [{}, 1, 'Successful'],
    [{ successCondition: 'result > 1' }, 2, 'Successful'],
    [{ successCondition: 'result > 1' }, 0, 'Failed'],
    [{ failureCondition: 'result > 1' }, 2, 'Failed'],
    [{ failureCondition: 'result > 1' }, 0, 'Successful'],
    [{ successCondition: 'result > 5', failureCondition: 'result < 1' }, 3, 'Inconclusive'],
    [{ successCondition: 'result > 5', failureCondition: 'result < 1' }, 6, 'Successful'],
    [{ successCondition: 'result > 5', failureCondition: 'result < 1' }, 0, 'Failed'],
    [{ successCondition: 'result > -1', failureCondition: 'result < 1' }, 0, 'Failed'],
  ])('%p with %p: %s', (metric, result, phase) => {
    expect(evaluateConditions(metric, result)).toBe(phase);
  });

  test('errors name the condition and say when the result was empty', () => {
    expect(() => evaluateConditions({ successCondition: 'result[0] > 1' }, [])).toThrow(
      /could not evaluate successCondition "result\[0\] > 1": metric result is nil or empty/,
    );
    expect(() => evaluateConditions({ failureCondition: 'result.x > 1' }, 'str')).toThrow(
      /could not evaluate failureCondition/,
    );
  });
});
