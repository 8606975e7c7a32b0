// What a workflow_dispatch accepts, read from the target workflow file itself, and the checks
// GitHub would otherwise make only after the dispatch (or not at all): unknown inputs, missing
// required ones, a choice outside its options, a boolean or number that is not one, more than 25
// inputs, a payload over 65,535 characters, a workflow without a workflow_dispatch trigger.
// Pure functions: no I/O.
import { parse, YAMLParseError } from 'yaml';

/** GitHub's limits for a dispatch's inputs (github.com since Dec 2025). */
export const MAX_INPUTS = 25;
export const MAX_INPUTS_PAYLOAD = 65_535;

export type InputType = 'string' | 'boolean' | 'choice' | 'number' | 'environment';

export interface InputSpec {
  type: InputType;
  required: boolean;
  /** Absent when the workflow gives none. */
  default?: string;
  /** For `choice`. */
  options?: string[];
  description?: string;
}

export interface WorkflowDispatchSpec {
  /** The workflow's `name:`, when it has one. */
  name?: string;
  /** The workflow's `run-name:` expression text, when it has one. */
  runName?: string;
  /** Declared inputs, in file order. */
  inputs: Map<string, InputSpec>;
}

export class WorkflowInputError extends Error {
  override name = 'WorkflowInputError';
  readonly problems: string[];
  constructor(what: string, problems: string[]) {
    super(
      problems.length === 1
        ? `${what}: ${problems[0]}`
        : `${what}:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.problems = problems;
  }
}

const TYPES: readonly InputType[] = ['string', 'boolean', 'choice', 'number', 'environment'];

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/**
 * The workflow_dispatch trigger of a workflow file, or undefined when the workflow has none.
 * Throws a WorkflowInputError when the file is not YAML or its inputs are malformed.
 */
export function parseWorkflowDispatch(text: string, file = 'the workflow'): WorkflowDispatchSpec | undefined {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    const reason = err instanceof YAMLParseError ? err.message.split('\n')[0] : String(err);
    throw new WorkflowInputError(`${file} is not valid YAML`, [reason ?? 'parse error']);
  }
  if (!isMap(doc))
    throw new WorkflowInputError(`${file} is not a workflow`, ['its top level is not a mapping']);
  // YAML 1.1 reads a bare `on` key as the boolean true.
  const on = doc.on ?? doc.true;
  let trigger: unknown;
  if (typeof on === 'string') {
    if (on !== 'workflow_dispatch') return undefined;
  } else if (Array.isArray(on)) {
    if (!on.includes('workflow_dispatch')) return undefined;
  } else if (isMap(on)) {
    if (!('workflow_dispatch' in on)) return undefined;
    trigger = on.workflow_dispatch;
  } else {
    return undefined;
  }
  const spec: WorkflowDispatchSpec = { inputs: new Map() };
  if (typeof doc.name === 'string') spec.name = doc.name;
  if (typeof doc['run-name'] === 'string') spec.runName = doc['run-name'];
  const declared = isMap(trigger) ? trigger.inputs : undefined;
  if (declared === undefined || declared === null) return spec;
  if (!isMap(declared)) {
    throw new WorkflowInputError(`${file} declares invalid workflow_dispatch inputs`, [
      'inputs is not a mapping',
    ]);
  }
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(declared)) {
    const def = isMap(raw) ? raw : {};
    const type = (def.type ?? 'string') as InputType;
    if (!TYPES.includes(type)) {
      problems.push(`input "${name}" has unknown type "${String(def.type)}"`);
      continue;
    }
    const input: InputSpec = { type, required: def.required === true || def.required === 'true' };
    const dflt = scalarText(def.default);
    if (dflt !== undefined) input.default = dflt;
    if (typeof def.description === 'string') input.description = def.description;
    if (type === 'choice') {
      if (!Array.isArray(def.options) || def.options.length === 0) {
        problems.push(`choice input "${name}" has no options`);
        continue;
      }
      input.options = def.options.map((o) => scalarText(o) ?? JSON.stringify(o));
    }
    spec.inputs.set(name, input);
  }
  if (problems.length)
    throw new WorkflowInputError(`${file} declares invalid workflow_dispatch inputs`, problems);
  return spec;
}

/**
 * The user's inputs: a YAML or JSON mapping of names to scalars. Every value is kept as the text
 * that was written (`1.10` stays "1.10", `true` is "true"), since GitHub takes inputs as strings.
 */
export function parseInputsText(text: string, what = 'input "inputs"'): Record<string, string> {
  if (text.trim() === '') return {};
  let doc: unknown;
  try {
    // The failsafe schema keeps every scalar a string: nothing is reinterpreted on the way.
    doc = parse(text, { schema: 'failsafe' });
  } catch (err) {
    const reason = err instanceof YAMLParseError ? err.message.split('\n')[0] : String(err);
    throw new WorkflowInputError(`${what} is not valid YAML or JSON`, [reason ?? 'parse error']);
  }
  if (doc === null || doc === undefined) return {};
  if (!isMap(doc)) {
    throw new WorkflowInputError(`${what} must be a mapping of input names to values`, [
      `got ${Array.isArray(doc) ? 'a list' : `"${typeof doc === 'string' ? doc : JSON.stringify(doc)}"`}`,
    ]);
  }
  const problems: string[] = [];
  const inputs: Record<string, string> = {};
  for (const [name, value] of Object.entries(doc)) {
    if (typeof value !== 'string') {
      problems.push(
        `the value of "${name}" must be a string, number or boolean, not a ${Array.isArray(value) ? 'list' : 'mapping'}`,
      );
    } else {
      inputs[name] = value;
    }
  }
  if (problems.length) throw new WorkflowInputError(`${what} is invalid`, problems);
  return inputs;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The size GitHub counts for a dispatch's inputs: their JSON text. */
export function inputsPayloadLength(inputs: Record<string, string>): number {
  return JSON.stringify(inputs).length;
}

/**
 * Every reason GitHub would refuse `inputs` for a workflow declaring `spec` (empty when none),
 * each naming the input. `spec` undefined means the workflow has no workflow_dispatch trigger.
 */
export function inputProblems(
  spec: WorkflowDispatchSpec | undefined,
  inputs: Record<string, string>,
): string[] {
  if (!spec) return ['the workflow has no workflow_dispatch trigger (add `on: workflow_dispatch` to it)'];
  const problems: string[] = [];
  const declared = [...spec.inputs.keys()];
  for (const [name, value] of Object.entries(inputs)) {
    const input = spec.inputs.get(name);
    if (!input) {
      const other = declared.find((d) => d.toLowerCase() === name.toLowerCase());
      problems.push(
        `unknown input "${name}"${
          other
            ? ` (did you mean "${other}"?)`
            : declared.length
              ? ` (the workflow declares ${declared.map((d) => `"${d}"`).join(', ')})`
              : ' (the workflow declares no inputs)'
        }`,
      );
      continue;
    }
    if (input.type === 'choice' && !input.options!.includes(value)) {
      problems.push(
        `input "${name}" must be one of ${input.options!.map((o) => `"${o}"`).join(', ')}, got "${value}"`,
      );
    } else if (input.type === 'boolean' && value !== 'true' && value !== 'false') {
      problems.push(`input "${name}" is a boolean: it must be true or false, got "${value}"`);
    } else if (input.type === 'number' && !NUMBER.test(value.trim())) {
      problems.push(`input "${name}" is a number, got "${value}"`);
    }
  }
  for (const [name, input] of spec.inputs) {
    if (input.required && input.default === undefined && !(name in inputs)) {
      problems.push(`input "${name}" is required and the workflow gives it no default`);
    }
  }
  const count = Object.keys(inputs).length;
  if (count > MAX_INPUTS) problems.push(`${count} inputs given: GitHub accepts at most ${MAX_INPUTS}`);
  const size = inputsPayloadLength(inputs);
  if (size > MAX_INPUTS_PAYLOAD) {
    problems.push(
      `the inputs are ${size.toLocaleString('en-US')} characters as JSON: GitHub accepts at most ${MAX_INPUTS_PAYLOAD.toLocaleString('en-US')}`,
    );
  }
  return problems;
}

/** Names an input may have to carry a unique id for finding the run (Codex-/return-dispatch's convention and kin). */
const DISTINCT_ID_NAME = /^(?:distinct|dispatch|correlation)[_-]?id$/i;

/**
 * The input through which a unique value can be passed and found again in the run's title: a
 * string input named like `distinct_id` that the workflow's run-name uses
 * (`run-name: Deploy ${{ inputs.distinct_id }}`). Undefined when there is none.
 */
export function distinctIdInput(spec: WorkflowDispatchSpec): string | undefined {
  if (!spec.runName) return undefined;
  for (const [name, input] of spec.inputs) {
    if (!DISTINCT_ID_NAME.test(name) || (input.type !== 'string' && input.type !== 'environment')) continue;
    if (runNameUses(spec.runName, name)) return name;
  }
  return undefined;
}

/** Whether a run-name expression text references `inputs.<name>` (or github.event.inputs, or inputs['name']). */
export function runNameUses(runName: string, name: string): boolean {
  const escaped = name.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  const reference = new RegExp(
    `(?:^|[^\\w.])(?:github\\.event\\.)?inputs(?:\\.${escaped}(?![\\w-])|\\[\\s*['"]${escaped}['"]\\s*\\])`,
    'i',
  );
  for (const m of runName.matchAll(/\$\{\{([\s\S]*?)\}\}/g)) if (reference.test(m[1]!)) return true;
  return false;
}
