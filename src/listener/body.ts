import type { IncomingMessage } from 'node:http';
import { ProxyError } from '../errors/proxy-error.js';

/** The client went away before sending its whole body: nobody is left to answer. */
export class RequestAbortedError extends Error {
  constructor() {
    super('client aborted the request');
    this.name = 'RequestAbortedError';
  }
}

/**
 * Reads the raw body (SigV4 signs the exact bytes), refusing it as soon as it
 * exceeds `maxBytes`, before it is buffered, hashed or parsed.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    req.resume(); // Let Node discard the rest; the response closes the connection.
    return Promise.reject(tooLarge(maxBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const finish = (error: Error | undefined): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onError);
      if (error === undefined) resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received));
      else reject(error);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > maxBytes) {
        req.resume();
        finish(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onAborted = (): void => finish(new RequestAbortedError());
    const onError = (): void => finish(new RequestAbortedError());
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onError);
  });
}

function tooLarge(maxBytes: number): ProxyError {
  return new ProxyError('VALIDATION', `The request body is larger than the ${maxBytes} bytes this proxy accepts.`, {
    detail: { reason: 'body too large' },
  });
}
