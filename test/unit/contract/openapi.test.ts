import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { OpenApiContract, type SchemaViolation } from '../../../src/contract/openapi.js';
import { fromRoot } from '../../../src/lib/paths.js';

const CONTRACT_FILE = fromRoot('contracts', 'aws-xks-v1.openapi.yaml');
const TYPES_FILE = fromRoot('src', 'contract', 'aws-xks', 'openapi-types.ts');

type Body = Record<string, unknown>;

/** The spec's Encrypt request example. */
function encryptExample(): Body {
  return {
    requestMetadata: {
      awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice',
      kmsKeyArn: 'arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab',
      kmsOperation: 'Encrypt',
      kmsRequestId: '4112f4d6-db54-4af4-ae30-c55a22a8dfae',
      kmsViaService: 'ebs',
    },
    additionalAuthenticatedData: 'cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n',
    plaintext: 'SGVsbG8gV29ybGQh',
    encryptionAlgorithm: 'AES_GCM',
    ciphertextDataIntegrityValueAlgorithm: 'SHA_256',
  };
}

function decryptExample(): Body {
  return {
    requestMetadata: {
      awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice',
      kmsKeyArn: 'arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab',
      kmsOperation: 'Decrypt',
      kmsRequestId: '5112f4d6-db54-4af4-ae30-c55a22a8dfae',
    },
    additionalAuthenticatedData: 'cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n',
    ciphertext: 'ghxkK1txeDNn3q8Y',
    ciphertextMetadata: 'a2V5X3ZlcnNpb249MQ==',
    encryptionAlgorithm: 'AES_GCM',
    initializationVector: 'HMrlRw85cAJUd5Ax',
    authenticationTag: 'vBxN2ncH1oEkR8WVXpmyYQ==',
  };
}

function encryptResponse(): Body {
  return {
    ciphertext: 'ghxkK1txeDNn3q8Y',
    ciphertextMetadata: 'AQAB',
    initializationVector: 'HMrlRw85cAJUd5Ax',
    authenticationTag: 'vBxN2ncH1oEkR8WVXpmyYQ==',
    ciphertextDataIntegrityValue: 'qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=',
  };
}

function metadataOf(body: Body): Body {
  return body['requestMetadata'] as Body;
}

let contract: OpenApiContract;
let dir = '';

before(() => {
  contract = OpenApiContract.load(CONTRACT_FILE);
  dir = mkdtempSync(join(tmpdir(), 'hyok-openapi-test-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Asserts the body is rejected with a violation naming `field`, and that the violation never repeats `secret`. */
function assertRejected(violation: SchemaViolation | undefined, field: string, secret?: string): SchemaViolation {
  assert.ok(violation !== undefined, `expected a violation on ${field}`);
  assert.equal(violation.field, field);
  assert.equal(typeof violation.expected, 'string');
  assert.ok(violation.expected.length > 0);
  if (secret !== undefined) assert.ok(!JSON.stringify(violation).includes(secret), `the violation repeats the value: ${JSON.stringify(violation)}`);
  return violation;
}

describe('the contract document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(CONTRACT_FILE);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.equal(validator.version, '3.1');
  });

  it('has generated TypeScript types that are up to date (openapi-typescript output matches the checked-in file)', () => {
    const generated = join(dir, 'openapi-types.ts');
    execFileSync('npx', ['--no', 'openapi-typescript', CONTRACT_FILE, '-o', generated], { cwd: fromRoot(), stdio: 'pipe', timeout: 120_000 });
    const expected = readFileSync(generated, 'utf8');
    const actual = readFileSync(TYPES_FILE, 'utf8');
    assert.ok(expected.length > 0);
    assert.equal(actual, expected, 'src/contract/aws-xks/openapi-types.ts is stale: regenerate it with openapi-typescript');
  });
});

describe('OpenApiContract.load', () => {
  it('compiles the contract and exposes its title, version and operations', () => {
    assert.equal(contract.title, 'AWS KMS External Key Store (XKS) Proxy API');
    assert.equal(contract.version, '1.0.3');
    const ids = contract.operationIds();
    for (const id of ['GetKeyMetadata', 'Encrypt', 'Decrypt', 'GetHealthStatus', 'EncryptMethodNotAllowed', 'Ping', 'Ready']) assert.ok(ids.includes(id), id);
  });

  it('refuses a document that is not OpenAPI 3.1', () => {
    const file = join(dir, 'swagger.yaml');
    writeFileSync(file, 'openapi: 3.0.3\ninfo: { title: t, version: "1" }\npaths: {}\n');
    assert.throws(() => OpenApiContract.load(file), /not an OpenAPI 3.1 document/);
  });

  it('refuses an operation without an operationId', () => {
    const file = join(dir, 'no-op-id.yaml');
    writeFileSync(file, 'openapi: 3.1.0\ninfo: { title: t, version: "1" }\npaths:\n  /x:\n    get:\n      responses: {}\n');
    assert.throws(() => OpenApiContract.load(file), /GET \/x has no operationId/);
  });

  it('refuses a schema that does not compile, naming the operation', () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(
      file,
      [
        'openapi: 3.1.0',
        'info: { title: t, version: "1" }',
        'paths:',
        '  /x:',
        '    post:',
        '      operationId: X',
        '      requestBody:',
        '        content:',
        '          application/json:',
        '            schema: { type: object, minProperties: "two" }',
        '      responses: {}',
        '',
      ].join('\n'),
    );
    assert.throws(() => OpenApiContract.load(file), /X request: schema does not compile/);
  });
});

describe('OpenApiContract.validateRequest: accepted requests', () => {
  it("accepts the spec's Encrypt example", () => {
    assert.equal(contract.validateRequest('Encrypt', encryptExample()), undefined);
  });

  it('accepts a Decrypt request', () => {
    assert.equal(contract.validateRequest('Decrypt', decryptExample()), undefined);
  });

  it('accepts GetKeyMetadata and GetHealthStatus requests with their required metadata only', () => {
    assert.equal(
      contract.validateRequest('GetKeyMetadata', { requestMetadata: { awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice', kmsOperation: 'CreateKey', kmsRequestId: 'r' } }),
      undefined,
    );
    assert.equal(contract.validateRequest('GetHealthStatus', { requestMetadata: { kmsOperation: 'KmsHealthCheck', kmsRequestId: 'r' } }), undefined);
  });

  it('accepts unknown top-level fields', () => {
    assert.equal(contract.validateRequest('Encrypt', { ...encryptExample(), futureField: { nested: [1, 2] } }), undefined);
  });

  it('accepts unknown fields inside requestMetadata', () => {
    const body = encryptExample();
    metadataOf(body)['kmsNewAttribute'] = 'x';
    metadataOf(body)['awsSourceVpce'] = 'vpce-0123';
    assert.equal(contract.validateRequest('Encrypt', body), undefined);
  });

  it('accepts unknown kmsOperation values and unstructured request ids', () => {
    const body = encryptExample();
    metadataOf(body)['kmsOperation'] = 'SomeFutureOperation';
    metadataOf(body)['kmsRequestId'] = 'not a uuid at all';
    assert.equal(contract.validateRequest('Encrypt', body), undefined);
  });

  it('accepts an empty plaintext and padded Base64', () => {
    assert.equal(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: '' }), undefined);
    assert.equal(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: 'QQ==' }), undefined);
    assert.equal(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: 'QUI=' }), undefined);
  });

  it('accepts an ARN of exactly 2048 characters', () => {
    const body = encryptExample();
    const prefix = 'arn:aws:iam::123456789012:user/';
    metadataOf(body)['awsPrincipalArn'] = prefix + 'a'.repeat(2048 - prefix.length);
    assert.equal(contract.validateRequest('Encrypt', body), undefined);
  });
});

describe('OpenApiContract.validateRequest: rejected requests', () => {
  it('rejects a missing requestMetadata', () => {
    const body = encryptExample();
    delete body['requestMetadata'];
    const violation = assertRejected(contract.validateRequest('Encrypt', body), 'requestMetadata');
    assert.equal(violation.expected, 'is required');
  });

  it('rejects an empty requestMetadata, naming a missing field', () => {
    const violation = assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), requestMetadata: {} }), 'requestMetadata.awsPrincipalArn');
    assert.equal(violation.expected, 'is required');
  });

  it('rejects a missing kmsKeyArn on Encrypt', () => {
    const body = encryptExample();
    delete metadataOf(body)['kmsKeyArn'];
    assertRejected(contract.validateRequest('Encrypt', body), 'requestMetadata.kmsKeyArn');
  });

  it('rejects a missing plaintext', () => {
    const body = encryptExample();
    delete body['plaintext'];
    assertRejected(contract.validateRequest('Encrypt', body), 'plaintext');
  });

  it('rejects a body that is not an object', () => {
    for (const body of [null, [], 'text', 42]) assertRejected(contract.validateRequest('Encrypt', body), '(body)');
  });

  it("rejects non-Base64 plaintext ('@@@@') without repeating it", () => {
    const violation = assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: '@@@@' }), 'plaintext', '@@@@');
    assert.equal(violation.expected, 'must be standard Base64');
  });

  it("rejects Base64 with bad padding ('QQ=')", () => {
    const violation = assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: 'QQ=' }), 'plaintext', 'QQ=');
    assert.equal(violation.expected, 'must be standard Base64');
  });

  it('rejects Base64url and whitespace in Base64 fields', () => {
    assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), additionalAuthenticatedData: 'ab-_' }), 'additionalAuthenticatedData', 'ab-_');
    assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: 'SGVs bG8=' }), 'plaintext', 'SGVs bG8=');
  });

  it('rejects a number where a string is expected, without repeating it', () => {
    assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), plaintext: 918273645 }), 'plaintext', '918273645');
    const body = encryptExample();
    metadataOf(body)['kmsRequestId'] = 564738291;
    assertRejected(contract.validateRequest('Encrypt', body), 'requestMetadata.kmsRequestId', '564738291');
  });

  it('rejects an ARN longer than 2048 characters, without repeating it', () => {
    const body = encryptExample();
    const arn = `arn:aws:kms:us-east-2:123456789012:key/${'k'.repeat(2048)}`;
    metadataOf(body)['kmsKeyArn'] = arn;
    const violation = assertRejected(contract.validateRequest('Encrypt', body), 'requestMetadata.kmsKeyArn', 'kkkkkkkkkkkk');
    assert.match(violation.expected, /2048/);
  });

  it('rejects an empty ARN', () => {
    const body = encryptExample();
    metadataOf(body)['awsPrincipalArn'] = '';
    assertRejected(contract.validateRequest('Encrypt', body), 'requestMetadata.awsPrincipalArn');
  });

  it('rejects ciphertextMetadata longer than 28 characters', () => {
    const value = Buffer.alloc(21, 7).toString('base64');
    assert.equal(value.length, 28, 'a 21-byte value fits in 28 characters; use a longer one');
    const longer = Buffer.alloc(24, 7).toString('base64');
    assert.equal(longer.length, 32);
    const violation = assertRejected(contract.validateRequest('Decrypt', { ...decryptExample(), ciphertextMetadata: longer }), 'ciphertextMetadata', longer);
    assert.match(violation.expected, /28/);
  });

  it('rejects an authenticationTag that is not 24 characters', () => {
    for (const tag of ['AAAAAAAAAAAAAAAAAAAA', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
      assertRejected(contract.validateRequest('Decrypt', { ...decryptExample(), authenticationTag: tag }), 'authenticationTag', tag);
    }
  });

  it('rejects an unknown ciphertextDataIntegrityValueAlgorithm', () => {
    assertRejected(contract.validateRequest('Encrypt', { ...encryptExample(), ciphertextDataIntegrityValueAlgorithm: 'SHA_1' }), 'ciphertextDataIntegrityValueAlgorithm');
  });

  it('throws for an unknown operation and for an operation without a request body', () => {
    assert.throws(() => contract.validateRequest('Nope', {}), /unknown operation Nope/);
    assert.throws(() => contract.validateRequest('Ping', {}), /declares no request body/);
  });
});

describe('OpenApiContract.validateResponse', () => {
  it('accepts a correct EncryptResponse', () => {
    assert.equal(contract.validateResponse('Encrypt', 200, encryptResponse()), undefined);
    const withoutCdiv = encryptResponse();
    delete withoutCdiv['ciphertextDataIntegrityValue'];
    assert.equal(contract.validateResponse('Encrypt', 200, withoutCdiv), undefined);
  });

  it('rejects an EncryptResponse with an extra property', () => {
    const violation = contract.validateResponse('Encrypt', 200, { ...encryptResponse(), plaintext: 'SGVsbG8gV29ybGQh' });
    assert.ok(violation !== undefined);
    assert.match(violation.expected, /additional properties/);
    assert.ok(!JSON.stringify(violation).includes('SGVsbG8gV29ybGQh'));
  });

  it('rejects an EncryptResponse with a 16-byte IV (XKS returns 12-byte IVs) or a missing tag', () => {
    assertRejected(contract.validateResponse('Encrypt', 200, { ...encryptResponse(), initializationVector: 'AAAAAAAAAAAAAAAAAAAAAA==' }), 'initializationVector');
    const noTag = encryptResponse();
    delete noTag['authenticationTag'];
    assertRejected(contract.validateResponse('Encrypt', 200, noTag), 'authenticationTag');
  });

  it('validates error statuses against the default ErrorResponse', () => {
    assert.equal(contract.validateResponse('Encrypt', 400, { errorName: 'ValidationException', errorMessage: 'bad' }), undefined);
    assertRejected(contract.validateResponse('Encrypt', 500, { errorName: 'NotAnException' }), 'errorName');
  });

  it('reports an undeclared status for an operation without a default response', () => {
    assert.deepEqual(contract.validateResponse('Ping', 500, {}), { field: '(status)', expected: 'a declared response status, not 500' });
    assert.equal(contract.validateResponse('Ping', 200, { status: 'ok' }), undefined);
  });
});

describe('OpenApiContract.validateComponent', () => {
  it('accepts a valid ErrorResponse', () => {
    assert.equal(contract.validateComponent('ErrorResponse', { errorName: 'ValidationException', errorMessage: 'The request was rejected.' }), undefined);
    assert.equal(contract.validateComponent('ErrorResponse', { errorName: 'InternalException' }), undefined);
  });

  it('rejects an unknown errorName, a missing errorName and a non-printable or too long errorMessage', () => {
    assertRejected(contract.validateComponent('ErrorResponse', { errorName: 'Boom' }), 'errorName');
    assertRejected(contract.validateComponent('ErrorResponse', { errorMessage: 'x' }), 'errorName');
    assertRejected(contract.validateComponent('ErrorResponse', { errorName: 'InternalException', errorMessage: 'line\nbreak' }), 'errorMessage');
    assertRejected(contract.validateComponent('ErrorResponse', { errorName: 'InternalException', errorMessage: 'x'.repeat(512) }), 'errorMessage');
    assert.equal(contract.validateComponent('ErrorResponse', { errorName: 'InternalException', errorMessage: 'x'.repeat(511) }), undefined);
  });

  it('validates other components that use $ref (GetHealthStatusResponse)', () => {
    const health = {
      xksProxyFleetSize: 2,
      xksProxyVendor: 'hyok-proxy',
      xksProxyModel: 'hyok-proxy 0.1.0',
      ekmVendor: 'SoftHSM',
      ekmFleetDetails: [{ id: 'hsm-a', model: 'SoftHSMv2', healthStatus: 'ACTIVE' }],
    };
    assert.equal(contract.validateComponent('GetHealthStatusResponse', health), undefined);
    assertRejected(
      contract.validateComponent('GetHealthStatusResponse', { ...health, ekmFleetDetails: [{ id: 'hsm-a', model: 'SoftHSMv2', healthStatus: 'SICK' }] }),
      'ekmFleetDetails.0.healthStatus',
    );
  });

  it('throws for an unknown component', () => {
    assert.throws(() => contract.validateComponent('NoSuchSchema', {}), /unknown schema NoSuchSchema/);
  });
});
