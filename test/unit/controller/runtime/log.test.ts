import { describe, expect, test } from '@jest/globals';
import { isLogLevel, Logger, silentLogger } from '../../../../src/controller/runtime/log.ts';

function capture(level?: 'debug' | 'info' | 'warn' | 'error') {
  const lines: string[] = [];
  const logger = new Logger({
    level,
    sink: (l) => lines.push(l),
    now: () => new Date('2026-01-02T03:04:05.678Z'),
  });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('Logger', () => {
  test('writes one JSON object per line: ts, level, msg, then fields', () => {
    const { logger, lines } = capture();
    logger.info('reconciled', { key: 'ns/a', durationMs: 12 });
    expect(lines).toEqual([
      '{"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"reconciled","key":"ns/a","durationMs":12}',
    ]);
  });

  test('drops lines below its level', () => {
    const { logger, records } = capture('warn');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(records().map((r) => r.level)).toEqual(['warn', 'error']);
    expect(logger.enabled('info')).toBe(false);
    expect(isLogLevel('warn')).toBe(true);
    expect(isLogLevel('loud')).toBe(false);
  });

  test('children add fields; line fields win over child fields; the envelope cannot be overwritten', () => {
    const { logger, records } = capture();
    logger
      .child({ controller: 'c', name: 'x' })
      .child({ name: 'y' })
      .info('m', { msg: 'sneaky', level: 'x' });
    expect(records()[0]).toEqual({
      ts: '2026-01-02T03:04:05.678Z',
      level: 'info',
      msg: 'm',
      controller: 'c',
      name: 'y',
      'field.msg': 'sneaky',
      'field.level': 'x',
    });
  });

  test('redacts credential-like fields at any depth and serializes errors, dates and bigints', () => {
    const { logger, records } = capture();
    const err = Object.assign(new Error('denied'), { code: 403 });
    logger.error('request failed', {
      error: err,
      token: 'abc',
      headers: { Authorization: 'Bearer abc', accept: 'json' },
      user: { password: 'p', name: 'n', nested: [{ apiKey: 'k' }] },
      emptyToken: '',
      at: new Date('2026-01-01T00:00:00Z'),
      big: 10n,
    });
    const r = records()[0]!;
    expect(r.error).toEqual({ name: 'Error', message: 'denied', code: 403 });
    expect(r.token).toBe('[REDACTED]');
    expect(r.headers).toEqual({ Authorization: '[REDACTED]', accept: 'json' });
    expect(r.user).toEqual({ password: '[REDACTED]', name: 'n', nested: [{ apiKey: '[REDACTED]' }] });
    expect(r.emptyToken).toBe('');
    expect(r.at).toBe('2026-01-01T00:00:00.000Z');
    expect(r.big).toBe('10');
    expect(JSON.stringify(r)).not.toContain('abc');
  });

  test('bounds the depth of nested fields', () => {
    const { logger, records } = capture();
    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 10; i++) deep = { d: deep };
    logger.info('deep', { deep });
    expect(JSON.stringify(records()[0])).toContain('"[...]"');
  });

  test('the silent logger writes nothing', () => {
    expect(() => silentLogger.error('nothing')).not.toThrow();
  });
});
