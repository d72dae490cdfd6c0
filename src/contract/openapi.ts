import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { isCanonicalBase64 } from '../lib/base64.js';

/**
 * Compiles the request and response schemas of one OpenAPI 3.1 contract document
 * at start-up, so a broken contract stops the process rather than the first request.
 */

interface OperationSchemas {
  readonly path: string;
  readonly method: string;
  readonly request: ValidateFunction | undefined;
  readonly responses: ReadonlyMap<string, ValidateFunction>;
}

export interface SchemaViolation {
  /** Dotted field path, e.g. "requestMetadata.kmsKeyArn"; "(body)" for the root. */
  readonly field: string;
  /** What was expected, in words; never contains the offending value. */
  readonly expected: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Points component refs at the $defs of one registered schema, since Ajv cannot see the OpenAPI document root. */
function rewriteRefs(node: Json, id: string): Json {
  if (Array.isArray(node)) return node.map((child) => rewriteRefs(child, id));
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$ref' && typeof value === 'string' && value.startsWith('#/components/schemas/')) {
      out[key] = `${id}#/$defs/${value.slice('#/components/schemas/'.length)}`;
    } else {
      out[key] = rewriteRefs(value, id);
    }
  }
  return out;
}

export class OpenApiContract {
  readonly title: string;
  readonly version: string;
  private readonly operations: ReadonlyMap<string, OperationSchemas>;
  private readonly components: ReadonlyMap<string, ValidateFunction>;

  private constructor(
    title: string,
    version: string,
    operations: ReadonlyMap<string, OperationSchemas>,
    components: ReadonlyMap<string, ValidateFunction>,
  ) {
    this.title = title;
    this.version = version;
    this.operations = operations;
    this.components = components;
  }

  static load(file: string): OpenApiContract {
    const document: unknown = parse(readFileSync(file, 'utf8'));
    if (!isObject(document) || typeof document['openapi'] !== 'string' || !document['openapi'].startsWith('3.1')) {
      throw new Error(`${file}: not an OpenAPI 3.1 document`);
    }
    const info = isObject(document['info']) ? document['info'] : {};
    const components = isObject(document['components']) ? document['components'] : {};
    const schemas = isObject(components['schemas']) ? components['schemas'] : {};
    const sharedResponses = isObject(components['responses']) ? components['responses'] : {};
    const paths = isObject(document['paths']) ? document['paths'] : {};

    const id = `https://hyok-proxy.invalid/contracts/${basename(file).replace(/[^A-Za-z0-9._-]/g, '_')}`;
    const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: false, coerceTypes: false, useDefaults: false, validateFormats: true });
    ajv.addFormat('byte', { type: 'string', validate: isCanonicalBase64 });
    ajv.addSchema({ $id: id, $defs: rewriteRefs(schemas, id) });

    const compileBody = (content: Json | undefined, where: string): ValidateFunction | undefined => {
      if (!isObject(content)) return undefined;
      const media = content['application/json'];
      if (!isObject(media) || media['schema'] === undefined) return undefined;
      try {
        return ajv.compile(rewriteRefs(media['schema'], id) as object);
      } catch (error) {
        throw new Error(`${file}: ${where}: schema does not compile: ${(error as Error).message}`);
      }
    };

    const operations = new Map<string, OperationSchemas>();
    for (const [path, item] of Object.entries(paths)) {
      if (!isObject(item)) continue;
      for (const method of HTTP_METHODS) {
        const operation = item[method];
        if (!isObject(operation)) continue;
        const operationId = operation['operationId'];
        if (typeof operationId !== 'string') throw new Error(`${file}: ${method.toUpperCase()} ${path} has no operationId`);
        const requestBody = isObject(operation['requestBody']) ? operation['requestBody'] : {};
        const request = compileBody(requestBody['content'], `${operationId} request`);
        const responses = new Map<string, ValidateFunction>();
        const declared = isObject(operation['responses']) ? operation['responses'] : {};
        for (const [status, rawResponse] of Object.entries(declared)) {
          let response = rawResponse;
          if (isObject(response) && typeof response['$ref'] === 'string') {
            const name = response['$ref'].replace('#/components/responses/', '');
            response = sharedResponses[name] ?? null;
          }
          if (!isObject(response)) throw new Error(`${file}: ${operationId} response ${status} cannot be resolved`);
          const validator = compileBody(response['content'], `${operationId} response ${status}`);
          if (validator !== undefined) responses.set(status, validator);
        }
        operations.set(operationId, { path, method, request, responses });
      }
    }
    const componentValidators = new Map<string, ValidateFunction>();
    for (const name of Object.keys(schemas)) componentValidators.set(name, ajv.compile({ $ref: `${id}#/$defs/${name}` }));
    return new OpenApiContract(String(info['title'] ?? ''), String(info['version'] ?? ''), operations, componentValidators);
  }

  operationIds(): string[] {
    return [...this.operations.keys()];
  }

  /** Validates a request body; returns the first violation, or undefined when valid. */
  validateRequest(operationId: string, body: unknown): SchemaViolation | undefined {
    const validate = this.operation(operationId).request;
    if (validate === undefined) throw new Error(`operation ${operationId} declares no request body`);
    return validate(body) ? undefined : describeViolation(validate.errors);
  }

  /** For tests and diagnostics: validates a response against the declared status, falling back to `default`. */
  validateResponse(operationId: string, status: number, body: unknown): SchemaViolation | undefined {
    const operation = this.operation(operationId);
    const validate = operation.responses.get(String(status)) ?? operation.responses.get('default');
    if (validate === undefined) return { field: '(status)', expected: `a declared response status, not ${status}` };
    return validate(body) ? undefined : describeViolation(validate.errors);
  }

  /** Validates a value against a named component schema (e.g. ErrorResponse). */
  validateComponent(name: string, value: unknown): SchemaViolation | undefined {
    const validate = this.components.get(name);
    if (validate === undefined) throw new Error(`unknown schema ${name}`);
    return validate(value) ? undefined : describeViolation(validate.errors);
  }

  private operation(operationId: string): OperationSchemas {
    const operation = this.operations.get(operationId);
    if (operation === undefined) throw new Error(`unknown operation ${operationId}`);
    return operation;
  }
}

function describeViolation(errors: readonly ErrorObject[] | null | undefined): SchemaViolation {
  const error = errors?.[0];
  if (error === undefined) return { field: '(body)', expected: 'a valid request' };
  const segments = error.instancePath.split('/').filter((segment) => segment !== '');
  if (error.keyword === 'required') segments.push(String((error.params as { missingProperty: string }).missingProperty));
  const field = segments.length === 0 ? '(body)' : segments.join('.');
  const expected = error.keyword === 'required' ? 'is required' : error.keyword === 'format' ? 'must be standard Base64' : (error.message ?? 'is invalid');
  return { field, expected };
}
