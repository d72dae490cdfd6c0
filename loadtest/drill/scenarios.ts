import { FaultControl } from '../../test/helpers/fault-shim.js';
import type { HsmNode } from './hsm-node.js';

/**
 * The failover drills. Each one injects its fault into real, separate HSM
 * processes while steady traffic runs, then restores them, on a timetable
 * relative to the start of traffic:
 *
 *   kill-one              SIGKILL node 1 (server and connections) at 20%, start it again at 50%
 *   freeze-one            SIGSTOP node 2 at 20%, SIGCONT at 50%
 *   kill-all-restore-one  SIGKILL every node at 20%, start node 1 again at 50% (2 and 3 stay down)
 *   flapping              node 3 down 2 s / up 3 s, from 20% until 60% of the run, then up
 *   slow-one              node 2 answers encrypt/decrypt `slowMs` late from 20% to 50% (p11-kit has no
 *                         latency knob, so every node runs its token behind the PKCS#11 fault-injection shim)
 */

export const SCENARIO_NAMES = ['kill-one', 'freeze-one', 'kill-all-restore-one', 'flapping', 'slow-one'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export type FaultAction = 'kill' | 'freeze' | 'thaw' | 'start' | 'slow' | 'fast';

export interface FaultEvent {
  /** Seconds since traffic started. */
  readonly atS: number;
  /** Wall clock. */
  readonly at: string;
  readonly kind: 'fault' | 'restore';
  readonly action: FaultAction;
  readonly node: string;
}

/** What the proxy should show while the fault lasts. */
export type Expectation =
  /** The cluster routes around the faulted members: no failures, every request within budget. */
  | 'failover'
  /** Nothing can serve: requests fail fast (within budget) until a member returns. */
  | 'outage';

export interface ScenarioContext {
  readonly nodes: readonly HsmNode[];
  /** Fault-shim control per node (slow-one only). */
  readonly faults: ReadonlyMap<string, FaultControl>;
  readonly durationS: number;
  readonly slowMs: number;
  /** Waits until `seconds` after traffic started; false when the drill is being aborted. */
  at(seconds: number): Promise<boolean>;
  /** Records and performs one action on one node. */
  act(kind: FaultEvent['kind'], action: FaultAction, node: HsmNode): Promise<void>;
}

export interface Scenario {
  readonly name: ScenarioName;
  readonly description: string;
  /** Shortest run that leaves room for detection and recovery (restarts back off up to 5 s). */
  readonly minDurationS: number;
  readonly expectation: Expectation;
  /** Indexes of the nodes whose members must go down and come back (or, for outage, come back first). */
  readonly faulted: readonly number[];
  /** Index of the node expected to recover after restore. */
  readonly recovers: readonly number[];
  /** Health the faulted member must show while faulted. */
  readonly faultHealth: ReadonlyArray<'DEGRADED' | 'UNAVAILABLE'>;
  readonly needsFaultShim: boolean;
  run(context: ScenarioContext): Promise<void>;
}

/** Fault and restore instants for a run of `durationS`. */
export function timetable(durationS: number): { faultAtS: number; restoreAtS: number } {
  return { faultAtS: round1(Math.max(2, durationS * 0.2)), restoreAtS: round1(durationS * 0.5) };
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

function node(context: ScenarioContext, index: number): HsmNode {
  const found = context.nodes[index];
  if (found === undefined) throw new Error(`the drill needs at least ${index + 1} nodes`);
  return found;
}

export const SCENARIOS: Readonly<Record<ScenarioName, Scenario>> = {
  'kill-one': {
    name: 'kill-one',
    description: 'SIGKILL one HSM node (p11-kit server and all its connections) under load, start it again later',
    minDurationS: 12,
    expectation: 'failover',
    faulted: [0],
    recovers: [0],
    faultHealth: ['UNAVAILABLE'],
    needsFaultShim: false,
    async run(context) {
      const { faultAtS, restoreAtS } = timetable(context.durationS);
      const target = node(context, 0);
      if (!(await context.at(faultAtS))) return;
      await context.act('fault', 'kill', target);
      if (!(await context.at(restoreAtS))) return;
      await context.act('restore', 'start', target);
    },
  },
  'freeze-one': {
    name: 'freeze-one',
    description: 'SIGSTOP one HSM node (it hangs with its connections open), SIGCONT later',
    minDurationS: 12,
    expectation: 'failover',
    faulted: [1],
    recovers: [1],
    faultHealth: ['UNAVAILABLE'],
    needsFaultShim: false,
    async run(context) {
      const { faultAtS, restoreAtS } = timetable(context.durationS);
      const target = node(context, 1);
      if (!(await context.at(faultAtS))) return;
      await context.act('fault', 'freeze', target);
      if (!(await context.at(restoreAtS))) return;
      await context.act('restore', 'thaw', target);
    },
  },
  'kill-all-restore-one': {
    name: 'kill-all-restore-one',
    description: 'SIGKILL every HSM node, then start one of them again',
    minDurationS: 12,
    expectation: 'outage',
    faulted: [0, 1, 2],
    recovers: [0],
    faultHealth: ['UNAVAILABLE'],
    needsFaultShim: false,
    async run(context) {
      const { faultAtS, restoreAtS } = timetable(context.durationS);
      if (!(await context.at(faultAtS))) return;
      await Promise.all(context.nodes.map((target) => context.act('fault', 'kill', target)));
      if (!(await context.at(restoreAtS))) return;
      await context.act('restore', 'start', node(context, 0));
    },
  },
  flapping: {
    name: 'flapping',
    description: 'one HSM node goes down (SIGKILL) for 2 s and comes back for 3 s, again and again, then stays up',
    minDurationS: 16,
    expectation: 'failover',
    faulted: [2],
    recovers: [2],
    faultHealth: ['UNAVAILABLE'],
    needsFaultShim: false,
    async run(context) {
      const { faultAtS } = timetable(context.durationS);
      const stopAtS = round1(context.durationS * 0.6);
      const target = node(context, 2);
      let t = faultAtS;
      while (t < stopAtS) {
        if (!(await context.at(t))) return;
        await context.act('fault', 'kill', target);
        t = round1(Math.min(t + 2, stopAtS));
        if (!(await context.at(t))) return;
        await context.act('restore', 'start', target);
        t = round1(t + 3);
      }
    },
  },
  'slow-one': {
    name: 'slow-one',
    description: 'one HSM node answers every encrypt and decrypt late (fault-injection shim under its p11-kit server)',
    minDurationS: 12,
    expectation: 'failover',
    faulted: [1],
    recovers: [1],
    faultHealth: ['DEGRADED'],
    needsFaultShim: true,
    async run(context) {
      const { faultAtS, restoreAtS } = timetable(context.durationS);
      const target = node(context, 1);
      if (!(await context.at(faultAtS))) return;
      await context.act('fault', 'slow', target);
      if (!(await context.at(restoreAtS))) return;
      await context.act('restore', 'fast', target);
    },
  },
};

export function isScenarioName(value: string): value is ScenarioName {
  return (SCENARIO_NAMES as readonly string[]).includes(value);
}

/** Performs one action; the shim's control file takes effect on the node's next call. */
export async function perform(action: FaultAction, target: HsmNode, context: Pick<ScenarioContext, 'faults' | 'slowMs'>): Promise<void> {
  switch (action) {
    case 'kill':
      return target.kill();
    case 'freeze':
      return target.freeze();
    case 'thaw':
      return target.thaw();
    case 'start':
      return target.start();
    case 'slow':
    case 'fast': {
      const control = context.faults.get(target.id);
      if (control === undefined) throw new Error(`node ${target.id} does not run behind the fault-injection shim`);
      if (action === 'slow') control.delay(context.slowMs, ['encrypt', 'decrypt']);
      else control.pass();
      return;
    }
  }
}
