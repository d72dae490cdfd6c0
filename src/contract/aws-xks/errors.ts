import { ProxyError, type ProxyErrorCode } from '../../errors/proxy-error.js';
import { toPrintableAscii } from '../../lib/printable-ascii.js';
import type { components } from './openapi-types.js';

export type XksErrorName = components['schemas']['ErrorResponse']['errorName'];
export type XksErrorBody = components['schemas']['ErrorResponse'];

/** The spec's error table: the only place that maps proxy errors to XKS statuses and names. */
export const XKS_ERRORS: Readonly<Record<ProxyErrorCode, { readonly status: number; readonly errorName: XksErrorName }>> = {
  VALIDATION: { status: 400, errorName: 'ValidationException' },
  INVALID_STATE: { status: 400, errorName: 'InvalidStateException' },
  INVALID_CIPHERTEXT: { status: 400, errorName: 'InvalidCiphertextException' },
  INVALID_KEY_USAGE: { status: 400, errorName: 'InvalidKeyUsageException' },
  AUTHENTICATION_FAILED: { status: 401, errorName: 'AuthenticationFailedException' },
  ACCESS_DENIED: { status: 403, errorName: 'AccessDeniedException' },
  KEY_NOT_FOUND: { status: 404, errorName: 'KeyNotFoundException' },
  INVALID_URI_PATH: { status: 404, errorName: 'InvalidUriPathException' },
  // The spec demands 405 but names no error for it; the request is invalid, so ValidationException.
  METHOD_NOT_ALLOWED: { status: 405, errorName: 'ValidationException' },
  THROTTLED: { status: 429, errorName: 'ThrottlingException' },
  UNSUPPORTED_OPERATION: { status: 501, errorName: 'UnsupportedOperationException' },
  DEPENDENCY_TIMEOUT: { status: 503, errorName: 'DependencyTimeoutException' },
  INTERNAL: { status: 500, errorName: 'InternalException' },
};

export interface RenderedError {
  readonly status: number;
  readonly body: XksErrorBody;
}

/** Anything thrown becomes an XKS error; unknown exceptions become InternalException without their message. */
export function renderXksError(error: unknown): RenderedError {
  const proxyError = error instanceof ProxyError ? error : new ProxyError('INTERNAL', 'The proxy failed to process the request.', { cause: error });
  const { status, errorName } = XKS_ERRORS[proxyError.code];
  return { status, body: { errorName, errorMessage: toPrintableAscii(proxyError.publicMessage) } };
}
