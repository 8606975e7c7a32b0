import { describe, expect, test } from '@jest/globals';
import {
  formatDuration,
  nextBackoff,
  parseDuration,
  pollDelay,
  rateLimitFromHeaders,
  rateLimitInterval,
  RATE_LIMIT_RESERVE,
} from '../../../src/core/github/poll.ts';

describe('backoff', () => {
  test('grows by 1.5 from 2 s to a ceiling of 30 s while nothing changes', () => {
    const seen: number[] = [];
    let d = 2000;
    for (let i = 0; i < 10; i++) {
      seen.push(d);
      d = nextBackoff(d, false);
    }
    expect(seen).toEqual([2000, 3000, 4500, 6750, 10125, 15187.5, 22781.25, 30000, 30000, 30000]);
  });

  test('halves on a change, never below the initial interval', () => {
    expect(nextBackoff(30000, true)).toBe(15000);
    expect(nextBackoff(3000, true)).toBe(2000);
    expect(nextBackoff(2000, true)).toBe(2000);
  });

  test('takes its bounds and factor from options', () => {
    expect(nextBackoff(100, false, { initialMs: 100, maxMs: 250, factor: 2 })).toBe(200);
    expect(nextBackoff(200, false, { initialMs: 100, maxMs: 250, factor: 2 })).toBe(250);
    // Never below the initial interval.
    expect(nextBackoff(10, false, { initialMs: 100 })).toBe(100);
  });
});

describe('rate-limit pacing', () => {
  const date = 'Tue, 01 Sep 2026 12:00:00 GMT';
  const now = Date.parse(date);
  const headers = (remaining: number, resetIn: number) => ({
    'x-ratelimit-limit': '1000',
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': String(now / 1000 + resetIn),
    date,
  });

  test('reads the headers, measuring the reset from the server Date', () => {
    expect(rateLimitFromHeaders(headers(500, 600))).toEqual({
      limit: 1000,
      remaining: 500,
      resetSeconds: now / 1000 + 600,
      serverNowMs: now,
    });
    expect(rateLimitFromHeaders({ date })).toBeUndefined();
    expect(rateLimitFromHeaders({ ...headers(1, 1), date: 'not a date' })).toBeUndefined();
  });

  test('a large budget does not slow the 2 s poll', () => {
    expect(pollDelay(2000, rateLimitFromHeaders(headers(4000, 3600)))).toBe(2000);
  });

  test('a small budget spreads the requests left (less the reserve) until the reset', () => {
    // 120 left, 20 kept for others: 100 requests over 600 s.
    expect(rateLimitInterval(rateLimitFromHeaders(headers(120, 600)))).toBe(6000);
    expect(pollDelay(2000, rateLimitFromHeaders(headers(120, 600)))).toBe(6000);
    // The pacing may exceed the backoff's 30 s ceiling: the budget wins.
    expect(pollDelay(30000, rateLimitFromHeaders(headers(30, 600)))).toBe(60000);
  });

  test('at or under the reserve, wait for the reset (and a second)', () => {
    expect(rateLimitInterval(rateLimitFromHeaders(headers(RATE_LIMIT_RESERVE, 90)))).toBe(91000);
    expect(rateLimitInterval(rateLimitFromHeaders(headers(0, 90)))).toBe(91000);
  });

  test('a reset already past, or no headers, constrain nothing', () => {
    expect(rateLimitInterval(rateLimitFromHeaders(headers(0, -5)))).toBe(0);
    expect(rateLimitInterval(undefined)).toBe(0);
  });
});

describe('durations', () => {
  test.each([
    ['90', 90_000],
    ['90s', 90_000],
    ['30m', 1_800_000],
    ['1h30m', 5_400_000],
    ['1h', 3_600_000],
    ['500ms', 500],
    ['1.5s', 1500],
  ])('parses %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(['', 'soon', '10 minutes', '5d', 'm5', '1h 30m'])('refuses %j, naming the input', (text) => {
    expect(() => parseDuration(text, 'input "timeout"')).toThrow(
      `input "timeout" must be a duration like 90s, 30m or 1h30m, got "${text}"`,
    );
  });

  test.each([
    [0, '0s'],
    [42_400, '42s'],
    [187_000, '3m 07s'],
    [3_720_000, '1h 02m'],
  ])('formats %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});
