import CircuitBreaker from 'opossum';
import { HsmError } from './errors.js';

export interface BreakerSettings {
  /** Failures, as a percentage of calls in the rolling window, that open the breaker. */
  readonly errorThresholdPercentage: number;
  /** Calls in the window before the percentage counts, so one early failure cannot open it. */
  readonly volumeThreshold: number;
  /** Time open before one trial call is let through (half-open). */
  readonly resetTimeoutMs: number;
  readonly rollingWindowMs: number;
}

/**
 * Only failures that blame the member (device, session, timeout) count.
 * Bad ciphertext, key usage and missing keys are the request's fault, so a
 * client sending garbage can never open a breaker.
 */
export function countsAgainstMember(error: unknown): boolean {
  return error instanceof HsmError && error.blamesMember;
}

/** The opossum breaker in front of one HSM member, configured deliberately rather than with opossum's defaults. */
export function createMemberBreaker<TArgs extends unknown[], TResult>(
  name: string,
  action: (...args: TArgs) => Promise<TResult>,
  settings: BreakerSettings,
): CircuitBreaker<TArgs, TResult> {
  return new CircuitBreaker(action, {
    name,
    // Deadlines are enforced by AgentProcess; an opossum timeout would free its slot while the native call still runs.
    timeout: false,
    errorThresholdPercentage: settings.errorThresholdPercentage,
    // opossum's default of 0 lets a single early failure open the circuit.
    volumeThreshold: settings.volumeThreshold,
    resetTimeout: settings.resetTimeoutMs,
    rollingCountTimeout: settings.rollingWindowMs,
    rollingCountBuckets: 10,
    // errorFilter returning true means "not a failure".
    errorFilter: (error: unknown) => !countsAgainstMember(error),
  });
}
