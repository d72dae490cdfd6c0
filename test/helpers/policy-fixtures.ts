import { stringify } from 'yaml';

/** One policy statement as a test writes it (strings or lists, as the YAML allows). */
export interface StatementSpec {
  id: string;
  effect: 'allow' | 'deny';
  actions: string | string[];
  resources?: string | string[];
  conditions?: Record<string, Record<string, string | string[]>>;
}

/** The YAML text of a version-1 policy with these statements and top-level fields. */
export function policyText(statements: StatementSpec[], extra: Record<string, unknown> = {}): string {
  return stringify({ version: 1, ...extra, statements });
}
