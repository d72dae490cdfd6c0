/**
 * Coalesces IPC messages into one send per event-loop turn. Each send is a
 * pipe write that wakes the other process; under load, one write carrying
 * dozens of operations costs far less than dozens of writes (profiled: per-
 * message sends took 17% of the proxy's CPU at 2,500 requests/s).
 */
export class MessageBatcher<T> {
  private readonly deliver: (batch: T[]) => void;
  private pending: T[] = [];
  private scheduled = false;

  constructor(deliver: (batch: T[]) => void) {
    this.deliver = deliver;
  }

  push(message: T): void {
    this.pending.push(message);
    if (this.scheduled) return;
    this.scheduled = true;
    // After the current I/O phase, so every request parsed in this turn joins the batch.
    setImmediate(() => {
      const batch = this.pending;
      this.pending = [];
      this.scheduled = false;
      this.deliver(batch);
    });
  }
}
