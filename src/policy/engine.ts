import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError, formatFieldPath } from '../config/load.js';
import type { AuthorizationDecision, AuthorizationInput, Authorizer } from './authorizer.js';

/**
 * IAM-style policy: statements with an effect, actions, resources and
 * conditions on request attributes. An explicit deny beats any allow; when no
 * statement matches, the key store's default effect (or the global one) decides.
 */

/** Request attributes a condition may name; a typo fails the load instead of never matching. */
export const POLICY_ATTRIBUTES = [
  'awsPrincipalArn',
  'awsPrincipalAccount',
  'kmsKeyArn',
  'kmsKeyAccount',
  'kmsKeyRegion',
  'kmsOperation',
  'kmsViaService',
  'awsSourceVpc',
  'awsSourceVpce',
  'sigv4AccessKeyId',
  'sigv4Region',
  'clientCertificateSubject',
] as const;

/** The evaluation time, for the date and time-of-day operators only. */
export const TIME_ATTRIBUTE = 'currentTime';
/** Claims of a JWT the listener verified (contracts that use bearer tokens), as "jwt:<claim>". */
const JWT_ATTRIBUTE = /^jwt:[A-Za-z0-9_.-]{1,64}$/;

export const STRING_OPERATORS = ['StringEquals', 'StringNotEquals', 'StringLike', 'StringNotLike', 'ArnLike', 'ArnNotLike'] as const;
export const TIME_OPERATORS = ['DateGreaterThan', 'DateLessThan', 'TimeOfDayBetween'] as const;
export const POLICY_OPERATORS = [...STRING_OPERATORS, ...TIME_OPERATORS] as const;

const Effect = z.enum(['allow', 'deny']);
const NonEmpty = z.string().min(1);
const ValueList = z.union([NonEmpty, z.array(NonEmpty).min(1)]).transform((value) => (Array.isArray(value) ? value : [value]));

const KNOWN_ATTRIBUTES: ReadonlySet<string> = new Set(POLICY_ATTRIBUTES);
const RequestAttribute = z
  .string()
  .refine((name) => KNOWN_ATTRIBUTES.has(name) || JWT_ATTRIBUTE.test(name), { error: `must be one of ${POLICY_ATTRIBUTES.join(', ')} or jwt:<claim>` });
// An empty block would make a statement silently unconditional.
const nonEmptyBlock = (block: Record<string, unknown>): boolean => Object.keys(block).length > 0;
const StringBlock = z.record(RequestAttribute, ValueList).refine(nonEmptyBlock, 'must name at least one attribute');

/** Minute precision keeps cached decisions exact: a decision cannot change inside a minute. */
const MINUTE_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:00(\.0+)?)?Z$/;
const DateBlock = z.strictObject({
  [TIME_ATTRIBUTE]: z.union([z.string().regex(MINUTE_DATE, 'must be a UTC time at minute precision, e.g. 2027-01-01T00:00Z'), z.array(z.string().regex(MINUTE_DATE)).min(1)]),
});
const TIME_OF_DAY = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/;
const TimeOfDayBlock = z.strictObject({
  [TIME_ATTRIBUTE]: z.union([z.string().regex(TIME_OF_DAY, 'must be "HH:MM-HH:MM" (UTC)'), z.array(z.string().regex(TIME_OF_DAY)).min(1)]),
});

const ConditionsSchema = z
  .strictObject({
    StringEquals: StringBlock.optional(),
    StringNotEquals: StringBlock.optional(),
    StringLike: StringBlock.optional(),
    StringNotLike: StringBlock.optional(),
    ArnLike: StringBlock.optional(),
    ArnNotLike: StringBlock.optional(),
    DateGreaterThan: DateBlock.optional(),
    DateLessThan: DateBlock.optional(),
    TimeOfDayBetween: TimeOfDayBlock.optional(),
  })
  .default({});

export const PolicySchema = z.strictObject({
  version: z.literal(1),
  defaultEffect: Effect.default('deny'),
  keyStores: z.record(z.string(), z.strictObject({ defaultEffect: Effect })).default({}),
  statements: z
    .array(
      z.strictObject({
        id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 of letters, digits, ".", "_" or "-"'),
        effect: Effect,
        actions: ValueList,
        /** "keystore/<name>/key/<externalKeyId>", globs allowed. */
        resources: ValueList.default(['*']),
        conditions: ConditionsSchema,
      }),
    )
    .default([]),
});

export type PolicyDocument = z.infer<typeof PolicySchema>;
type Operator = (typeof POLICY_OPERATORS)[number];

type Matcher = (value: string) => boolean;

interface CompiledCondition {
  readonly attribute: string;
  readonly negated: boolean;
  /** Matches the attribute's value (string operators) or the evaluation time in ms (time operators). */
  readonly test: (value: string | undefined, now: number) => boolean;
}

interface CompiledStatement {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
  readonly actions: readonly Matcher[];
  readonly resources: readonly Matcher[];
  readonly conditions: readonly CompiledCondition[];
}

export interface StatementMatch {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
}

export interface PolicyExplanation extends AuthorizationDecision {
  readonly resource: string;
  readonly matched: readonly StatementMatch[];
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 's');
}

function globMatcher(glob: string): Matcher {
  if (!glob.includes('*') && !glob.includes('?')) return (value) => value === glob;
  const regex = globToRegExp(glob);
  return (value) => regex.test(value);
}

/** IAM ArnLike: six ':'-separated components, each matched on its own (the last may contain ':'). */
function splitArn(arn: string): string[] {
  const parts = arn.split(':');
  return parts.length <= 6 ? parts : [...parts.slice(0, 5), parts.slice(5).join(':')];
}

function arnMatcher(pattern: string): Matcher {
  const patternParts = splitArn(pattern).map(globMatcher);
  return (value) => {
    const parts = splitArn(value);
    return parts.length === patternParts.length && parts.every((part, index) => (patternParts[index] as Matcher)(part));
  };
}

function minutesOfDay(hhmm: string): number {
  const [hours = 0, minutes = 0] = hhmm.split(':').map(Number);
  return hours * 60 + minutes;
}

function compileCondition(operator: Operator, attribute: string, values: readonly string[]): CompiledCondition {
  if (operator === 'DateGreaterThan' || operator === 'DateLessThan') {
    const instants = values.map((value) => Date.parse(value));
    const after = operator === 'DateGreaterThan';
    return { attribute, negated: false, test: (_value, now) => instants.some((instant) => (after ? now > instant : now < instant)) };
  }
  if (operator === 'TimeOfDayBetween') {
    const windows = values.map((value) => value.split('-').map(minutesOfDay) as [number, number]);
    return {
      attribute,
      negated: false,
      test: (_value, now) => {
        const minute = Math.floor(now / 60_000) % 1440;
        // A window whose end is before its start wraps past midnight.
        return windows.some(([start, end]) => (start <= end ? minute >= start && minute < end : minute >= start || minute < end));
      },
    };
  }
  const negated = operator.includes('Not');
  const build = operator.startsWith('Arn') ? arnMatcher : operator.endsWith('Like') ? globMatcher : (value: string): Matcher => (candidate) => candidate === value;
  const matchers = values.map(build);
  return {
    attribute,
    negated,
    // IAM semantics: a missing attribute fails a positive operator and satisfies a negated one.
    test: (value) => (value === undefined ? negated : negated !== matchers.some((match) => match(value))),
  };
}

export function resourceName(keyStore: string, externalKeyId: string | undefined): string {
  return `keystore/${keyStore}/key/${externalKeyId ?? ''}`;
}

export function parsePolicy(text: string, file = 'policy'): PolicyDocument {
  const parsedYaml = parseDocument(text, { uniqueKeys: true });
  if (parsedYaml.errors.length > 0) throw new ConfigError(parsedYaml.errors.map((error) => `${file}: ${(error.message.split('\n')[0] ?? 'YAML error').replace(/:$/, '')}`));
  const parsed = PolicySchema.safeParse(parsedYaml.toJS());
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((issue) => `${file}: ${formatFieldPath(issue.path)}: ${issue.message}`));
  const ids = new Set<string>();
  const duplicates = parsed.data.statements.filter((statement) => (ids.has(statement.id) ? true : (ids.add(statement.id), false)));
  if (duplicates.length > 0) throw new ConfigError(duplicates.map((statement) => `${file}: statements: id '${statement.id}' is used twice`));
  return parsed.data;
}

export class PolicyEngine implements Authorizer {
  /** SHA-256 of the policy text: changes on every edit, so cached decisions of an older policy never apply. */
  readonly version: string;
  readonly text: string;
  readonly document: PolicyDocument;
  /** The request attributes some condition reads; only these go into a decision's cache key. */
  readonly attributesRead: readonly string[];
  /** Whether any condition reads the clock; such decisions are cached per minute. */
  readonly readsTime: boolean;
  private readonly statements: readonly CompiledStatement[];

  private constructor(document: PolicyDocument, text: string) {
    this.document = document;
    this.text = text;
    this.version = createHash('sha256').update(text).digest('hex');
    this.statements = document.statements.map((statement) => ({
      id: statement.id,
      effect: statement.effect,
      actions: statement.actions.map(globMatcher),
      resources: statement.resources.map(globMatcher),
      conditions: Object.entries(statement.conditions).flatMap(([operator, block]) =>
        Object.entries((block ?? {}) as Record<string, string | string[]>).map(([attribute, values]) =>
          compileCondition(operator as Operator, attribute, Array.isArray(values) ? values : [values]),
        ),
      ),
    }));
    const read = new Set(this.statements.flatMap((statement) => statement.conditions.map((condition) => condition.attribute)));
    this.readsTime = read.delete(TIME_ATTRIBUTE);
    this.attributesRead = [...read].sort();
  }

  static fromFile(file: string): PolicyEngine {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError([`${file}: cannot read the policy file (${(error as NodeJS.ErrnoException).code ?? 'error'})`]);
    }
    return PolicyEngine.fromText(text, file);
  }

  static fromText(text: string, file = 'policy'): PolicyEngine {
    return new PolicyEngine(parsePolicy(text, file), text);
  }

  authorize(input: AuthorizationInput, now: number = Date.now()): AuthorizationDecision {
    const { allowed, statementId, reason } = this.explain(input, now);
    return { allowed, statementId, reason };
  }

  /**
   * The cache key of a decision: the policy version, the action, the resource and
   * only the attributes this policy reads (plus the minute when it reads the clock).
   */
  decisionKey(input: AuthorizationInput, now: number = Date.now()): string {
    const hash = createHash('sha256').update(this.version).update('\0').update(input.action).update('\0').update(resourceName(input.keyStore, input.externalKeyId));
    // JSON keeps every (name, value) pair unambiguous, whatever bytes a value holds.
    hash.update('\0').update(JSON.stringify(this.attributesRead.map((name) => [name, input.attributes[name] ?? null])));
    if (this.readsTime) hash.update('\0').update(String(Math.floor(now / 60_000)));
    return hash.digest('hex');
  }

  /** The decision plus every statement that matched, for `hyok-proxy policy explain` and denial logs. */
  explain(input: AuthorizationInput, now: number = Date.now()): PolicyExplanation {
    const resource = resourceName(input.keyStore, input.externalKeyId);
    // Time conditions see the minute, not the millisecond, so a decision cached for a minute is exact.
    const minute = Math.floor(now / 60_000) * 60_000;
    const matched: StatementMatch[] = [];
    for (const statement of this.statements) {
      if (this.matches(statement, input, resource, minute)) matched.push({ id: statement.id, effect: statement.effect });
    }
    const deny = matched.find((match) => match.effect === 'deny');
    if (deny !== undefined) return { allowed: false, statementId: deny.id, reason: `denied by statement ${deny.id}`, resource, matched };
    const allow = matched.find((match) => match.effect === 'allow');
    if (allow !== undefined) return { allowed: true, statementId: allow.id, reason: `allowed by statement ${allow.id}`, resource, matched };
    const fallback = this.document.keyStores[input.keyStore]?.defaultEffect ?? this.document.defaultEffect;
    return { allowed: fallback === 'allow', statementId: undefined, reason: `no statement matched; default effect ${fallback}`, resource, matched };
  }

  private matches(statement: CompiledStatement, input: AuthorizationInput, resource: string, now: number): boolean {
    if (!statement.actions.some((match) => match(input.action))) return false;
    if (!statement.resources.some((match) => match(resource))) return false;
    return statement.conditions.every((condition) => condition.test(input.attributes[condition.attribute], now));
  }
}
