import type CircuitBreaker from 'opossum';
import { createBreaker, type BreakerSettings } from '../lib/breaker.js';
import { HsmError } from './errors.js';

export type { BreakerSettings };

/**
 * Only failures that blame the member (device, session, timeout) count.
 * Bad ciphertext, key usage and missing keys are the request's fault, so a
 * client sending garbage can never open a breaker.
 */
export function countsAgainstMember(error: unknown): boolean {
  return error instanceof HsmError && error.blamesMember;
}

/** The breaker in front of one HSM member. */
export function createMemberBreaker<TArgs extends unknown[], TResult>(
  name: string,
  action: (...args: TArgs) => Promise<TResult>,
  settings: BreakerSettings,
): CircuitBreaker<TArgs, TResult> {
  return createBreaker(name, action, settings, countsAgainstMember);
}
