// Structured logs for the controllers: one JSON object per line (ts, level, msg, then fields), so
// log pipelines can parse them without regexes. Fields whose names look like credentials are
// redacted here, centrally, because a reconciler logging a whole object must not leak a token.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
// Not plain "key": work-queue keys (namespace/name) are logged everywhere and are not secret.
const SECRET_KEY = /pass(word|phrase)?|secret|token|authorization|cookie|credential|(private|api)[-_]?key/i;
const MAX_DEPTH = 6;

export interface LoggerOptions {
  /** Lowest level written; default info. */
  level?: LogLevel;
  /** Receives each line without the trailing newline; default writes to stderr. */
  sink?: (line: string) => void;
  /** Fields added to every line of this logger and its children. */
  fields?: LogFields;
  /** Injectable clock for tests. */
  now?: () => Date;
}

export function isLogLevel(value: string): value is LogLevel {
  return value in LEVELS;
}

export class Logger {
  readonly level: LogLevel;
  private readonly sink: (line: string) => void;
  private readonly fields: LogFields;
  private readonly now: () => Date;

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? 'info';
    this.sink = options.sink ?? ((line) => process.stderr.write(`${line}\n`));
    this.fields = options.fields ?? {};
    this.now = options.now ?? (() => new Date());
  }

  /** A logger that adds `fields` to every line (e.g. controller name, request key). */
  child(fields: LogFields): Logger {
    return new Logger({
      level: this.level,
      sink: this.sink,
      fields: { ...this.fields, ...fields },
      now: this.now,
    });
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }

  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  private write(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    if (!this.enabled(level)) return;
    const record: LogFields = { ts: this.now().toISOString(), level, msg };
    for (const [key, value] of Object.entries({ ...this.fields, ...fields })) {
      // ts/level/msg are the envelope; a field must not overwrite them.
      if (key in record) record[`field.${key}`] = sanitize(key, value, 0);
      else record[key] = sanitize(key, value, 0);
    }
    this.sink(JSON.stringify(record));
  }
}

/** A logger that drops everything: the default for library classes given no logger. */
export const silentLogger = new Logger({ sink: () => undefined, level: 'error' });

function sanitize(key: string, value: unknown, depth: number): unknown {
  if (SECRET_KEY.test(key) && value !== undefined && value !== null && value !== '') return '[REDACTED]';
  if (value instanceof Error) {
    const err: LogFields = { name: value.name, message: value.message };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) err.code = code;
    return err;
  }
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value.toISOString();
  if (depth >= MAX_DEPTH) return '[...]';
  if (Array.isArray(value)) return value.map((v) => sanitize('', v, depth + 1));
  const out: LogFields = {};
  for (const [k, v] of Object.entries(value)) out[k] = sanitize(k, v, depth + 1);
  return out;
}
