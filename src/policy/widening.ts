import { isDeepStrictEqual } from 'node:util';
import type { PolicyDocument } from './engine.js';

/**
 * Whether a new policy might let through something the old one refused.
 * Conservative on purpose: any added or changed allow, any removed or changed
 * deny, and any default turning to allow counts. A widening change needs dual
 * control; a narrowing one applies at once. Returns the reasons (empty: narrowing).
 */
export function wideningReasons(before: PolicyDocument | undefined, after: PolicyDocument): string[] {
  // No policy at all allows everything: nothing can be wider.
  if (before === undefined) return [];
  const reasons: string[] = [];
  if (before.defaultEffect === 'deny' && after.defaultEffect === 'allow') reasons.push('the default effect becomes allow');
  const stores = new Set([...Object.keys(before.keyStores), ...Object.keys(after.keyStores)]);
  for (const store of stores) {
    const was = before.keyStores[store]?.defaultEffect ?? before.defaultEffect;
    const now = after.keyStores[store]?.defaultEffect ?? after.defaultEffect;
    if (was === 'deny' && now === 'allow') reasons.push(`the default effect of key store ${store} becomes allow`);
  }
  const beforeById = new Map(before.statements.map((statement) => [statement.id, statement]));
  const afterById = new Map(after.statements.map((statement) => [statement.id, statement]));
  for (const statement of after.statements) {
    if (statement.effect !== 'allow') continue;
    const previous = beforeById.get(statement.id);
    if (previous === undefined) reasons.push(`allow statement ${statement.id} is added`);
    else if (!isDeepStrictEqual(previous, statement)) reasons.push(`allow statement ${statement.id} changes`);
  }
  for (const statement of before.statements) {
    if (statement.effect !== 'deny') continue;
    const next = afterById.get(statement.id);
    if (next === undefined) reasons.push(`deny statement ${statement.id} is removed`);
    else if (!isDeepStrictEqual(next, statement)) reasons.push(`deny statement ${statement.id} changes`);
  }
  return reasons;
}
