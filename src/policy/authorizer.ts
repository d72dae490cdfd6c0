/**
 * Secondary authorization on request attributes (spec, "Authorization").
 * Adapters describe a request as an action plus attributes; the authorizer
 * never sees a cloud's wire format.
 */

export interface AuthorizationInput {
  /** e.g. "xks:Encrypt". */
  readonly action: string;
  readonly keyStore: string;
  readonly externalKeyId: string | undefined;
  /** Request attributes by name (awsPrincipalArn, kmsOperation, ...); undefined when absent. */
  readonly attributes: Readonly<Record<string, string | undefined>>;
}

export interface AuthorizationDecision {
  readonly allowed: boolean;
  /** The statement that decided, or undefined when the default effect did. */
  readonly statementId: string | undefined;
  readonly reason: string;
}

export interface Authorizer {
  authorize(input: AuthorizationInput): AuthorizationDecision | Promise<AuthorizationDecision>;
}

/**
 * Used only when no policy file is configured, and chosen explicitly at
 * start-up (logged), never as a silent fallback for a policy that failed to load.
 */
export const ALLOW_ALL_AUTHORIZER: Authorizer = {
  authorize: () => ({ allowed: true, statementId: undefined, reason: 'no policy configured' }),
};
