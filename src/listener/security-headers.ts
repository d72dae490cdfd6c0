import type { IncomingMessage, ServerResponse } from 'node:http';

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

/**
 * The headers a header-only middleware such as helmet sets, read once at
 * start-up, so the XKS fast path can send them without running the middleware
 * (and its dozen setHeader calls) on every request. Throws if the middleware
 * does anything but set or remove headers, so a helmet upgrade that starts to
 * depend on the request cannot be captured silently.
 */
export function captureStaticHeaders(middleware: Middleware): ReadonlyArray<readonly [string, string]> {
  const headers: Array<[string, string]> = [];
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]): void {
      headers.push([name, Array.isArray(value) ? value.join(', ') : String(value)]);
    },
    removeHeader(): void {},
  };
  const refuse = (): never => {
    throw new Error('captureStaticHeaders: the middleware read the request or response beyond headers');
  };
  const request = new Proxy({}, { get: refuse });
  const response = new Proxy(recorder, { get: (target, key) => (key in target ? target[key as keyof typeof target] : refuse()) });
  let finished = false;
  middleware(request as IncomingMessage, response as unknown as ServerResponse, (error) => {
    if (error !== undefined) throw error;
    finished = true;
  });
  if (!finished) throw new Error('captureStaticHeaders: the middleware did not finish synchronously');
  return headers;
}
