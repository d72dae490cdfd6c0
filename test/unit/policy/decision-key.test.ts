import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../src/config/load.js';
import type { AuthorizationInput } from '../../../src/policy/authorizer.js';
import { PolicyEngine } from '../../../src/policy/engine.js';
import { policyText, type StatementSpec } from '../../helpers/policy-fixtures.js';

// --- fixtures ------------------------------------------------------------------

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
/** A Monday, 10:00 UTC. */
const T = Date.parse('2030-03-04T10:00:00.000Z');
const utc = (text: string): number => Date.parse(text);

type Attributes = Record<string, string | undefined>;

function input(attributes: Attributes = {}, overrides: Partial<Omit<AuthorizationInput, 'attributes'>> = {}): AuthorizationInput {
  return {
    action: overrides.action ?? 'xks:Encrypt',
    keyStore: overrides.keyStore ?? 'prod',
    externalKeyId: 'externalKeyId' in overrides ? overrides.externalKeyId : 'key-1',
    attributes: {
      awsPrincipalArn: 'arn:aws:iam::111122223333:role/KeyUser',
      kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/k1',
      kmsOperation: 'Encrypt',
      ...attributes,
    },
  };
}

type Conditions = Record<string, Record<string, string | string[]>>;

function policy(statements: StatementSpec[], extra: Record<string, unknown> = {}): PolicyEngine {
  return PolicyEngine.fromText(policyText(statements, extra));
}

function allowIf(conditions: Conditions): PolicyEngine {
  return policy([{ id: 'cond', effect: 'allow', actions: 'xks:*', conditions }]);
}

function rejects(conditions: Conditions, message: RegExp): void {
  assert.throws(
    () => allowIf(conditions),
    (error: unknown) => error instanceof ConfigError && error.issues.some((issue) => message.test(issue)),
    JSON.stringify(conditions),
  );
}

/** Reads kmsViaService and awsPrincipalArn, never awsSourceVpce, kmsKeyRegion or the clock. */
const VIA_SERVICE = policy([
  { id: 'allow-ebs', effect: 'allow', actions: 'xks:*', conditions: { StringEquals: { kmsViaService: 'ebs' } } },
  { id: 'deny-blocked', effect: 'deny', actions: '*', conditions: { ArnLike: { awsPrincipalArn: 'arn:aws:iam::*:role/Blocked*' } } },
]);

// --- tests ---------------------------------------------------------------------

describe('PolicyEngine.attributesRead / readsTime', () => {
  it('lists every attribute some condition reads, once, sorted, without the clock', () => {
    const engine = policy([
      { id: 'a', effect: 'allow', actions: '*', conditions: { StringEquals: { kmsViaService: 'ebs', kmsKeyRegion: 'us-east-1' }, DateLessThan: { currentTime: '2031-01-01T00:00Z' } } },
      { id: 'b', effect: 'deny', actions: '*', conditions: { StringNotEquals: { kmsViaService: 's3' }, ArnLike: { awsPrincipalArn: 'arn:*' }, StringLike: { 'jwt:sub': 'svc-*' } } },
      { id: 'c', effect: 'allow', actions: '*' },
    ]);
    assert.deepEqual(engine.attributesRead, ['awsPrincipalArn', 'jwt:sub', 'kmsKeyRegion', 'kmsViaService']);
    assert.equal(engine.readsTime, true);
  });

  it('is empty for a policy without conditions, which never reads the clock', () => {
    const engine = policy([{ id: 'a', effect: 'allow', actions: '*' }], { defaultEffect: 'deny' });
    assert.deepEqual(engine.attributesRead, []);
    assert.equal(engine.readsTime, false);
    assert.equal(VIA_SERVICE.readsTime, false);
  });

  it('counts each time operator as reading the clock', () => {
    const blocks: Conditions[] = [
      { DateGreaterThan: { currentTime: '2030-01-01T00:00Z' } },
      { DateLessThan: { currentTime: '2030-01-01T00:00Z' } },
      { TimeOfDayBetween: { currentTime: '09:00-17:00' } },
    ];
    for (const conditions of blocks) {
      const engine = allowIf(conditions);
      assert.equal(engine.readsTime, true, Object.keys(conditions)[0]);
      assert.deepEqual(engine.attributesRead, []);
    }
  });
});

describe('PolicyEngine.decisionKey', () => {
  it('is a stable SHA-256 hex digest', () => {
    const key = VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }), T);
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }), T), key);
    assert.equal(policy([]).decisionKey(input(), T), policy([]).decisionKey(input(), T));
  });

  it('is shared by requests that differ only in attributes the policy never reads', () => {
    const base = VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }), T);
    const variants: Attributes[] = [
      { kmsViaService: 'ebs', awsSourceVpce: 'vpce-1' },
      { kmsViaService: 'ebs', awsSourceVpce: 'vpce-2', kmsKeyRegion: 'eu-west-1' },
      { kmsViaService: 'ebs', kmsOperation: 'Decrypt', kmsKeyArn: 'arn:aws:kms:eu-west-1:999999999999:key/other' },
      { kmsViaService: 'ebs', 'jwt:sub': 'someone', currentTime: 'ignored' },
    ];
    for (const attributes of variants) {
      assert.equal(VIA_SERVICE.decisionKey(input(attributes), T), base, JSON.stringify(attributes));
      assert.deepEqual(VIA_SERVICE.authorize(input(attributes), T), VIA_SERVICE.authorize(input({ kmsViaService: 'ebs' }), T));
    }
  });

  it('differs for requests that differ in an attribute the policy reads', () => {
    const keys = [
      input({ kmsViaService: 'ebs' }),
      input({ kmsViaService: 's3' }),
      input({ kmsViaService: 'EBS' }),
      input({ kmsViaService: '' }),
      input({ kmsViaService: undefined }),
      input({ kmsViaService: 'ebs', awsPrincipalArn: 'arn:aws:iam::111122223333:role/Blocked1' }),
      input({ kmsViaService: 'ebs', awsPrincipalArn: undefined }),
    ].map((request) => VIA_SERVICE.decisionKey(request, T));
    assert.equal(new Set(keys).size, keys.length, 'every variant has its own key');
  });

  it('tells a missing attribute apart from one whose value looks like the missing marker', () => {
    const missing = VIA_SERVICE.decisionKey(input({ kmsViaService: undefined }), T);
    assert.notEqual(VIA_SERVICE.decisionKey(input({ kmsViaService: '\u0001' }), T), missing);
  });

  it('differs by action, key store, key id and policy version', () => {
    const base = VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }), T);
    const others = [
      VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }, { action: 'xks:Decrypt' }), T),
      VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }, { keyStore: 'dev' }), T),
      VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }, { externalKeyId: 'key-2' }), T),
      VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }, { externalKeyId: undefined }), T),
      PolicyEngine.fromText(`${VIA_SERVICE.text}# a comment\n`).decisionKey(input({ kmsViaService: 'ebs' }), T),
    ];
    for (const [index, key] of others.entries()) assert.notEqual(key, base, `variant ${index}`);
  });

  it('ignores the clock for a policy without time conditions', () => {
    const key = VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }), T);
    for (const now of [T + 1, T + MINUTE, T + DAY, 0]) assert.equal(VIA_SERVICE.decisionKey(input({ kmsViaService: 'ebs' }), now), key);
  });

  it('for a policy with time conditions, is shared within a UTC minute and changes with the minute', () => {
    const engine = allowIf({ TimeOfDayBetween: { currentTime: '09:00-17:00' } });
    const key = engine.decisionKey(input(), T);
    for (const offset of [1, 1000, 30_000, MINUTE - 1]) assert.equal(engine.decisionKey(input(), T + offset), key, `+${offset} ms`);
    assert.notEqual(engine.decisionKey(input(), T - 1), key);
    assert.notEqual(engine.decisionKey(input(), T + MINUTE), key);
    assert.notEqual(engine.decisionKey(input(), T + DAY), key, 'the same time of day on another day is another minute');
  });

  it('never maps two requests with different decisions to one key (a sweep of attributes and times)', () => {
    const engine = policy([
      { id: 'office-hours', effect: 'allow', actions: 'xks:*', conditions: { StringEquals: { kmsViaService: ['ebs', 's3'] }, TimeOfDayBetween: { currentTime: '09:00-17:00' } } },
      { id: 'deny-bad-vpce-early', effect: 'deny', actions: '*', conditions: { DateLessThan: { currentTime: '2030-03-04T09:30Z' }, StringLike: { awsSourceVpce: 'vpce-bad*' } } },
    ]);
    const decisions = new Map<string, string>();
    const times = [utc('2030-03-04T08:59:00Z'), utc('2030-03-04T09:00:00Z'), utc('2030-03-04T09:29:00Z'), utc('2030-03-04T09:30:00Z'), utc('2030-03-04T16:59:00Z'), utc('2030-03-04T17:00:00Z')];
    let distinctDecisions = 0;
    for (const minuteStart of times) {
      for (const offset of [0, 1, 29_999, MINUTE - 1]) {
        for (const kmsViaService of ['ebs', 's3', 'sqs', undefined]) {
          for (const awsSourceVpce of ['vpce-bad1', 'vpce-good', undefined]) {
            for (const kmsKeyRegion of ['us-east-1', 'eu-west-1']) {
              const request = input({ kmsViaService, awsSourceVpce, kmsKeyRegion });
              const now = minuteStart + offset;
              const key = engine.decisionKey(request, now);
              const decision = JSON.stringify(engine.authorize(request, now));
              const earlier = decisions.get(key);
              if (earlier === undefined) {
                decisions.set(key, decision);
                distinctDecisions++;
              } else {
                assert.equal(decision, earlier, `key ${key.slice(0, 8)} at ${new Date(now).toISOString()} for ${JSON.stringify(request.attributes)}`);
              }
            }
          }
        }
      }
    }
    // 6 minutes x 4 services x 3 endpoints: the region is never read, and the offsets share their minute.
    assert.equal(distinctDecisions, 6 * 4 * 3);
  });

  it(
    'a DateGreaterThan decision cannot change inside the minute of its instant (cached decisions are per minute)',
    () => {
      const engine = allowIf({ DateGreaterThan: { currentTime: '2030-03-04T10:00Z' } });
      assert.equal(engine.decisionKey(input(), T), engine.decisionKey(input(), T + 1), 'same minute, same key');
      assert.deepEqual(engine.authorize(input(), T), engine.authorize(input(), T + 1));
    },
  );

  it(
    'keeps two requests apart when their read attribute values contain the separator bytes',
    () => {
      const engine = policy([
        { id: 'vpc-x', effect: 'allow', actions: '*', conditions: { StringEquals: { awsSourceVpc: 'x' }, StringLike: { awsSourceVpce: '*' } } },
      ]);
      const allowed = input({ awsSourceVpc: 'x', awsSourceVpce: 'y\u0000awsSourceVpce=z' });
      const denied = input({ awsSourceVpc: 'x\u0000awsSourceVpce=y', awsSourceVpce: 'z' });
      assert.equal(engine.authorize(allowed, T).allowed, true);
      assert.equal(engine.authorize(denied, T).allowed, false);
      assert.notEqual(engine.decisionKey(allowed, T), engine.decisionKey(denied, T));
    },
  );
});

describe('PolicyEngine: time conditions (UTC, minute precision)', () => {
  it('DateGreaterThan holds after the instant, DateLessThan before it', () => {
    const after = allowIf({ DateGreaterThan: { currentTime: '2030-03-04T10:00Z' } });
    const before = allowIf({ DateLessThan: { currentTime: '2030-03-04T10:00Z' } });
    assert.equal(after.authorize(input(), T - MINUTE).allowed, false);
    assert.equal(after.authorize(input(), T - 1).allowed, false);
    assert.equal(after.authorize(input(), T + MINUTE).allowed, true);
    assert.equal(after.authorize(input(), T + 365 * DAY).allowed, true);
    assert.equal(before.authorize(input(), T - 1).allowed, true);
    assert.equal(before.authorize(input(), T).allowed, false, 'the instant itself is not before');
    assert.equal(before.authorize(input(), T + MINUTE - 1).allowed, false);
  });

  it('DateLessThan is constant over every millisecond of a minute', () => {
    const engine = allowIf({ DateLessThan: { currentTime: '2030-03-04T10:00Z' } });
    for (const minute of [T - MINUTE, T]) {
      const expected = engine.authorize(input(), minute).allowed;
      for (const offset of [1, 999, 30_000, MINUTE - 1]) assert.equal(engine.authorize(input(), minute + offset).allowed, expected);
    }
  });

  it('combines DateGreaterThan and DateLessThan into a validity window', () => {
    const engine = allowIf({ DateGreaterThan: { currentTime: '2030-03-01T00:00Z' }, DateLessThan: { currentTime: '2030-04-01T00:00Z' } });
    assert.equal(engine.authorize(input(), utc('2030-02-28T23:59:00Z')).allowed, false);
    assert.equal(engine.authorize(input(), T).allowed, true);
    assert.equal(engine.authorize(input(), utc('2030-04-01T00:00:00Z')).allowed, false);
  });

  it('accepts a list of instants as alternatives', () => {
    const engine = allowIf({ DateLessThan: { currentTime: ['2030-01-01T00:00Z', '2030-06-01T00:00Z'] } });
    assert.equal(engine.authorize(input(), T).allowed, true, 'before the later instant');
    assert.equal(engine.authorize(input(), utc('2030-07-01T00:00:00Z')).allowed, false);
  });

  it('TimeOfDayBetween includes the start minute and excludes the end minute', () => {
    const engine = allowIf({ TimeOfDayBetween: { currentTime: '09:00-17:00' } });
    const cases: Array<[string, boolean]> = [
      ['2030-03-04T08:59:59.999Z', false],
      ['2030-03-04T09:00:00.000Z', true],
      ['2030-03-04T12:34:56.789Z', true],
      ['2030-03-04T16:59:59.999Z', true],
      ['2030-03-04T17:00:00.000Z', false],
      ['2030-03-05T09:30:00.000Z', true],
      ['1999-12-31T10:00:00.000Z', true],
      ['2030-03-04T02:00:00.000Z', false],
    ];
    for (const [time, expected] of cases) assert.equal(engine.authorize(input(), utc(time)).allowed, expected, time);
  });

  it('TimeOfDayBetween wraps past midnight when the end is before the start', () => {
    const engine = allowIf({ TimeOfDayBetween: { currentTime: '22:00-06:00' } });
    const cases: Array<[string, boolean]> = [
      ['2030-03-04T21:59:00Z', false],
      ['2030-03-04T22:00:00Z', true],
      ['2030-03-04T23:59:59Z', true],
      ['2030-03-05T00:00:00Z', true],
      ['2030-03-05T05:59:59Z', true],
      ['2030-03-05T06:00:00Z', false],
      ['2030-03-05T12:00:00Z', false],
    ];
    for (const [time, expected] of cases) assert.equal(engine.authorize(input(), utc(time)).allowed, expected, time);
  });

  it('TimeOfDayBetween accepts several windows', () => {
    const engine = allowIf({ TimeOfDayBetween: { currentTime: ['01:00-02:00', '13:30-14:00'] } });
    assert.equal(engine.authorize(input(), utc('2030-03-04T01:15:00Z')).allowed, true);
    assert.equal(engine.authorize(input(), utc('2030-03-04T13:45:00Z')).allowed, true);
    assert.equal(engine.authorize(input(), utc('2030-03-04T13:29:00Z')).allowed, false);
    assert.equal(engine.authorize(input(), utc('2030-03-04T03:00:00Z')).allowed, false);
  });

  it('a deny outside office hours beats an allow', () => {
    const engine = policy([
      { id: 'allow-all', effect: 'allow', actions: '*' },
      { id: 'after-hours', effect: 'deny', actions: '*', conditions: { TimeOfDayBetween: { currentTime: '17:00-09:00' } } },
    ]);
    assert.equal(engine.authorize(input(), utc('2030-03-04T10:00:00Z')).statementId, 'allow-all');
    assert.deepEqual(engine.authorize(input(), utc('2030-03-04T20:00:00Z')), { allowed: false, statementId: 'after-hours', reason: 'denied by statement after-hours' });
  });

  it('reads the time from the evaluation clock, never from a request attribute', () => {
    const engine = allowIf({ TimeOfDayBetween: { currentTime: '09:00-17:00' } });
    assert.equal(engine.authorize(input({ currentTime: '2030-03-04T10:00:00Z' }), utc('2030-03-04T20:00:00Z')).allowed, false);
  });

  it('accepts instants at minute precision only, in UTC', () => {
    for (const instant of ['2030-01-01T00:00Z', '2030-01-01T00:00:00Z', '2030-01-01T00:00:00.000Z']) {
      const engine = allowIf({ DateGreaterThan: { currentTime: instant } });
      assert.equal(engine.authorize(input(), utc('2030-01-01T00:01:00Z')).allowed, true, instant);
      assert.equal(engine.authorize(input(), utc('2029-12-31T23:59:00Z')).allowed, false, instant);
    }
    for (const instant of ['2030-01-01T00:00:30Z', '2030-01-01T00:00:00.001Z', '2030-01-01T00:00+01:00', '2030-01-01T00:00', '2030-01-01', 'tomorrow']) {
      rejects({ DateGreaterThan: { currentTime: instant } }, /DateGreaterThan/);
      rejects({ DateLessThan: { currentTime: [instant] } }, /DateLessThan/);
    }
    rejects({ DateGreaterThan: { currentTime: '2030-01-01T00:00:30Z' } }, /minute precision/);
  });

  it('accepts times of day as "HH:MM-HH:MM" only', () => {
    for (const window of ['9:00-17:00', '09:00-24:00', '09:60-10:00', '09:00', '09:00 - 17:00', '09:00-17:00Z']) {
      rejects({ TimeOfDayBetween: { currentTime: window } }, /TimeOfDayBetween/);
    }
    rejects({ TimeOfDayBetween: { currentTime: '9:00-17:00' } }, /HH:MM-HH:MM/);
  });

  it('takes only currentTime in time blocks, and never currentTime in string blocks', () => {
    rejects({ DateGreaterThan: { kmsViaService: '2030-01-01T00:00Z' } }, /DateGreaterThan/);
    rejects({ TimeOfDayBetween: { currentTime: '09:00-17:00', kmsViaService: '09:00-17:00' } }, /TimeOfDayBetween/);
    rejects({ StringEquals: { currentTime: '2030-01-01T00:00Z' } }, /StringEquals/);
  });
});
