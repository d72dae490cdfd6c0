import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config, LogDestination } from '../config/schema.js';

/**
 * Belt and braces: nothing should hand these fields to the logger in the first
 * place (the secrets-in-logs test checks the whole suite's output), but if a
 * future change does, pino censors them.
 */
const REDACTED_PATHS = [
  'pin',
  '*.pin',
  'init.pin',
  'secret',
  '*.secret',
  'secretAccessKey',
  '*.secretAccessKey',
  'plaintext',
  '*.plaintext',
  'additionalAuthenticatedData',
  '*.additionalAuthenticatedData',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'material',
  '*.material',
];

export function destinationStream(destination: LogDestination, sync = false): DestinationStream {
  if (destination === 'stdout') return pino.destination({ dest: 1, sync });
  if (destination === 'stderr') return pino.destination({ dest: 2, sync });
  return pino.destination({ dest: destination.file, sync, mkdir: true });
}

export function createLogger(logging: Config['logging'], stream?: DestinationStream): Logger {
  return pino(
    {
      level: logging.level,
      base: { service: 'hyok-proxy' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    stream ?? destinationStream(logging.destination),
  );
}
