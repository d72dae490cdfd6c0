import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { XKS_ERRORS, renderXksError } from '../../../src/contract/aws-xks/errors.js';
import { OpenApiContract } from '../../../src/contract/openapi.js';
import { PROXY_ERROR_CODES, ProxyError } from '../../../src/errors/proxy-error.js';
import { fromRoot } from '../../../src/lib/paths.js';
import { MAX_ERROR_MESSAGE_LENGTH, toPrintableAscii } from '../../../src/lib/printable-ascii.js';

const CONTRACT_FILE = fromRoot('contracts', 'aws-xks-v1.openapi.yaml');

/** The spec's error table (XKS Proxy API spec, "Error codes"). */
const SPEC_TABLE: Record<string, { status: number; errorName: string }> = {
  VALIDATION: { status: 400, errorName: 'ValidationException' },
  INVALID_STATE: { status: 400, errorName: 'InvalidStateException' },
  INVALID_CIPHERTEXT: { status: 400, errorName: 'InvalidCiphertextException' },
  INVALID_KEY_USAGE: { status: 400, errorName: 'InvalidKeyUsageException' },
  AUTHENTICATION_FAILED: { status: 401, errorName: 'AuthenticationFailedException' },
  ACCESS_DENIED: { status: 403, errorName: 'AccessDeniedException' },
  KEY_NOT_FOUND: { status: 404, errorName: 'KeyNotFoundException' },
  INVALID_URI_PATH: { status: 404, errorName: 'InvalidUriPathException' },
  METHOD_NOT_ALLOWED: { status: 405, errorName: 'ValidationException' },
  THROTTLED: { status: 429, errorName: 'ThrottlingException' },
  UNSUPPORTED_OPERATION: { status: 501, errorName: 'UnsupportedOperationException' },
  DEPENDENCY_TIMEOUT: { status: 503, errorName: 'DependencyTimeoutException' },
  INTERNAL: { status: 500, errorName: 'InternalException' },
};

function contractErrorNames(): string[] {
  const document = parse(readFileSync(CONTRACT_FILE, 'utf8')) as {
    components: { schemas: { ErrorResponse: { properties: { errorName: { enum: string[] } } } } };
  };
  const names = document.components.schemas.ErrorResponse.properties.errorName.enum;
  assert.ok(Array.isArray(names) && names.length > 0, 'ErrorResponse.errorName has an enum');
  return names;
}

const isPrintableAscii = (text: string): boolean => /^[\x20-\x7e]*$/.test(text);

let contract: OpenApiContract;

before(() => {
  contract = OpenApiContract.load(CONTRACT_FILE);
});

describe('XKS_ERRORS', () => {
  it('maps every proxy error code, and nothing else', () => {
    assert.deepEqual(Object.keys(XKS_ERRORS).sort(), [...PROXY_ERROR_CODES].sort());
  });

  for (const code of PROXY_ERROR_CODES) {
    it(`maps ${code} to the spec's status and error name`, () => {
      const expected = SPEC_TABLE[code];
      assert.ok(expected !== undefined, `${code} is missing from this test's copy of the spec table`);
      assert.deepEqual({ ...XKS_ERRORS[code] }, expected);
    });
  }

  it('uses exactly the error names of the contract ErrorResponse.errorName enum', () => {
    const used = new Set(Object.values(XKS_ERRORS).map((entry) => entry.errorName));
    assert.deepEqual([...used].sort(), [...new Set(contractErrorNames())].sort());
  });

  it('uses only the statuses of the spec table', () => {
    for (const { status } of Object.values(XKS_ERRORS)) assert.ok([400, 401, 403, 404, 405, 429, 500, 501, 503].includes(status), String(status));
  });
});

describe('renderXksError', () => {
  it('renders a ProxyError with its status, error name and public message', () => {
    const rendered = renderXksError(new ProxyError('KEY_NOT_FOUND', 'The external key is not found.'));
    assert.deepEqual(rendered, { status: 404, body: { errorName: 'KeyNotFoundException', errorMessage: 'The external key is not found.' } });
  });

  it('renders every code as a body that satisfies the contract ErrorResponse schema', () => {
    for (const code of PROXY_ERROR_CODES) {
      const rendered = renderXksError(new ProxyError(code, `message for ${code}`));
      assert.equal(rendered.status, SPEC_TABLE[code]?.status);
      assert.equal(contract.validateComponent('ErrorResponse', rendered.body), undefined, code);
    }
  });

  it('does not render the ProxyError cause or detail', () => {
    const rendered = renderXksError(
      new ProxyError('INTERNAL', 'The proxy failed.', { cause: new Error('CAUSE-MARKER pin=1234'), detail: { secret: 'DETAIL-MARKER' } }),
    );
    const text = JSON.stringify(rendered);
    assert.ok(!text.includes('CAUSE-MARKER'));
    assert.ok(!text.includes('DETAIL-MARKER'));
  });

  it('turns a non-ProxyError into InternalException without leaking its message', () => {
    const leaky = new Error('LEAK-MARKER: connection to hsm-a at 10.0.0.5 with pin 123456 failed');
    const rendered = renderXksError(leaky);
    assert.equal(rendered.status, 500);
    assert.equal(rendered.body.errorName, 'InternalException');
    assert.ok(!JSON.stringify(rendered).includes('LEAK-MARKER'));
    assert.ok(!JSON.stringify(rendered).includes('123456'));
    assert.equal(contract.validateComponent('ErrorResponse', rendered.body), undefined);
  });

  it('turns thrown non-errors (string, undefined, null, object) into InternalException', () => {
    for (const thrown of ['LEAK-MARKER string', undefined, null, { message: 'LEAK-MARKER object' }, 42]) {
      const rendered = renderXksError(thrown);
      assert.equal(rendered.status, 500);
      assert.equal(rendered.body.errorName, 'InternalException');
      assert.ok(!JSON.stringify(rendered).includes('LEAK-MARKER'));
    }
  });

  it('turns a TypeError that merely looks like a ProxyError into InternalException', () => {
    const impostor = Object.assign(new TypeError('LEAK-MARKER'), { code: 'KEY_NOT_FOUND', publicMessage: 'LEAK-MARKER public' });
    const rendered = renderXksError(impostor);
    assert.equal(rendered.body.errorName, 'InternalException');
    assert.ok(!JSON.stringify(rendered).includes('LEAK-MARKER'));
  });

  it('keeps errorMessage printable ASCII when the public message has newlines, tabs and control characters', () => {
    const rendered = renderXksError(new ProxyError('VALIDATION', 'line one\nline two\r\n\tindented\u0000\u001b[31m\u007f'));
    const message = rendered.body.errorMessage ?? '';
    assert.ok(isPrintableAscii(message), JSON.stringify(message));
    assert.ok(message.startsWith('line one?line two'));
    assert.equal(contract.validateComponent('ErrorResponse', rendered.body), undefined);
  });

  it('keeps errorMessage printable ASCII when the public message has non-ASCII and astral characters', () => {
    const rendered = renderXksError(new ProxyError('VALIDATION', 'clé invalide — 🔑 ключ \u2028 end'));
    const message = rendered.body.errorMessage ?? '';
    assert.ok(isPrintableAscii(message), JSON.stringify(message));
    assert.ok(message.endsWith(' end'));
    assert.ok(message.startsWith('cl?'));
  });

  it('keeps errorMessage under 512 characters when the public message is 2000 characters', () => {
    const rendered = renderXksError(new ProxyError('VALIDATION', 'x'.repeat(2000)));
    const message = rendered.body.errorMessage ?? '';
    assert.ok(message.length < 512);
    assert.equal(message.length, MAX_ERROR_MESSAGE_LENGTH);
    assert.equal(contract.validateComponent('ErrorResponse', rendered.body), undefined);
  });

  it('keeps errorMessage under 512 characters for 2000 multi-byte characters', () => {
    const rendered = renderXksError(new ProxyError('VALIDATION', '🔑é\n'.repeat(700)));
    const message = rendered.body.errorMessage ?? '';
    assert.ok(message.length < 512);
    assert.ok(isPrintableAscii(message));
  });
});

describe('toPrintableAscii', () => {
  it('keeps printable ASCII unchanged', () => {
    let all = '';
    for (let code = 0x20; code <= 0x7e; code++) all += String.fromCharCode(code);
    assert.equal(toPrintableAscii(all), all);
  });

  it('replaces each non-printable character (one per code point) with ?', () => {
    assert.equal(toPrintableAscii('a\nb\tc\u007fd\u0080e'), 'a?b?c?d?e');
    assert.equal(toPrintableAscii('🔑'), '?', 'a surrogate pair is one character');
    assert.equal(toPrintableAscii('\ud800x'), '?x', 'a lone surrogate is replaced too');
  });

  it('truncates to the maximum length, by default 511', () => {
    assert.equal(MAX_ERROR_MESSAGE_LENGTH, 511);
    assert.equal(toPrintableAscii('y'.repeat(600)).length, 511);
    assert.equal(toPrintableAscii('abcdef', 3), 'abc');
    assert.equal(toPrintableAscii(''), '');
  });
});
