import { describe, expect, test } from '@jest/globals';
import {
  distinctIdInput,
  inputProblems,
  parseInputsText,
  parseWorkflowDispatch,
  runNameUses,
  WorkflowInputError,
  type WorkflowDispatchSpec,
} from '../../../src/core/github/workflow-inputs.ts';

const DEPLOY = `name: Deploy
run-name: Deploy \${{ inputs.environment }} (\${{ inputs.distinct_id }})
on:
  push:
    branches: [main]
  workflow_dispatch:
    inputs:
      environment:
        type: choice
        required: true
        options: [staging, production]
      version:
        description: the image tag
        required: true
      replicas:
        type: number
        default: 2
      dry-run:
        type: boolean
        default: false
      region:
        type: environment
      distinct_id:
        description: set by the dispatcher
jobs:
  deploy:
    runs-on: ubuntu-24.04
    steps: [{ run: echo }]
`;

function spec(text = DEPLOY): WorkflowDispatchSpec {
  const s = parseWorkflowDispatch(text, 'deploy.yml');
  if (!s) throw new Error('no workflow_dispatch');
  return s;
}

describe('parseWorkflowDispatch', () => {
  test('reads the declared inputs with their types, defaults and options', () => {
    const s = spec();
    expect(s.name).toBe('Deploy');
    expect(s.runName).toBe('Deploy ${{ inputs.environment }} (${{ inputs.distinct_id }})');
    expect(Object.fromEntries(s.inputs)).toEqual({
      environment: { type: 'choice', required: true, options: ['staging', 'production'] },
      version: { type: 'string', required: true, description: 'the image tag' },
      replicas: { type: 'number', required: false, default: '2' },
      'dry-run': { type: 'boolean', required: false, default: 'false' },
      region: { type: 'environment', required: false },
      distinct_id: { type: 'string', required: false, description: 'set by the dispatcher' },
    });
  });

  test.each([
    ['on: workflow_dispatch\njobs: {}\n'],
    ['on: [push, workflow_dispatch]\njobs: {}\n'],
    ['on:\n  workflow_dispatch:\njobs: {}\n'],
    ['on:\n  workflow_dispatch: {}\njobs: {}\n'],
    // YAML 1.1 reads `on` as the boolean true.
    ['%YAML 1.1\n---\non:\n  workflow_dispatch:\njobs: {}\n'],
  ])('a trigger without inputs: %j', (text) => {
    expect(parseWorkflowDispatch(text)).toEqual({ inputs: new Map() });
  });

  test.each([
    ['on: push\n'],
    ['on: [push, pull_request]\n'],
    ['on:\n  schedule: [{cron: "0 0 * * *"}]\n'],
    ['jobs: {}\n'],
  ])('no workflow_dispatch trigger: %j', (text) => {
    expect(parseWorkflowDispatch(text)).toBeUndefined();
  });

  test('a file that is not YAML, or malformed inputs, are named', () => {
    expect(() => parseWorkflowDispatch('on: [push\n', 'ci.yml')).toThrow(/^ci.yml is not valid YAML: /);
    const err = (() => {
      try {
        parseWorkflowDispatch(
          'on:\n  workflow_dispatch:\n    inputs:\n      a: {type: text}\n      b: {type: choice}\n',
          'ci.yml',
        );
      } catch (e) {
        return e as WorkflowInputError;
      }
    })();
    expect(err).toBeInstanceOf(WorkflowInputError);
    expect(err!.problems).toEqual(['input "a" has unknown type "text"', 'choice input "b" has no options']);
  });
});

describe('parseInputsText', () => {
  test('YAML keeps every value as written', () => {
    expect(
      parseInputsText('version: 1.10\ndry-run: true\nreplicas: 3\nempty:\nnote: |\n  two\n  lines\n'),
    ).toEqual({
      version: '1.10',
      'dry-run': 'true',
      replicas: '3',
      empty: '',
      note: 'two\nlines\n',
    });
  });

  test('JSON is read too', () => {
    expect(parseInputsText('{"version": 1.10, "environment": "staging", "flag": false}')).toEqual({
      version: '1.10',
      environment: 'staging',
      flag: 'false',
    });
  });

  test('empty text is no inputs', () => {
    expect(parseInputsText('')).toEqual({});
    expect(parseInputsText('  \n')).toEqual({});
  });

  test.each([
    ['a: 1\na: 2\n', /^input "inputs" is not valid YAML or JSON: Map keys must be unique/],
    ['- a\n- b\n', 'input "inputs" must be a mapping of input names to values: got a list'],
    ['just text', 'input "inputs" must be a mapping of input names to values: got "just text"'],
    [
      'list: [1, 2]\nmap: {a: 1}\n',
      'input "inputs" is invalid:\n  - the value of "list" must be a string, number or boolean, not a list\n  - the value of "map" must be a string, number or boolean, not a mapping',
    ],
  ])('refuses %j', (text, message) => {
    expect(() => parseInputsText(text)).toThrow(message);
  });
});

describe('inputProblems: every rule, each naming the input', () => {
  const ok = { environment: 'staging', version: '1.2.3' };

  test('valid inputs have no problems, and defaults satisfy required-ness', () => {
    expect(inputProblems(spec(), ok)).toEqual([]);
    expect(
      inputProblems(spec(), { ...ok, replicas: '-1.5e2', 'dry-run': 'true', region: 'eu', distinct_id: 'x' }),
    ).toEqual([]);
    const withDefault = spec(
      'on:\n  workflow_dispatch:\n    inputs:\n      a: {required: true, default: x}\n',
    );
    expect(inputProblems(withDefault, {})).toEqual([]);
  });

  test('a workflow without workflow_dispatch', () => {
    expect(inputProblems(undefined, {})).toEqual([
      'the workflow has no workflow_dispatch trigger (add `on: workflow_dispatch` to it)',
    ]);
  });

  test('unknown inputs, with the declared ones or a close match', () => {
    expect(inputProblems(spec(), { ...ok, Version: '1', colour: 'red' })).toEqual([
      'unknown input "Version" (did you mean "version"?)',
      'unknown input "colour" (the workflow declares "environment", "version", "replicas", "dry-run", "region", "distinct_id")',
    ]);
    expect(inputProblems(spec('on: workflow_dispatch\n'), { a: '1' })).toEqual([
      'unknown input "a" (the workflow declares no inputs)',
    ]);
  });

  test('missing required inputs', () => {
    expect(inputProblems(spec(), {})).toEqual([
      'input "environment" is required and the workflow gives it no default',
      'input "version" is required and the workflow gives it no default',
    ]);
  });

  test('a choice outside its options', () => {
    expect(inputProblems(spec(), { ...ok, environment: 'prod' })).toEqual([
      'input "environment" must be one of "staging", "production", got "prod"',
    ]);
  });

  test.each(['yes', 'True', '1', ''])('a non-boolean for a boolean: %j', (value) => {
    expect(inputProblems(spec(), { ...ok, 'dry-run': value })).toEqual([
      `input "dry-run" is a boolean: it must be true or false, got "${value}"`,
    ]);
  });

  test.each(['three', '1,5', '0x10', '', '1e'])('a non-number for a number: %j', (value) => {
    expect(inputProblems(spec(), { ...ok, replicas: value })).toEqual([
      `input "replicas" is a number, got "${value}"`,
    ]);
  });

  test('more than 25 inputs', () => {
    const names = Array.from({ length: 26 }, (_, i) => `i${i}`);
    const wide = spec(
      `on:\n  workflow_dispatch:\n    inputs:\n${names.map((n) => `      ${n}: {}\n`).join('')}`,
    );
    const all = Object.fromEntries(names.map((n) => [n, 'v']));
    expect(inputProblems(wide, all)).toEqual(['26 inputs given: GitHub accepts at most 25']);
    delete all.i25;
    expect(inputProblems(wide, all)).toEqual([]);
  });

  test('a payload over 65,535 characters (as JSON), and one just at the limit', () => {
    // {"version":"<v>","environment":"staging"} is 39 characters around the value.
    const frame = JSON.stringify({ environment: 'staging', version: '' }).length;
    expect(inputProblems(spec(), { ...ok, version: 'x'.repeat(65_535 - frame) })).toEqual([]);
    expect(inputProblems(spec(), { ...ok, version: 'x'.repeat(65_536 - frame) })).toEqual([
      'the inputs are 65,536 characters as JSON: GitHub accepts at most 65,535',
    ]);
    // Characters JSON escapes count as their escaped form.
    const quotes = Math.floor((65_535 - frame) / 2) + 1;
    expect(inputProblems(spec(), { ...ok, version: '"'.repeat(quotes) })).toEqual([
      `the inputs are ${(frame + 2 * quotes).toLocaleString('en-US')} characters as JSON: GitHub accepts at most 65,535`,
    ]);
  });

  test('all problems at once', () => {
    expect(inputProblems(spec(), { environment: 'prod', nope: '1', replicas: 'x' })).toEqual([
      'input "environment" must be one of "staging", "production", got "prod"',
      'unknown input "nope" (the workflow declares "environment", "version", "replicas", "dry-run", "region", "distinct_id")',
      'input "replicas" is a number, got "x"',
      'input "version" is required and the workflow gives it no default',
    ]);
  });
});

describe('distinct-id inputs', () => {
  test('an input named like distinct_id that the run-name shows', () => {
    expect(distinctIdInput(spec())).toBe('distinct_id');
  });

  test.each([
    ['run-name: "x ${{ github.event.inputs.dispatch-id }}"', 'dispatch-id'],
    ['run-name: "x ${{ inputs[\'correlation_id\'] }}"', 'correlation_id'],
    ['run-name: "${{ format(\'{0}\', inputs.distinctId) }}"', 'distinctId'],
  ])('%s', (runName, name) => {
    const s = spec(`${runName}\non:\n  workflow_dispatch:\n    inputs:\n      ${name}: {type: string}\n`);
    expect(distinctIdInput(s)).toBe(name);
  });

  test('not when the run-name does not show it, or the input is not a string', () => {
    const notShown = spec(
      'run-name: Deploy\non:\n  workflow_dispatch:\n    inputs:\n      distinct_id: {}\n',
    );
    expect(distinctIdInput(notShown)).toBeUndefined();
    const noRunName = spec('on:\n  workflow_dispatch:\n    inputs:\n      distinct_id: {}\n');
    expect(distinctIdInput(noRunName)).toBeUndefined();
    const boolean = spec(
      'run-name: ${{ inputs.distinct_id }}\non:\n  workflow_dispatch:\n    inputs:\n      distinct_id: {type: boolean}\n',
    );
    expect(distinctIdInput(boolean)).toBeUndefined();
  });

  test('runNameUses matches whole names inside expressions only', () => {
    expect(runNameUses('${{ inputs.distinct_id }}', 'distinct_id')).toBe(true);
    expect(runNameUses('${{ inputs.distinct_id_2 }}', 'distinct_id')).toBe(false);
    expect(runNameUses('${{ xinputs.distinct_id }}', 'distinct_id')).toBe(false);
    expect(runNameUses('inputs.distinct_id', 'distinct_id')).toBe(false);
    expect(runNameUses('${{ inputs.other }} ${{ inputs.DISTINCT_ID }}', 'distinct_id')).toBe(true);
  });
});
