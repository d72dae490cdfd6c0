import { randomBytes, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { AgentProcess } from './agent-process.js';
import { HsmError } from './errors.js';
import type { AgentOperation, AgentResults } from './protocol.js';

/** What health reporting (XKS GetHealthStatus, /ready) says about a member. */
export type MemberHealth = 'ACTIVE' | 'DEGRADED' | 'UNAVAILABLE';

export interface MemberSettings {
  readonly id: string;
  readonly model: string;
  readonly module: string;
  readonly tokenLabel: string;
  readonly weight: number;
  readonly zone: string | undefined;
  readonly agents: number;
  readonly environment: Readonly<Record<string, string>>;
  /** Read at every agent start, so a rotated PIN file takes effect on the next restart. */
  readonly readPin: () => string;
  readonly callTimeoutMs: number;
  readonly hungAfterMs: number;
  readonly agentStartTimeoutMs: number;
  readonly maxQueuedPerAgent: number;
  readonly healthCheckKeyLabel: string;
  readonly degradedLatencyMs: number;
}

export interface ProbeResult {
  readonly ok: boolean;
  readonly latencyMs: number;
  readonly at: number;
  readonly error?: string;
}

export interface MemberSnapshot {
  readonly id: string;
  readonly model: string;
  readonly zone: string | undefined;
  readonly weight: number;
  readonly health: MemberHealth;
  readonly servingAgents: number;
  readonly agents: number;
  readonly inFlight: number;
  readonly latencyMs: number | undefined;
  readonly lastError: string | undefined;
  readonly lastProbe: ProbeResult | undefined;
  readonly misconfigured: boolean;
}

interface AgentSlot {
  readonly index: number;
  agent: AgentProcess | undefined;
  /** True while the agent is spawning or waiting for its first successful probe. */
  starting: boolean;
  failures: number;
  restartTimer: NodeJS.Timeout | undefined;
}

const MAX_RESTART_BACKOFF_MS = 5000;
const WATCHDOG_INTERVAL_MS = 50;
const LATENCY_SMOOTHING = 0.2;

/**
 * One HSM in the cluster: its agent processes (each a PKCS#11 context with its
 * own session), a watchdog that kills hung agents, and automatic restarts with
 * backoff. A restarted agent serves again only after a deep probe succeeds.
 */
export class HsmMember {
  readonly settings: MemberSettings;
  private readonly logger: Logger;
  private readonly slots: AgentSlot[];
  private readonly watchdog: NodeJS.Timeout;
  private latencyMs: number | undefined;
  private lastError: string | undefined;
  private lastProbe: ProbeResult | undefined;
  private misconfigured = false;
  private closed = false;

  constructor(settings: MemberSettings, logger: Logger) {
    this.settings = settings;
    this.logger = logger.child({ member: settings.id });
    this.slots = Array.from({ length: settings.agents }, (_, index) => ({
      index,
      agent: undefined,
      starting: false,
      failures: 0,
      restartTimer: undefined,
    }));
    this.watchdog = setInterval(() => this.checkForHungAgents(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
  }

  get id(): string {
    return this.settings.id;
  }

  /** Starts every agent; resolves when each has started or failed once (failures keep retrying in the background). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((slot) => this.startAgent(slot)));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      slot.agent?.kill('proxy shutting down');
      slot.agent = undefined;
    }
  }

  /** Agents that can take work now. */
  servingAgents(): number {
    return this.slots.filter((slot) => slot.agent?.alive === true && !slot.starting).length;
  }

  /** Work sent and not yet answered, including calls whose caller already gave up. */
  inFlight(): number {
    let total = 0;
    for (const slot of this.slots) total += slot.agent?.outstanding() ?? 0;
    return total;
  }

  /**
   * Routing cost: outstanding work per unit of weight. Infinity when the member
   * cannot serve, or when every agent is stalled (a call older than the call
   * deadline is still unanswered): a hung HSM must not look like a merely busy one.
   */
  load(): number {
    if (this.health() === 'UNAVAILABLE') return Number.POSITIVE_INFINITY;
    return (this.inFlight() + 1) / this.settings.weight;
  }

  private isAvailable(slot: AgentSlot, now = performance.now()): boolean {
    const agent = slot.agent;
    return !slot.starting && agent !== undefined && agent.alive && agent.oldestOutstandingMs(now) <= this.settings.callTimeoutMs;
  }

  health(): MemberHealth {
    const serving = this.servingAgents();
    if (this.misconfigured || serving === 0) return 'UNAVAILABLE';
    if (this.lastProbe !== undefined && !this.lastProbe.ok) return 'UNAVAILABLE';
    const available = this.slots.filter((slot) => this.isAvailable(slot)).length;
    if (available === 0) return 'UNAVAILABLE';
    const slow =
      (this.lastProbe !== undefined && this.lastProbe.latencyMs > this.settings.degradedLatencyMs) ||
      (this.latencyMs !== undefined && this.latencyMs > this.settings.degradedLatencyMs);
    if (slow || available < this.slots.length) return 'DEGRADED';
    return 'ACTIVE';
  }

  snapshot(): MemberSnapshot {
    return {
      id: this.settings.id,
      model: this.settings.model,
      zone: this.settings.zone,
      weight: this.settings.weight,
      health: this.health(),
      servingAgents: this.servingAgents(),
      agents: this.slots.length,
      inFlight: this.inFlight(),
      latencyMs: this.latencyMs,
      lastError: this.lastError,
      lastProbe: this.lastProbe,
      misconfigured: this.misconfigured,
    };
  }

  /** Runs one operation on the least-loaded serving agent, bounded by `timeoutMs`. */
  async execute<K extends AgentOperation['op']>(operation: Extract<AgentOperation, { op: K }>, timeoutMs: number): Promise<AgentResults[K]> {
    const slot = this.pickSlot();
    const agent = slot.agent as AgentProcess;
    const started = performance.now();
    try {
      const result = await agent.call(operation, Math.max(1, Math.min(timeoutMs, this.settings.callTimeoutMs)));
      this.recordLatency(performance.now() - started);
      return result;
    } catch (error) {
      const failure = error instanceof HsmError ? error.withMember(this.id) : new HsmError('internal', String(error), { member: this.id });
      this.onFailure(slot, agent, failure);
      throw failure;
    }
  }

  /**
   * Deep check: encrypt and decrypt a random block with the health-check key on
   * this member. Never uses a customer key (spec, GetHealthStatus).
   */
  async probe(timeoutMs: number): Promise<ProbeResult> {
    const started = performance.now();
    let result: ProbeResult;
    try {
      result = await this.deepCheck(timeoutMs, (operation, budget) => this.execute(operation, budget));
    } catch (error) {
      result = { ok: false, latencyMs: performance.now() - started, at: Date.now(), error: (error as Error).message };
    }
    this.lastProbe = result;
    return result;
  }

  private async deepCheck(
    timeoutMs: number,
    run: <K extends 'encrypt' | 'decrypt'>(operation: Extract<AgentOperation, { op: K }>, budget: number) => Promise<AgentResults[K]>,
  ): Promise<ProbeResult> {
    const started = performance.now();
    const label = this.settings.healthCheckKeyLabel;
    const block = randomBytes(32);
    const aad = randomBytes(8).toString('base64');
    const encrypted = await run({ op: 'encrypt', label, aad, plaintext: block.toString('base64') }, timeoutMs);
    const remaining = Math.max(1, timeoutMs - (performance.now() - started));
    const decrypted = await run({ op: 'decrypt', label, aad, iv: encrypted.iv, ciphertext: encrypted.ciphertext }, remaining);
    const roundTrip = Buffer.from(decrypted.plaintext, 'base64');
    if (roundTrip.length !== block.length || !timingSafeEqual(roundTrip, block)) {
      throw new HsmError('device', 'health-check round trip returned different bytes');
    }
    return { ok: true, latencyMs: performance.now() - started, at: Date.now() };
  }

  private pickSlot(): AgentSlot {
    const now = performance.now();
    let best: AgentSlot | undefined;
    for (const slot of this.slots) {
      if (!this.isAvailable(slot, now)) continue;
      if (best === undefined || (slot.agent as AgentProcess).outstanding() < (best.agent as AgentProcess).outstanding()) best = slot;
    }
    if (best === undefined) throw new HsmError('unavailable', 'no agent is serving or every agent is stalled', { member: this.id });
    if ((best.agent as AgentProcess).outstanding() >= this.settings.maxQueuedPerAgent) {
      throw new HsmError('unavailable', 'agent queue is full', { member: this.id });
    }
    return best;
  }

  private recordLatency(ms: number): void {
    this.latencyMs = this.latencyMs === undefined ? ms : this.latencyMs + LATENCY_SMOOTHING * (ms - this.latencyMs);
  }

  private onFailure(slot: AgentSlot, agent: AgentProcess, error: HsmError): void {
    if (!error.blamesMember) return;
    this.lastError = error.message;
    // A device error leaves some modules returning DEVICE_ERROR until re-initialised
    // (p11-kit, hsm-notes), so the agent is replaced with a fresh PKCS#11 context.
    if (error.kind === 'device' && slot.agent === agent) {
      this.logger.warn({ ckr: error.ckrName }, 'device error; restarting agent with a fresh PKCS#11 context');
      agent.kill('device error');
    }
  }

  private checkForHungAgents(): void {
    const now = performance.now();
    for (const slot of this.slots) {
      const agent = slot.agent;
      if (agent === undefined || !agent.alive) continue;
      const hungFor = agent.oldestOutstandingMs(now);
      if (hungFor > this.settings.hungAfterMs) {
        this.lastError = `agent hung for ${Math.round(hungFor)} ms`;
        this.logger.error({ hungForMs: Math.round(hungFor), pid: agent.pid }, 'HSM call hung; killing agent and rebuilding its PKCS#11 context');
        agent.kill('hung call');
      }
    }
  }

  private async startAgent(slot: AgentSlot): Promise<void> {
    if (this.closed || this.misconfigured) return;
    slot.starting = true;
    try {
      const agent = await AgentProcess.start({
        memberId: this.id,
        index: slot.index,
        init: { module: this.settings.module, tokenLabel: this.settings.tokenLabel, pin: this.settings.readPin() },
        environment: this.settings.environment,
        startTimeoutMs: this.settings.agentStartTimeoutMs,
        logger: this.logger.child({ agent: slot.index }),
      });
      if (this.closed) {
        agent.kill('proxy shutting down');
        return;
      }
      slot.agent = agent;
      agent.onExit((reason) => this.onAgentExit(slot, agent, reason));
      // Serve only after a deep check proves this context works end to end.
      const probe = await this.deepCheck(this.settings.agentStartTimeoutMs, (operation, budget) => agent.call(operation, budget)).catch(
        (error: unknown) => ({ ok: false, latencyMs: 0, at: Date.now(), error: (error as Error).message }) satisfies ProbeResult,
      );
      this.lastProbe = probe;
      if (!probe.ok) {
        throw new HsmError('device', `deep check failed: ${probe.error ?? 'unknown'}`);
      }
      slot.starting = false;
      slot.failures = 0;
      this.logger.info({ agent: slot.index, pid: agent.pid, latencyMs: Math.round(probe.latencyMs) }, 'agent serving');
    } catch (error) {
      const failure = error instanceof HsmError ? error : new HsmError('internal', String(error));
      this.lastError = failure.message;
      slot.agent?.kill('start failed');
      slot.agent = undefined;
      if (failure.kind === 'misconfigured') {
        // Retrying a wrong PIN can lock the token: wait for an operator.
        this.misconfigured = true;
        this.logger.error({ err: failure.message }, 'member misconfigured; not retrying');
        return;
      }
      this.scheduleRestart(slot, failure.message);
    }
  }

  private onAgentExit(slot: AgentSlot, agent: AgentProcess, reason: string): void {
    if (slot.agent !== agent) return;
    slot.agent = undefined;
    if (this.closed) return;
    this.lastError = `agent ${reason}`;
    this.scheduleRestart(slot, reason);
  }

  private scheduleRestart(slot: AgentSlot, reason: string): void {
    if (this.closed || slot.restartTimer !== undefined) return;
    slot.starting = true;
    const delay = Math.min(MAX_RESTART_BACKOFF_MS, 100 * 2 ** slot.failures);
    slot.failures += 1;
    this.logger.warn({ agent: slot.index, reason, retryInMs: delay }, 'agent down; restarting');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      void this.startAgent(slot);
    }, delay);
    slot.restartTimer.unref();
  }
}
