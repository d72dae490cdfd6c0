import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';

const BUCKETS = 10;

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
  // We rotate the window ourselves, so that closing can empty it (below).
  const rotation = new EventEmitter();
  const breaker = new CircuitBreaker(action, {
    name,
    // Callers enforce their own deadlines; an opossum timeout would free its slot while the call still runs.
    timeout: false,
    errorThresholdPercentage: settings.errorThresholdPercentage,
    volumeThreshold: settings.volumeThreshold,
    resetTimeout: settings.resetTimeoutMs,
    rollingCountTimeout: settings.rollingWindowMs,
    rollingCountBuckets: BUCKETS,
    rotateBucketController: rotation,
    // errorFilter returning true means "not a failure".
    errorFilter: (error: unknown) => !isFailure(error),
  });
  const timer = setInterval(() => rotation.emit('rotate'), Math.max(1, Math.floor(settings.rollingWindowMs / BUCKETS)));
  timer.unref();
  // opossum keeps the outage's failures in the window after a successful trial closes the breaker, so one more
  // failure would open it again at once. A recovered dependency starts with a clean window.
  breaker.on('close', () => {
    for (let i = 0; i < BUCKETS; i++) rotation.emit('rotate');
  });
  breaker.on('shutdown', () => clearInterval(timer));
  return breaker;
}
