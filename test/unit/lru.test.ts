import { describe, expect, test } from '@jest/globals';
import { jsonBytes, SizedLru } from '../../src/core/lru.ts';

describe('SizedLru', () => {
  test('keeps the most recently used entries under its byte budget', () => {
    const lru = new SizedLru<string, string>(10, (v) => v.length);
    lru.set('a', 'aaaa');
    lru.set('b', 'bbbb');
    expect(lru.get('a')).toBe('aaaa'); // a is now the most recently used
    lru.set('c', 'cccc'); // 12 bytes: b goes
    expect([lru.get('a'), lru.get('b'), lru.get('c')]).toEqual(['aaaa', undefined, 'cccc']);
    expect(lru.bytes).toBe(8);
    lru.set('a', 'aaaaaa'); // replacing counts the new size only
    expect(lru.bytes).toBe(10);
    lru.delete('c');
    expect([lru.size, lru.bytes]).toEqual([1, 6]);
  });

  test('an entry bigger than the whole budget is not kept and evicts nothing', () => {
    const lru = new SizedLru<string, string>(10, (v) => v.length);
    lru.set('small', 'xx');
    lru.set('huge', 'y'.repeat(11));
    expect([lru.get('small'), lru.get('huge'), lru.bytes]).toEqual(['xx', undefined, 2]);
  });

  test('jsonBytes grows with the value', () => {
    expect(jsonBytes({ a: 'x'.repeat(1000) })).toBeGreaterThan(jsonBytes({ a: 'x' }) + 1900);
  });
});
