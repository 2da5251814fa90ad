import type { ChildProcess } from 'node:child_process';

/** Query parameters of GET /api/warren/journal (all optional, ANDed). */
export interface JournalFilters {
  vhost?: string;
  message_id?: string;
  messageId?: string;
  correlation_id?: string;
  correlationId?: string;
  queue?: string;
  exchange?: string;
  /** published, routed, unroutable, returned, confirmed, delivered, acked, nacked, rejected, requeued,
   * expired, dead-lettered, dropped */
  event?: string;
  /** broker time, Unix ms (inclusive) */
  since?: number | Date;
  until?: number | Date;
  limit?: number;
}

export interface JournalEvent {
  seq: number;
  /** broker time, Unix ms */
  time: number;
  event: string;
  vhost: string;
  message_id: string | null;
  correlation_id: string | null;
  exchange: string | null;
  routing_key: string | null;
  queue: string | null;
  [extra: string]: unknown;
}

/** A duration: milliseconds, or a string such as '90s', '1h', '1h30m', '250ms', '2d'. */
export type Duration = number | string;

export interface StartOptions {
  /** extra broker arguments, e.g. ['--clock', 'virtual'] */
  args?: string[];
  /** the warren executable (default: $WARREN_BIN, else `warren` on PATH) */
  bin?: string;
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
}

export declare class Broker {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly managementPort?: number;
  readonly prometheusPort?: number;
  /** the broker's last stdout/stderr lines */
  readonly log: string[];
  /** amqp://guest:guest@127.0.0.1:PORT/%2F */
  readonly url: string;
  /** http://127.0.0.1:PORT (management API under /api) */
  readonly managementUrl?: string;
  readonly prometheusUrl?: string;
  api(method: string, path: string, opts?: { body?: unknown; ok?: number[]; timeoutMs?: number }): Promise<{ status: number; body: any }>;
  clock(): Promise<{ mode: 'virtual' | 'real'; now: number }>;
  now(): Promise<number>;
  /** resolves to the new broker time (Unix ms) */
  advanceClock(d: Duration): Promise<number>;
  waitIdle(opts?: { timeoutMs?: Duration }): Promise<{ idle: true; waited_ms: number }>;
  journal(filters?: JournalFilters): Promise<JournalEvent[]>;
  waitFor(filters: JournalFilters, opts?: { timeoutMs?: Duration }): Promise<JournalEvent[]>;
  clearJournal(): Promise<void>;
  stop(opts?: { graceMs?: number }): Promise<void>;
}

export declare class WarrenError extends Error {}

export declare function startWarren(opts?: StartOptions): Promise<Broker>;
export declare function findBinary(explicit?: string): string;
export declare function parseDuration(d: Duration): number;
export declare function formatEvent(e: JournalEvent, filters?: JournalFilters): string;
export declare function waitForFailure(filters: JournalFilters, timeoutMs: number, body: unknown): string;
export declare function idleFailure(timeoutMs: number, pending: Record<string, unknown>): string;
