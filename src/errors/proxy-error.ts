/**
 * Contract-neutral error codes. Each cloud contract maps them to its own wire
 * names and statuses (see contract/<cloud>/errors.ts), so the layers below the
 * adapters never speak any one cloud's dialect.
 */
export const PROXY_ERROR_CODES = [
  'VALIDATION',
  'INVALID_STATE',
  'INVALID_CIPHERTEXT',
  'INVALID_KEY_USAGE',
  'AUTHENTICATION_FAILED',
  'ACCESS_DENIED',
  'KEY_NOT_FOUND',
  'INVALID_URI_PATH',
  'METHOD_NOT_ALLOWED',
  'THROTTLED',
  'UNSUPPORTED_OPERATION',
  'DEPENDENCY_TIMEOUT',
  'INTERNAL',
] as const;

export type ProxyErrorCode = (typeof PROXY_ERROR_CODES)[number];

/** Codes a caller may retry; the HSM cluster also uses this to decide whether a failure blames the device. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<ProxyErrorCode> = new Set(['THROTTLED', 'DEPENDENCY_TIMEOUT', 'INTERNAL']);

export interface ProxyErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  /** Extra context for server logs only; never rendered to the client. */
  detail?: Readonly<Record<string, unknown>>;
}

/**
 * An error that is safe to render: `publicMessage` is fixed text chosen by the
 * proxy (never client input, plaintext or secrets). The cause and detail stay in logs.
 */
export class ProxyError extends Error {
  readonly code: ProxyErrorCode;
  readonly retryable: boolean;
  readonly publicMessage: string;
  readonly detail: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ProxyErrorCode, publicMessage: string, options: ProxyErrorOptions = {}) {
    super(publicMessage, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyError';
    this.code = code;
    this.publicMessage = publicMessage;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    this.detail = options.detail;
  }
}

export function isProxyError(value: unknown): value is ProxyError {
  return value instanceof ProxyError;
}
