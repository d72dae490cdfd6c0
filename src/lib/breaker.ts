import CircuitBreaker from 'opossum';

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
 * An opossum breaker configured on purpose rather than with opossum's defaults
 * (a 10 s timeout and a volume threshold of 0, so one early failure opens it).
 * `isFailure` decides which errors count against the dependency.
 */
export function createBreaker<TArgs extends unknown[], TResult>(
  name: string,
  action: (...args: TArgs) => Promise<TResult>,
  settings: BreakerSettings,
  isFailure: (error: unknown) => boolean,
): CircuitBreaker<TArgs, TResult> {
  return new CircuitBreaker(action, {
    name,
    // Callers enforce their own deadlines; an opossum timeout would free its slot while the call still runs.
    timeout: false,
    errorThresholdPercentage: settings.errorThresholdPercentage,
    volumeThreshold: settings.volumeThreshold,
    resetTimeout: settings.resetTimeoutMs,
    rollingCountTimeout: settings.rollingWindowMs,
    rollingCountBuckets: 10,
    // errorFilter returning true means "not a failure".
    errorFilter: (error: unknown) => !isFailure(error),
  });
}
