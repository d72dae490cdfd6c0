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

/** Attributes a condition may name; a typo fails the load instead of never matching. */
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

export const POLICY_OPERATORS = ['StringEquals', 'StringNotEquals', 'StringLike', 'StringNotLike', 'ArnLike', 'ArnNotLike'] as const;

const Effect = z.enum(['allow', 'deny']);
const NonEmpty = z.string().min(1);
const ValueList = z.union([NonEmpty, z.array(NonEmpty).min(1)]).transform((value) => (Array.isArray(value) ? value : [value]));
// An empty block would make a statement silently unconditional.
const ConditionBlock = z.partialRecord(z.enum(POLICY_ATTRIBUTES), ValueList).refine((block) => Object.keys(block).length > 0, 'must name at least one attribute');

const PolicySchema = z.strictObject({
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
        conditions: z.partialRecord(z.enum(POLICY_OPERATORS), ConditionBlock).default({}),
      }),
    )
    .default([]),
});

export type PolicyDocument = z.infer<typeof PolicySchema>;
type Operator = (typeof POLICY_OPERATORS)[number];
type Attribute = (typeof POLICY_ATTRIBUTES)[number];

type Matcher = (value: string) => boolean;

interface CompiledCondition {
  readonly operator: Operator;
  readonly attribute: Attribute;
  readonly matchers: readonly Matcher[];
  readonly negated: boolean;
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

function compileCondition(operator: Operator, attribute: Attribute, values: readonly string[]): CompiledCondition {
  const negated = operator.includes('Not');
  const build = operator.startsWith('Arn') ? arnMatcher : operator.endsWith('Like') ? globMatcher : (value: string): Matcher => (candidate) => candidate === value;
  return { operator, attribute, matchers: values.map(build), negated };
}

export function resourceName(keyStore: string, externalKeyId: string | undefined): string {
  return `keystore/${keyStore}/key/${externalKeyId ?? ''}`;
}

export class PolicyEngine implements Authorizer {
  /** SHA-256 of the policy text: changes on every edit, so cached decisions of an older policy never apply. */
  readonly version: string;
  private readonly document: PolicyDocument;
  private readonly statements: readonly CompiledStatement[];

  private constructor(document: PolicyDocument, version: string) {
    this.document = document;
    this.version = version;
    this.statements = document.statements.map((statement) => ({
      id: statement.id,
      effect: statement.effect,
      actions: statement.actions.map(globMatcher),
      resources: statement.resources.map(globMatcher),
      conditions: Object.entries(statement.conditions).flatMap(([operator, block]) =>
        Object.entries(block ?? {}).map(([attribute, values]) => compileCondition(operator as Operator, attribute as Attribute, values as string[])),
      ),
    }));
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
    const parsedYaml = parseDocument(text, { uniqueKeys: true });
    if (parsedYaml.errors.length > 0) throw new ConfigError(parsedYaml.errors.map((error) => `${file}: ${(error.message.split('\n')[0] ?? 'YAML error').replace(/:$/, '')}`));
    const parsed = PolicySchema.safeParse(parsedYaml.toJS());
    if (!parsed.success) throw new ConfigError(parsed.error.issues.map((issue) => `${file}: ${formatFieldPath(issue.path)}: ${issue.message}`));
    const ids = new Set<string>();
    const duplicates = parsed.data.statements.filter((statement) => (ids.has(statement.id) ? true : (ids.add(statement.id), false)));
    if (duplicates.length > 0) throw new ConfigError(duplicates.map((statement) => `${file}: statements: id '${statement.id}' is used twice`));
    return new PolicyEngine(parsed.data, createHash('sha256').update(text).digest('hex'));
  }

  authorize(input: AuthorizationInput): AuthorizationDecision {
    const { allowed, statementId, reason } = this.explain(input);
    return { allowed, statementId, reason };
  }

  /** The decision plus every statement that matched, for `hyok-proxy policy explain` and denial logs. */
  explain(input: AuthorizationInput): PolicyExplanation {
    const resource = resourceName(input.keyStore, input.externalKeyId);
    const matched: StatementMatch[] = [];
    for (const statement of this.statements) {
      if (this.matches(statement, input, resource)) matched.push({ id: statement.id, effect: statement.effect });
    }
    const deny = matched.find((match) => match.effect === 'deny');
    if (deny !== undefined) return { allowed: false, statementId: deny.id, reason: `denied by statement ${deny.id}`, resource, matched };
    const allow = matched.find((match) => match.effect === 'allow');
    if (allow !== undefined) return { allowed: true, statementId: allow.id, reason: `allowed by statement ${allow.id}`, resource, matched };
    const fallback = this.document.keyStores[input.keyStore]?.defaultEffect ?? this.document.defaultEffect;
    return { allowed: fallback === 'allow', statementId: undefined, reason: `no statement matched; default effect ${fallback}`, resource, matched };
  }

  private matches(statement: CompiledStatement, input: AuthorizationInput, resource: string): boolean {
    if (!statement.actions.some((match) => match(input.action))) return false;
    if (!statement.resources.some((match) => match(resource))) return false;
    return statement.conditions.every((condition) => {
      const value = input.attributes[condition.attribute];
      // IAM semantics: a missing attribute fails a positive operator and satisfies a negated one.
      if (value === undefined) return condition.negated;
      const hit = condition.matchers.some((match) => match(value));
      return condition.negated ? !hit : hit;
    });
  }
}
