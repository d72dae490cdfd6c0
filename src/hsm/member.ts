import { randomBytes, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import { AgentProcess } from './agent-process.js';
import { createMemberBreaker, type BreakerSettings } from './breaker.js';
import { HsmError, type HsmErrorKind } from './errors.js';
import type { AgentOperation, AgentResults } from './protocol.js';

/** What health reporting (XKS GetHealthStatus, /ready) says about a member. */
export type MemberHealth = 'ACTIVE' | 'DEGRADED' | 'UNAVAILABLE';

/** Whether the member takes new work; set by operators (drain, fence, restore) or by the proxy (fence). */
export type MemberMode = 'serving' | 'draining' | 'fenced';

export type BreakerState = 'closed' | 'open' | 'half-open';

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
  readonly maxRestartBackoffMs: number;
  readonly maxQueuedPerAgent: number;
  readonly healthCheckKeyLabel: string;
  readonly degradedLatencyMs: number;
  readonly breaker: BreakerSettings;
}

export interface ProbeResult {
  readonly ok: boolean;
  readonly latencyMs: number;
  readonly at: number;
  readonly error?: string;
  /** The probe ran out of time rather than failing outright. */
  readonly timedOut?: boolean;
}

export interface FenceInfo {
  readonly reason: string;
  /** "operator:<name>" or "proxy" when the proxy fenced the member itself. */
  readonly by: string;
  readonly at: number;
}

export interface MemberSnapshot {
  readonly id: string;
  readonly model: string;
  readonly zone: string | undefined;
  readonly weight: number;
  readonly health: MemberHealth;
  readonly mode: MemberMode;
  /** True once a draining member has no work left. */
  readonly drained: boolean;
  readonly fence: FenceInfo | undefined;
  readonly breaker: BreakerState;
  readonly servingAgents: number;
  readonly agents: number;
  readonly inFlight: number;
  readonly latencyMs: number | undefined;
  readonly lastError: string | undefined;
  readonly lastErrorAt: number | undefined;
  readonly lastProbe: ProbeResult | undefined;
  readonly misconfigured: boolean;
}

/**
 * Checks a freshly started agent's key material against the cluster's
 * expectation; returns why it must not serve, or undefined when it may.
 */
export type AgentVerifier = (fingerprint: (labels: string[]) => Promise<Record<string, string | null>>) => Promise<string | undefined>;

interface AgentSlot {
  readonly index: number;
  agent: AgentProcess | undefined;
  /** True while the agent is spawning or waiting for its first successful checks. */
  starting: boolean;
  failures: number;
  restartTimer: NodeJS.Timeout | undefined;
}

const WATCHDOG_INTERVAL_MS = 50;
const LATENCY_SMOOTHING = 0.2;
/** Probe timeouts in a row before a member whose data calls may still work is reported UNAVAILABLE. */
const PROBE_TIMEOUTS_FOR_UNAVAILABLE = 2;

/** One agent call as the metrics see it; error is the HSM error kind (a bounded set), undefined on success. */
export interface OperationEvent {
  readonly member: string;
  readonly op: AgentOperation['op'];
  readonly ms: number;
  readonly error: HsmErrorKind | undefined;
}
export type OperationObserver = (event: OperationEvent) => void;

/** An operator's (or a drill's) action on a member, as relayed between worker processes. */
export interface MemberControl {
  readonly member: string;
  readonly action: 'drain' | 'fence' | 'restore';
  readonly actor: string;
  readonly reason?: string;
}

/**
 * One HSM in the cluster: its agent processes (each a PKCS#11 context with its
 * own session), an opossum circuit breaker around the agent calls, a watchdog
 * that kills hung agents, automatic restarts with backoff, and the operator's
 * drain/fence/restore. A restarted agent serves only after a deep check and a
 * key-material check pass.
 */
export class HsmMember {
  readonly settings: MemberSettings;
  private readonly logger: Logger;
  private readonly slots: AgentSlot[];
  private readonly watchdog: NodeJS.Timeout;
  private lastWatchdogAt = performance.now();
  private lastPause = { endedAt: 0, ms: 0 };
  private readonly breaker: CircuitBreaker<[AgentProcess, AgentOperation, number], unknown>;
  private verifier: AgentVerifier | undefined;
  private mode: MemberMode = 'serving';
  private fence: FenceInfo | undefined;
  private latencyMs: number | undefined;
  private lastError: string | undefined;
  private lastErrorAt: number | undefined;
  private lastProbe: ProbeResult | undefined;
  private probeTimeoutsInARow = 0;
  private misconfigured = false;
  private closed = false;
  private observer: OperationObserver | undefined;
  private controlListener: ((control: MemberControl) => void) | undefined;

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
    this.breaker = createMemberBreaker(
      settings.id,
      (agent: AgentProcess, operation: AgentOperation, timeoutMs: number): Promise<unknown> => agent.call(operation, timeoutMs),
      settings.breaker,
    );
    this.breaker.on('open', () => this.logger.error({ breaker: 'open' }, 'circuit breaker opened; member out of rotation'));
    this.breaker.on('halfOpen', () => this.logger.warn({ breaker: 'half-open' }, 'circuit breaker half-open; next call is a trial'));
    this.breaker.on('close', () => this.logger.info({ breaker: 'closed' }, 'circuit breaker closed'));
    this.watchdog = setInterval(() => this.checkForHungAgents(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
  }

  get id(): string {
    return this.settings.id;
  }

  /** Installed by the metrics: told of every agent call this member makes, probes included. */
  setObserver(observer: OperationObserver): void {
    this.observer = observer;
  }

  /** Installed by the cluster: the key-material check every new agent must pass before serving. */
  setVerifier(verifier: AgentVerifier): void {
    this.verifier = verifier;
  }

  /** Starts every agent; resolves when each has started or failed once (failures keep retrying in the background). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((slot) => this.startAgent(slot)));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    this.breaker.shutdown();
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      slot.agent?.kill('proxy shutting down');
      slot.agent = undefined;
    }
  }

  /** Stop sending new work; work in flight finishes. */
  drain(actor: string, relay = true): void {
    this.mode = 'draining';
    this.fence = undefined;
    this.logger.warn({ actor }, 'member draining');
    if (relay) this.controlListener?.({ member: this.id, action: 'drain', actor });
  }

  /** Out of service at once: no new work (work in flight cannot be recalled from an HSM). */
  fenceOff(reason: string, by: string, relay = true): void {
    this.mode = 'fenced';
    this.fence = { reason, by, at: Date.now() };
    this.logger.error({ reason, by }, 'member fenced');
    // The proxy's own fences (key check, watchdog) are decided by each process from what it sees.
    if (relay && by !== 'proxy') this.controlListener?.({ member: this.id, action: 'fence', actor: by, reason });
  }

  /** Back into service; the caller re-verifies key material first when the fence was about it. */
  restore(actor: string, relay = true): void {
    this.mode = 'serving';
    this.fence = undefined;
    this.logger.info({ actor }, 'member restored');
    if (relay) this.controlListener?.({ member: this.id, action: 'restore', actor });
  }

  /** Installed when several worker processes serve: an operator's drain, fence or restore reaches them all. */
  setControlListener(listener: (control: MemberControl) => void): void {
    this.controlListener = listener;
  }

  getFence(): FenceInfo | undefined {
    return this.fence;
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

  breakerState(): BreakerState {
    if (this.breaker.opened) return 'open';
    if (this.breaker.halfOpen) return 'half-open';
    return 'closed';
  }

  /**
   * Routing cost: outstanding work per unit of weight. Infinity when the member
   * must not get new work: not serving, breaker open, trial call already
   * taken, or every agent stalled.
   */
  load(): number {
    if (this.mode !== 'serving' || this.health() === 'UNAVAILABLE' || this.availableSlots() === 0) return Number.POSITIVE_INFINITY;
    if (this.breaker.halfOpen && !this.breaker.pendingClose) return Number.POSITIVE_INFINITY;
    return (this.inFlight() + 1) / this.settings.weight;
  }

  health(): MemberHealth {
    const serving = this.servingAgents();
    if (this.misconfigured || this.mode !== 'serving' || serving === 0 || this.breaker.opened) return 'UNAVAILABLE';
    // One slow probe on a busy member is a symptom, not an outage: UNAVAILABLE needs a real failure or repeated timeouts.
    const probeFailed = this.lastProbe !== undefined && !this.lastProbe.ok;
    if (probeFailed && (this.lastProbe?.timedOut !== true || this.probeTimeoutsInARow >= PROBE_TIMEOUTS_FOR_UNAVAILABLE)) return 'UNAVAILABLE';
    // Agents that are alive but all behind on a call (a slow or briefly stuck HSM) get no new work, but the member is
    // DEGRADED until the watchdog calls a call hung (hsm.hungAfterMs) and replaces the agent: then it is UNAVAILABLE.
    const available = this.availableSlots();
    const slow =
      probeFailed ||
      (this.lastProbe !== undefined && this.lastProbe.latencyMs > this.settings.degradedLatencyMs) ||
      (this.latencyMs !== undefined && this.latencyMs > this.settings.degradedLatencyMs);
    if (slow || available < this.slots.length || this.breaker.halfOpen) return 'DEGRADED';
    return 'ACTIVE';
  }

  snapshot(): MemberSnapshot {
    const inFlight = this.inFlight();
    return {
      id: this.settings.id,
      model: this.settings.model,
      zone: this.settings.zone,
      weight: this.settings.weight,
      health: this.health(),
      mode: this.mode,
      drained: this.mode === 'draining' && inFlight === 0,
      fence: this.fence,
      breaker: this.breakerState(),
      servingAgents: this.servingAgents(),
      agents: this.slots.length,
      inFlight,
      latencyMs: this.latencyMs,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
      lastProbe: this.lastProbe,
      misconfigured: this.misconfigured,
    };
  }

  /** Runs one operation on the least-loaded serving agent, through the breaker, bounded by `timeoutMs`. */
  async execute<K extends AgentOperation['op']>(operation: Extract<AgentOperation, { op: K }>, timeoutMs: number): Promise<AgentResults[K]> {
    return this.fire(operation, Math.min(timeoutMs, this.settings.callTimeoutMs));
  }

  /** Like execute, but the caller's deadline is not capped by callTimeoutMs (the deep check has its own). */
  private async fire<K extends AgentOperation['op']>(operation: Extract<AgentOperation, { op: K }>, timeoutMs: number): Promise<AgentResults[K]> {
    const slot = this.pickSlot();
    const agent = slot.agent as AgentProcess;
    const started = performance.now();
    try {
      const result = (await this.breaker.fire(agent, operation, Math.max(1, timeoutMs))) as AgentResults[K];
      const elapsedMs = performance.now() - started;
      this.recordLatency(elapsedMs);
      this.observer?.({ member: this.id, op: operation.op, ms: elapsedMs, error: undefined });
      return result;
    } catch (error) {
      const failure = this.toHsmError(error);
      this.observer?.({ member: this.id, op: operation.op, ms: performance.now() - started, error: failure.kind });
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
      result = await this.deepCheck(timeoutMs, (operation, budget) => this.fire(operation, budget));
    } catch (error) {
      const timedOut = error instanceof HsmError && error.kind === 'timeout';
      result = { ok: false, latencyMs: performance.now() - started, at: Date.now(), error: (error as Error).message, timedOut };
    }
    this.probeTimeoutsInARow = result.timedOut === true ? this.probeTimeoutsInARow + 1 : 0;
    this.lastProbe = result;
    return result;
  }

  /** The data objects with this label on the token (the shared state document, ADR 0004). */
  async readData(label: string, timeoutMs: number): Promise<string[]> {
    const slot = this.pickSlot();
    return (await (slot.agent as AgentProcess).call({ op: 'readData', label }, timeoutMs)).values;
  }

  /** Key fingerprints from one serving agent (see Pkcs11Engine.fingerprint). */
  async fingerprints(labels: string[], timeoutMs: number): Promise<Record<string, string | null>> {
    const slot = this.pickSlot();
    return (slot.agent as AgentProcess).call({ op: 'fingerprint', labels, fixedVectorLabel: this.settings.healthCheckKeyLabel }, timeoutMs);
  }

  private toHsmError(error: unknown): HsmError {
    if (error instanceof HsmError) return error.withMember(this.id);
    if ((error as { code?: string }).code === 'EOPENBREAKER') return new HsmError('unavailable', 'circuit breaker is open', { member: this.id });
    return new HsmError('internal', String(error), { member: this.id });
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

  private availableSlots(): number {
    const now = performance.now();
    return this.slots.filter((slot) => this.isAvailable(slot, now)).length;
  }

  private isAvailable(slot: AgentSlot, now = performance.now()): boolean {
    const agent = slot.agent;
    return !slot.starting && agent !== undefined && agent.alive && this.stallMs(agent, now) <= this.settings.callTimeoutMs;
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

  private noteError(message: string): void {
    this.lastError = message;
    this.lastErrorAt = Date.now();
  }

  private onFailure(slot: AgentSlot, agent: AgentProcess, error: HsmError): void {
    if (!error.blamesMember) return;
    this.noteError(error.message);
    // A device error leaves some modules returning DEVICE_ERROR until re-initialised
    // (p11-kit, hsm-notes), so the agent is replaced with a fresh PKCS#11 context.
    if (error.kind === 'device' && slot.agent === agent) {
      this.logger.warn({ ckr: error.ckrName }, 'device error; restarting agent with a fresh PKCS#11 context');
      agent.kill('device error');
    }
  }

  /**
   * How long this process could not run since the watchdog's last tick (GC, CPU throttling): answers that arrived
   * meanwhile are unread, so that time must not count as the HSM's. Zero while the event loop keeps up.
   */
  private pausedMs(now: number): number {
    return Math.max(0, now - this.lastWatchdogAt - WATCHDOG_INTERVAL_MS);
  }

  /**
   * How long the agent's oldest call has waited on the HSM: its age, less the pauses of this process it spans
   * (the one going on, and the last one the watchdog saw, whose unread answers may still be in the pipe).
   */
  private stallMs(agent: AgentProcess, now: number): number {
    const age = agent.oldestOutstandingMs(now);
    const lastPause = age > now - this.lastPause.endedAt ? this.lastPause.ms : 0;
    return age - this.pausedMs(now) - lastPause;
  }

  private checkForHungAgents(): void {
    const now = performance.now();
    const paused = this.pausedMs(now);
    if (paused > 0) this.lastPause = { endedAt: now, ms: paused };
    this.lastWatchdogAt = now;
    for (const slot of this.slots) {
      const agent = slot.agent;
      if (agent === undefined || !agent.alive) continue;
      const hungFor = this.stallMs(agent, now);
      if (hungFor > this.settings.hungAfterMs) {
        this.noteError(`agent hung for ${Math.round(hungFor)} ms`);
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
      if (!probe.ok) throw new HsmError('device', `deep check failed: ${probe.error ?? 'unknown'}`);
      // ...and holds the same key material as the rest of the cluster.
      const mismatch = await this.verifier?.((labels) =>
        agent.call({ op: 'fingerprint', labels, fixedVectorLabel: this.settings.healthCheckKeyLabel }, this.settings.agentStartTimeoutMs),
      );
      if (mismatch !== undefined) this.fenceOff(mismatch, 'proxy');
      slot.starting = false;
      slot.failures = 0;
      this.logger.info({ agent: slot.index, pid: agent.pid, latencyMs: Math.round(probe.latencyMs) }, 'agent serving');
    } catch (error) {
      const failure = error instanceof HsmError ? error : new HsmError('internal', String(error));
      this.noteError(failure.message);
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
    this.noteError(`agent ${reason}`);
    this.scheduleRestart(slot, reason);
  }

  private scheduleRestart(slot: AgentSlot, reason: string): void {
    if (this.closed || slot.restartTimer !== undefined) return;
    slot.starting = true;
    const delay = Math.min(this.settings.maxRestartBackoffMs, 100 * 2 ** slot.failures);
    slot.failures += 1;
    this.logger.warn({ agent: slot.index, reason, retryInMs: delay }, 'agent down; restarting');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      void this.startAgent(slot);
    }, delay);
    slot.restartTimer.unref();
  }
}
