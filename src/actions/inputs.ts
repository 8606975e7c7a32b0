// Input helpers shared by the actions: clear messages for values outside what an input accepts.
import * as core from '@actions/core';

/** The input's value, or undefined when empty. */
export function optional(name: string): string | undefined {
  return core.getInput(name) || undefined;
}

export function oneOf<T extends string>(name: string, allowed: readonly T[]): T {
  const value = core.getInput(name);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(
      `input "${name}" must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got "${value}"`,
    );
  }
  return value as T;
}
