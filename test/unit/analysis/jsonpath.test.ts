import { describe, expect, test } from '@jest/globals';
import { JsonPathError, parseJsonPath } from '../../../src/controller/analysis/jsonpath.ts';

const doc = {
  data: { ok: 'true', rate: 0.95, 'dash-key': 1, nested: { deep: [1, 2, 3] } },
  items: [
    { name: 'a', value: 1, ready: true },
    { name: 'b', value: 5 },
    { name: 'c', value: 10, ready: false },
  ],
  empty: [],
};

describe('parseJsonPath', () => {
  test.each<[string, unknown[]]>([
    ['{$.data.ok}', ['true']],
    ['{.data.rate}', [0.95]],
    ['$.data.rate', [0.95]],
    ['{ $.data.rate }', [0.95]],
    ['data.rate', [0.95]],
    ["{$.data['dash-key']}", [1]],
    ['{$["data"]["nested"].deep[2]}', [3]],
    ['{$.data.nested.deep[-1]}', [3]],
    ['{$.data.nested.deep[0:2]}', [1, 2]],
    ['{$.items[*].name}', ['a', 'b', 'c']],
    ['{$.items.*.value}', [1, 5, 10]],
    ['{$..value}', [1, 5, 10]],
    ["{$.items[?(@.name == 'b')].value}", [5]],
    ['{$.items[?(@.value > 4)].name}', ['b', 'c']],
    ['{$.items[?(@.ready)].name}', ['a', 'c']],
    ['{$.items[?(@.ready == true)].name}', ['a']],
    ['{$.empty[*]}', []],
    ['{$}', [doc]],
    ['', [doc]],
  ])('%s', (path, expected) => {
    expect(parseJsonPath(path).find(doc)).toEqual(expected);
  });

  test.each<[string, RegExp]>([
    ['{$.data.missing}', /missing is not found/],
    ['{$.items[7]}', /array index out of bounds/],
    ['{$.data.ok.deeper}', /cannot get field "deeper" of a string/],
    ['{$.data}{$.items}', /only one/],
    ['{$.data', /unclosed/],
    ['{$.items[?(@.x ~ 1)]}', /unexpected/],
    ['{$.items[(@.length-1)]}', /unsupported subscript/],
  ])('%s fails: %p', (path, message) => {
    expect(() => parseJsonPath(path).find(doc)).toThrow(JsonPathError);
    expect(() => parseJsonPath(path).find(doc)).toThrow(message);
  });

  test('prototype names are not reachable', () => {
    expect(() => parseJsonPath('{$.constructor}').find({})).toThrow(/constructor is not found/);
    expect(() => parseJsonPath('{$.__proto__}').find({})).toThrow(/not found/);
  });
});
