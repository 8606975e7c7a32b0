// GitHub's published OpenAPI description (npm @octokit/openapi, generated from github/rest-api-
// description) as a contract: it finds the operation a request addresses and validates request
// and response bodies against the operation's schemas, so the local GitHub stand-in cannot drift
// from the real API, and neither can our client's requests.
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

interface Operation {
  operationId: string;
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}

type Response = Operation['responses'][string];
type Spec = {
  paths: Record<string, Record<string, Operation>>;
  components: { responses: Record<string, Response> };
};

/**
 * Statuses any GitHub endpoint can return, though few operations list them: bad credentials, and
 * the primary (403 with x-ratelimit-remaining: 0) and secondary (403 or 429 with Retry-After)
 * rate limits.
 */
const UNIVERSAL_ERRORS = [401, 403, 429];

const BASIC_ERROR = {
  content: { 'application/json': { schema: { $ref: '#/components/schemas/basic-error' } } },
};

/**
 * Local corrections to the published description, applied where it lacks them.
 * - The dispatch endpoint's 200 with the run's id (`return_run_details: true`, GitHub changelog
 *   2026-02-19): descriptions before @octokit/openapi 23 document only the 204, and Octokit's
 *   types still do. Kept here so the contract does not depend on which description is installed.
 * - The 404s and 422s GitHub answers on the Actions endpoints that the description leaves out
 *   (unknown workflow or run; a dispatch's inputs or ref refused; a server that does not know
 *   return_run_details, as GitHub Enterprise Server before 3.21).
 */
const RESPONSE_OVERRIDES: Record<string, Record<string, Response>> = {
  'actions/create-workflow-dispatch': {
    '200': {
      content: {
        'application/json': {
          schema: {
            type: 'object',
            required: ['workflow_run_id', 'run_url', 'html_url'],
            properties: {
              workflow_run_id: { type: 'integer', format: 'int64' },
              run_url: { type: 'string', format: 'uri' },
              html_url: { type: 'string', format: 'uri' },
            },
          },
        },
      },
    },
    '404': BASIC_ERROR,
    '422': BASIC_ERROR,
  },
  'actions/get-workflow': { '404': BASIC_ERROR },
  'actions/get-workflow-run': { '404': BASIC_ERROR },
  'actions/list-workflow-runs': { '404': BASIC_ERROR },
  'actions/list-jobs-for-workflow-run': { '404': BASIC_ERROR },
};

/** The dispatch body's return_run_details, for descriptions that predate it. */
const REQUEST_PROPERTY_OVERRIDES: Record<string, Record<string, unknown>> = {
  'actions/create-workflow-dispatch': { return_run_details: { type: 'boolean' } },
};

function applyOverrides(spec: Spec): void {
  for (const item of Object.values(spec.paths)) {
    for (const op of Object.values(item)) {
      if (!op?.responses) continue;
      for (const [status, response] of Object.entries(RESPONSE_OVERRIDES[op.operationId] ?? {})) {
        op.responses[status] ??= response;
      }
      const schema = op.requestBody?.content?.['application/json']?.schema as
        { properties?: Record<string, unknown> } | undefined;
      for (const [name, property] of Object.entries(REQUEST_PROPERTY_OVERRIDES[op.operationId] ?? {})) {
        if (schema) schema.properties = { [name]: property, ...schema.properties };
      }
    }
  }
}

export interface MatchedOperation {
  operationId: string;
  /** The path template, e.g. /repos/{owner}/{repo}/git/refs/{ref}. */
  template: string;
  params: Record<string, string>;
}

// ajv-formats is CommonJS; under ESM its default export arrives wrapped.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

let loaded: { spec: Spec; ajv: Ajv } | undefined;

function load(): { spec: Spec; ajv: Ajv } {
  if (loaded) return loaded;
  const file = createRequire(import.meta.url).resolve('@octokit/openapi/generated/api.github.com.json');
  const spec = JSON.parse(readFileSync(file, 'utf8')) as Spec;
  applyOverrides(spec);
  // OpenAPI 3.0 schemas: `nullable` is understood by ajv; vendor keywords (x-github) are ignored.
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  // GitHub's own format: "owner/name".
  ajv.addFormat('repo.nwo', /^[\w.-]+\/[\w.-]+$/);
  ajv.addSchema(rerooted({ components: spec.components }) as object, 'github');
  loaded = { spec, ajv };
  return loaded;
}

/**
 * The schema's `$ref`s point into #/components; re-root them under the registered document. And
 * `oneOf` is read as `anyOf`: GitHub's description uses it loosely (a validation error body also
 * matches the schema-less "rule violation" alternative; null matches every nullable branch), so
 * strict exclusivity would reject GitHub's own answers.
 */
function rerooted(schema: unknown): unknown {
  return JSON.parse(
    JSON.stringify(schema)
      .replaceAll('"#/components/', '"github#/components/')
      .replaceAll('"oneOf":', '"anyOf":'),
    // A nullable enum (a job's conclusion while it runs) allows null, as GitHub answers; ajv
    // wants it listed among the values.
    (_key, value: unknown) => {
      const v = value as { nullable?: boolean; enum?: unknown[] } | null;
      if (v && v.nullable === true && Array.isArray(v.enum) && !v.enum.includes(null))
        v.enum = [...v.enum, null];
      return value;
    },
  );
}

const validators = new Map<string, ValidateFunction>();

function validatorFor(key: string, schema: unknown): ValidateFunction {
  let v = validators.get(key);
  if (!v) {
    v = load().ajv.compile(rerooted(schema) as object);
    validators.set(key, v);
  }
  return v;
}

/** The documented operation for `method` and a raw (still percent-encoded) URL path. */
export function matchOperation(method: string, rawPath: string): MatchedOperation | undefined {
  const { spec } = load();
  const segments = rawPath.replace(/\/+$/, '').split('/');
  let best: (MatchedOperation & { literals: number }) | undefined;
  for (const [template, item] of Object.entries(spec.paths)) {
    const op = item[method.toLowerCase()];
    if (!op) continue;
    const parts = template.split('/');
    const last = parts[parts.length - 1] ?? '';
    // A ref may hold slashes (heads/feature/x): the final {ref}/{path} parameter takes the rest.
    const greedy = last === '{ref}' || last === '{path}';
    if (segments.length !== parts.length && !(greedy && segments.length > parts.length)) continue;
    const params: Record<string, string> = {};
    let literals = 0;
    let ok = true;
    for (let i = 0; i < parts.length && ok; i++) {
      const part = parts[i]!;
      const param = /^\{(.+)\}$/.exec(part)?.[1];
      const value = greedy && i === parts.length - 1 ? segments.slice(i).join('/') : segments[i]!;
      if (param) {
        if (value === '') ok = false;
        else params[param] = decodeURIComponent(value);
      } else if (part === value) literals++;
      else ok = false;
    }
    if (ok && (!best || literals > best.literals))
      best = { operationId: op.operationId, template, params, literals };
  }
  if (!best) return undefined;
  const { literals: _literals, ...match } = best;
  return match;
}

function operation(match: MatchedOperation, method: string): Operation {
  return load().spec.paths[match.template]![method.toLowerCase()]!;
}

function describeErrors(v: ValidateFunction): string {
  return (v.errors ?? [])
    .slice(0, 8)
    .map(
      (e) =>
        `${e.instancePath || '(root)'} ${e.message ?? ''}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`,
    )
    .join('; ');
}

/** Errors of a JSON request body against the operation's schema; empty when it conforms. */
export function requestBodyErrors(match: MatchedOperation, method: string, body: unknown): string {
  const schema = operation(match, method).requestBody?.content?.['application/json']?.schema;
  if (!schema) return '';
  const v = validatorFor(`${match.operationId} request`, schema);
  return v(body) ? '' : describeErrors(v);
}

/** Errors of a response (status and JSON body) against the operation's documented responses. */
export function responseErrors(
  match: MatchedOperation,
  method: string,
  status: number,
  body: unknown,
): string {
  const documented = operation(match, method).responses;
  let response = documented[String(status)] ?? documented[`${String(status)[0]}XX`] ?? documented.default;
  // The description leaves out what every endpoint can answer, e.g. 401 Bad credentials.
  if (!response && UNIVERSAL_ERRORS.includes(status)) {
    response = { content: { 'application/json': { schema: { $ref: '#/components/schemas/basic-error' } } } };
  }
  if (!response)
    return `status ${status} is not documented for ${match.operationId} (documented: ${Object.keys(documented).join(', ')})`;
  const ref = (response as { $ref?: string }).$ref;
  if (ref) response = load().spec.components.responses[ref.replace('#/components/responses/', '')]!;
  const schema = response.content?.['application/json']?.schema;
  if (!schema)
    return body === undefined || body === '' ? '' : `status ${status} of ${match.operationId} has no body`;
  const v = validatorFor(`${match.operationId} ${status}`, schema);
  return v(body) ? '' : describeErrors(v);
}
