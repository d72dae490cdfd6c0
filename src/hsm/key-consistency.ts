import type { Logger } from 'pino';
import type { HsmCluster } from './cluster.js';
import type { AgentVerifier } from './member.js';

/** A key the cluster must hold identically on every member; `checkValue` pins its KCV (hex) when known. */
export interface KeyExpectation {
  readonly label: string;
  readonly checkValue: string | undefined;
}

export interface LabelReport {
  /** The fingerprint members must match: the pinned KCV, else the majority's. */
  readonly expected: string | undefined;
  /** Per member: its fingerprint, or null when the key is missing there. */
  readonly byMember: Readonly<Record<string, string | null>>;
  /** No pin and no majority: nobody can tell which material is right, so the key is not used. */
  readonly quarantined: boolean;
}

export interface ConsistencyReport {
  readonly at: number;
  readonly labels: Readonly<Record<string, LabelReport>>;
  /** Members fenced by this check. */
  readonly fenced: readonly string[];
}

export interface KeyConsistencySettings {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

function comparable(value: string | null | undefined): value is string {
  return value !== null && value !== undefined && value !== 'unknown';
}

/**
 * Keys must hold identical material on every member: a ciphertext made on one
 * must decrypt on all. This compares fingerprints (KCV, or a fixed-vector GCM
 * result for the health-check key) at start-up, periodically, and for every
 * agent before it serves; a member that disagrees is fenced and never serves.
 */
export class KeyConsistency {
  private readonly cluster: HsmCluster;
  private readonly settings: KeyConsistencySettings;
  private readonly keys: () => readonly KeyExpectation[];
  private readonly logger: Logger;
  private expected = new Map<string, string>();
  private quarantined = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private last: ConsistencyReport | undefined;

  constructor(cluster: HsmCluster, settings: KeyConsistencySettings, keys: () => readonly KeyExpectation[], logger: Logger) {
    this.cluster = cluster;
    this.settings = settings;
    this.keys = keys;
    this.logger = logger;
  }

  start(): void {
    this.timer = setInterval(() => void this.verify().catch((error: unknown) => this.logger.error({ err: error }, 'key consistency check failed')), this.settings.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  isQuarantined(label: string): boolean {
    return this.quarantined.has(label);
  }

  lastReport(): ConsistencyReport | undefined {
    return this.last;
  }

  /** The check a new agent runs before serving (installed on every member). */
  readonly verifyAgent: AgentVerifier = async (fingerprint) => {
    const expected = new Map(this.expected);
    for (const key of this.keys()) if (key.checkValue !== undefined) expected.set(key.label, `kcv:${key.checkValue.toLowerCase()}`);
    if (expected.size === 0) return undefined;
    const actual = await fingerprint([...expected.keys()]);
    for (const [label, value] of expected) {
      const found = actual[label];
      if (comparable(found) && found !== value) return `key material of '${label}' differs from the cluster (${found}, expected ${value})`;
    }
    return undefined;
  };

  async verify(): Promise<ConsistencyReport> {
    const keys = this.keys();
    const labels = [...new Set(keys.map((key) => key.label))];
    const pinned = new Map(keys.filter((key) => key.checkValue !== undefined).map((key) => [key.label, `kcv:${(key.checkValue as string).toLowerCase()}`]));
    const byMember = new Map<string, Record<string, string | null>>();
    await Promise.all(
      this.cluster.list().map(async (member) => {
        try {
          byMember.set(member.id, await member.fingerprints(labels, this.settings.timeoutMs));
        } catch (error) {
          this.logger.debug({ member: member.id, err: (error as Error).message }, 'member skipped by the key consistency check');
        }
      }),
    );

    const report: Record<string, LabelReport> = {};
    const expected = new Map<string, string>();
    const quarantined = new Set<string>();
    for (const label of labels) {
      const values = [...byMember.entries()].map(([id, fingerprints]) => [id, fingerprints[label] ?? null] as const);
      let value = pinned.get(label);
      if (value === undefined) {
        const counts = new Map<string, number>();
        for (const [, fingerprint] of values) if (comparable(fingerprint)) counts.set(fingerprint, (counts.get(fingerprint) ?? 0) + 1);
        const reporting = [...counts.values()].reduce((sum, count) => sum + count, 0);
        for (const [fingerprint, count] of counts) if (count * 2 > reporting) value = fingerprint;
        if (value === undefined && counts.size > 1) quarantined.add(label);
      }
      if (value !== undefined) expected.set(label, value);
      report[label] = { expected: value, byMember: Object.fromEntries(values), quarantined: quarantined.has(label) };
      const missing = values.filter(([, fingerprint]) => fingerprint === null).map(([id]) => id);
      if (missing.length > 0 && missing.length < values.length) this.logger.warn({ label, members: missing }, 'key missing on some members');
    }
    for (const label of quarantined) {
      this.logger.error({ label }, 'key material differs across members with no majority and no pinned check value; key quarantined');
    }

    const fenced: string[] = [];
    for (const member of this.cluster.list()) {
      const fingerprints = byMember.get(member.id);
      if (fingerprints === undefined || member.snapshot().mode === 'fenced') continue;
      const wrong = [...expected].find(([label, value]) => comparable(fingerprints[label]) && fingerprints[label] !== value);
      if (wrong !== undefined) {
        const [label, value] = wrong;
        member.fenceOff(`key material of '${label}' differs from the cluster (${String(fingerprints[label])}, expected ${value})`, 'proxy');
        fenced.push(member.id);
      }
    }
    this.expected = expected;
    this.quarantined = quarantined;
    this.last = { at: Date.now(), labels: report, fenced };
    return this.last;
  }
}
