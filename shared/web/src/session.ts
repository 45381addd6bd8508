// The live table of one session in the browser. The client core (WasmSession, the same sans-IO
// SessionClient, 5e plugin and dice verifier the command line uses) decides everything; this
// module is its driver: it owns the WebSocket and the timers, feeds the core every frame, socket
// change and wake-up with the current time, executes the core's outputs (send, connect,
// reconnect, close, http loads, escalations) and publishes the core's ViewModel after each step
// as reactive state for the screens.

import { reactive, shallowRef } from 'vue';
import init, { WasmSession } from './wasm/dlab_client';
import { api, describeError } from './api';
import type { AttackPlan, LogEntry, Notification, Output, RollRef, Submitted, ViewModel } from './view-types';

/** How long an action waits for the server (a roll, a confirmation) before giving up. */
const WAIT_MS = 20_000;
/** The longest the driver sleeps without ticking the core (its wake-ups come sooner). */
const IDLE_TICK_MS = 15_000;
/** Notices kept on screen. */
const MAX_NOTICES = 8;

let ready: Promise<unknown> | null = null;
/** Loads the core's wasm once per page. */
export function loadCore(): Promise<unknown> {
  ready ??= init();
  return ready;
}

export interface Notice {
  id: number;
  kind: 'rollback' | 'rebase' | 'escalated' | 'error' | 'info' | 'conflict';
  text: string;
}

type Outcome =
  | { kind: 'confirmed'; sequence: number }
  | { kind: 'rolledBack'; code: string; message: string }
  | { kind: 'rebased'; resubmitted: string };

interface Waiter {
  check: () => boolean;
  fail: (error: Error) => void;
  timer: number;
}

const now = () => Date.now();

/** The WebSocket URL of this page's origin, with a connect ticket. */
function socketUrl(ticket: string): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/?token=${encodeURIComponent(ticket)}`;
}

/** `plugin:dnd5e:condition` → "condition", `core:dice:roll` → "dice roll". */
function describeType(type: string): string {
  const parts = type.split(':');
  return parts[0] === 'plugin' ? parts.slice(2).join(' ').replace(/_/g, ' ') : parts.slice(1).join(' ').replace(/_/g, ' ');
}

export class TableSession {
  /** The core's view after the last step (null until the state is loaded). */
  readonly view = shallowRef<ViewModel | null>(null);
  readonly ui = reactive({
    notices: [] as Notice[],
    lastError: null as string | null,
    /** Bumped when the GM should re-read the conflicts (a new one was reported). */
    conflictsChanged: 0,
    closed: false,
  });

  private core: WasmSession | null = null;
  private socket: WebSocket | null = null;
  /** Connection attempt number: reports of an older attempt are ignored. */
  private attempt = 0;
  private timer: number | null = null;
  private outcomes = new Map<string, Outcome>();
  private waiters = new Set<Waiter>();
  private noticeSeq = 0;
  // The browser says the network is gone: stop (the core keeps what is pending and shows
  // "offline") and drop the socket ourselves, since an emulated or flaky offline may leave it
  // half-open; back online, start again (resubscribe from the last sequence, resend).
  private readonly onOffline = () => {
    this.step((c) => c.stop(now()));
    this.dropSocket();
  };
  private readonly onOnline = () => this.step((c) => c.start(now()));

  constructor(
    readonly sessionId: string,
    readonly userId: string,
  ) {}

  /** Loads the core and the session's state, then goes live. */
  async open(): Promise<void> {
    await loadCore();
    const state = await api.sessionStateText(this.sessionId);
    if (this.ui.closed) return;
    const seed = new Uint32Array(2);
    crypto.getRandomValues(seed);
    const core = new WasmSession(this.sessionId, this.userId, seed[0], seed[1]);
    core.loadState(state);
    this.core = core;
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
    if (navigator.onLine) this.step((c) => c.start(now()));
    else this.refresh();
  }

  /** Leaves the table: the socket closes and every timer stops. */
  close(): void {
    if (this.ui.closed) return;
    this.ui.closed = true;
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
    if (this.core) {
      try {
        this.core.stop(now());
      } catch {
        // closing anyway
      }
    }
    this.dropSocket();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.fail(new Error('the table was closed'));
    }
    this.waiters.clear();
    this.core?.free();
    this.core = null;
  }

  notice(kind: Notice['kind'], text: string): void {
    this.ui.notices.unshift({ id: ++this.noticeSeq, kind, text });
    if (this.ui.notices.length > MAX_NOTICES) this.ui.notices.length = MAX_NOTICES;
  }

  dismiss(id: number): void {
    this.ui.notices = this.ui.notices.filter((n) => n.id !== id);
  }

  // ---- actions --------------------------------------------------------------------------

  /** Submits a raw event (optimistic: the view shows it at once). Returns its id. */
  submit(type: string, payload: unknown): string {
    return this.act((c) => c.submit(type, JSON.stringify(payload), now()));
  }

  /** Runs a 5e plugin command (attack, damage, heal, condition, initiative, end_turn…). */
  command(name: string, args: unknown): string {
    return this.act((c) => c.command(name, JSON.stringify(args), now()));
  }

  /** A trusted roll: the server rolls `formula`; resolves with the roll once it is applied. */
  async roll(formula: string, purpose: string): Promise<RollRef> {
    const id = this.submit('core:dice:roll', { formula, purpose });
    const entry = await this.waitFor(`the server's roll of ${formula}`, () => {
      this.throwIfRolledBack(id);
      const found = this.view.value?.log.find((e) => e.id === id && e.payload?.result);
      return found ?? null;
    });
    const result = entry.payload.result!;
    return { rollEventId: id, formula, dice: result.dice.map((d) => d.value), total: result.total };
  }

  /** The attack plan of the core (weapon, formulas, target AC); throws the rules' refusal. */
  planAttack(attacker: string, target: string, weapon?: string): AttackPlan {
    const core = this.requireCore();
    return JSON.parse(core.planAttack(attacker, target, weapon || undefined)) as AttackPlan;
  }

  /**
   * A trusted attack: the server rolls the to-hit d20, then on a hit the damage (doubled dice on
   * a natural 20), then the plugin's attack names both rolls so every client can verify them.
   */
  async attack(attacker: string, target: string, weapon?: string): Promise<string> {
    const plan = this.planAttack(attacker, target, weapon);
    const toHit = await this.roll(plan.toHit, 'attack');
    const natural = toHit.dice[0] ?? 0;
    const critical = natural === 20;
    const hit = critical || (natural !== 1 && toHit.total >= plan.targetAc);
    const args: Record<string, unknown> = {
      attacker,
      target,
      weapon: plan.weapon,
      attackRoll: toHit,
    };
    if (hit) args.damageRoll = await this.roll(critical ? plan.criticalDamage : plan.damage, 'damage');
    return this.command('attack', args);
  }

  /** Initiative with a server roll per combatant (d20 + Dex modifier), then the order. */
  async initiative(): Promise<string> {
    const view = this.requireView();
    const rolls: Record<string, RollRef> = {};
    for (const actor of view.actors) {
      const runtime = await api.runtimeActor(this.sessionId, actor.instanceId);
      const dex = Number((runtime as { attributes?: { abilities?: { dex?: unknown } } }).attributes?.abilities?.dex ?? 10);
      const mod = Math.floor(((Number.isFinite(dex) ? dex : 10) - 10) / 2);
      const formula = mod === 0 ? '1d20' : mod > 0 ? `1d20+${mod}` : `1d20-${-mod}`;
      rolls[actor.instanceId] = await this.roll(formula, `initiative of ${actor.instanceId}`);
    }
    return this.command('initiative', { rolls });
  }

  /** GM: force-sets values (`core:gm_override`). */
  override(finalState: Record<string, Record<string, unknown>>, reason = 'gm_override'): string {
    return this.submit('core:gm_override', { reason, finalState });
  }

  /** Waits until our event `id` (or its rebased successor) is confirmed or rolled back. */
  async settle(id: string): Promise<Outcome> {
    let current = id;
    return this.waitFor(`event ${id} to settle`, () => {
      for (let hops = 0; hops < 10; hops++) {
        const outcome = this.outcomes.get(current);
        if (!outcome) return null;
        if (outcome.kind !== 'rebased') return outcome;
        current = outcome.resubmitted;
      }
      return null;
    });
  }

  // ---- the driver -----------------------------------------------------------------------

  private requireCore(): WasmSession {
    if (!this.core) throw new Error('the table is not open');
    return this.core;
  }

  private requireView(): ViewModel {
    const view = this.view.value;
    if (!view) throw new Error('the table is not loaded yet');
    return view;
  }

  private throwIfRolledBack(id: string): void {
    const outcome = this.outcomes.get(id);
    if (outcome?.kind === 'rolledBack') throw new Error(`${outcome.code}: ${outcome.message}`);
  }

  /** Runs a core call that answers `{id, outputs}` and executes the outputs. */
  private act(call: (core: WasmSession) => string): string {
    const core = this.requireCore();
    const answer = JSON.parse(call(core)) as Submitted;
    this.execute(answer.outputs);
    this.afterStep();
    return answer.id;
  }

  /** One step of the core: call it, execute what it asks, publish the view, plan the wake-up. */
  private step(call: (core: WasmSession) => string): void {
    const core = this.core;
    if (!core || this.ui.closed) return;
    let outputs: Output[];
    try {
      outputs = JSON.parse(call(core)) as Output[];
    } catch (e) {
      this.ui.lastError = describeError(e);
      this.notice('error', `Client core: ${describeError(e)}`);
      return;
    }
    this.execute(outputs);
    this.afterStep();
  }

  private afterStep(): void {
    this.refresh();
    this.schedule();
    this.checkWaiters();
  }

  private refresh(): void {
    if (!this.core) return;
    this.view.value = JSON.parse(this.core.snapshot()) as ViewModel;
  }

  private schedule(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (!this.core || this.ui.closed) return;
    const wake = this.core.nextWake();
    const delay = wake === undefined ? IDLE_TICK_MS : Math.min(Math.max(wake - now(), 5), IDLE_TICK_MS);
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.step((c) => c.tick(now()));
    }, delay);
  }

  /** Executes outputs in order; a failed send becomes a disconnect whose outputs run after. */
  private execute(outputs: Output[]): void {
    const queue = [...outputs];
    while (queue.length) {
      const output = queue.shift()!;
      switch (output.kind) {
        case 'send': {
          const socket = this.socket;
          if (socket && socket.readyState === WebSocket.OPEN) {
            socket.send(output.text);
          } else if (this.core) {
            this.dropSocket();
            queue.push(...(JSON.parse(this.core.onDisconnected(now())) as Output[]));
          }
          break;
        }
        case 'connect':
          this.connect();
          break;
        case 'reconnect':
          this.dropSocket();
          this.connect();
          break;
        case 'close':
          this.dropSocket();
          break;
        case 'http':
          void this.load(output.href);
          break;
        case 'wakeAt':
          // read from nextWake() after every step
          break;
        case 'notify':
          this.notify(output.notification);
          break;
      }
    }
  }

  /** Opens a new socket: a fresh single-use ticket, then the handshake. */
  private connect(): void {
    this.dropSocket();
    const attempt = this.attempt;
    const failed = (reason: string) => {
      if (attempt !== this.attempt) return;
      this.ui.lastError = reason;
      this.dropSocket();
      this.step((c) => c.onDisconnected(now()));
    };
    api.connectTicket().then(
      ({ ticket }) => {
        if (attempt !== this.attempt || this.ui.closed) return;
        let socket: WebSocket;
        try {
          socket = new WebSocket(socketUrl(ticket));
        } catch (e) {
          failed(describeError(e));
          return;
        }
        this.socket = socket;
        socket.onopen = () => {
          if (attempt === this.attempt) this.step((c) => c.onConnected(now()));
        };
        socket.onmessage = (event: MessageEvent) => {
          if (attempt === this.attempt && typeof event.data === 'string') {
            const text = event.data;
            this.step((c) => c.onText(text, now()));
          }
        };
        socket.onclose = (event: CloseEvent) => {
          if (attempt !== this.attempt) return;
          this.socket = null;
          failed(`socket closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`);
        };
      },
      (e) => failed(describeError(e)),
    );
  }

  /** Forgets the socket (closing it) and any connection attempt in flight. */
  private dropSocket(): void {
    this.attempt++;
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      // Closing a socket still in its handshake makes the browser log an error; let it open,
      // then close it.
      if (socket.readyState === WebSocket.CONNECTING) {
        socket.onopen = () => socket.close(1000);
      } else {
        try {
          socket.close(1000);
        } catch {
          // already closed
        }
      }
    }
  }

  /** A state or snapshot the core asked for; a failure drops the socket (the core retries). */
  private async load(href: string): Promise<void> {
    try {
      const body = await api.getText(href);
      if (this.ui.closed) return;
      this.step((c) => c.onLoaded(body, now()));
    } catch (e) {
      this.ui.lastError = `loading ${href}: ${describeError(e)}`;
      if (this.socket) {
        this.dropSocket();
        this.step((c) => c.onDisconnected(now()));
      }
    }
  }

  private notify(n: Notification): void {
    switch (n.kind) {
      case 'confirmed':
        this.outcomes.set(n.id, { kind: 'confirmed', sequence: n.sequence });
        break;
      case 'rolledBack':
        this.outcomes.set(n.id, { kind: 'rolledBack', code: n.code, message: n.message });
        this.notice('rollback', `Rolled back: your ${describeType(n.type)} was refused (${n.code}: ${n.message})`);
        break;
      case 'rebased':
        this.outcomes.set(n.rejected, { kind: 'rebased', resubmitted: n.resubmitted });
        this.notice('rebase', 'Someone changed the same values first: your change was re-applied to the new values.');
        break;
      case 'escalate': {
        const id = n.id;
        const reason = n.reason || 'conflicting change';
        api.escalate(this.sessionId, id, reason).then(
          () => this.notice('escalated', `Conflict sent to the GM: ${reason}`),
          (e) => this.notice('error', `Could not send the conflict to the GM: ${describeError(e)}`),
        );
        break;
      }
      case 'diverged':
        this.notice('error', `The local view diverged from the server; reloading (${n.error})`);
        break;
      case 'serverError':
        this.ui.lastError = `${n.code}: ${n.message}`;
        this.notice('error', `Server: ${n.code}: ${n.message}`);
        break;
      case 'unsubscribed':
        this.notice('error', 'The server ended this subscription (removed from the campaign?).');
        break;
      case 'frame': {
        if (n.event === 'conflict:resolution_needed') {
          this.ui.conflictsChanged++;
          this.notice('conflict', 'A conflict needs the GM’s decision.');
        }
        break;
      }
      default:
        break;
    }
  }

  /** Resolves `check`'s first non-null answer, re-checked after every step; bounded. */
  private waitFor<T>(what: string, check: () => T | null): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        check: () => {
          let value: T | null;
          try {
            value = check();
          } catch (e) {
            done();
            reject(e instanceof Error ? e : new Error(String(e)));
            return true;
          }
          if (value === null || value === undefined) return false;
          done();
          resolve(value);
          return true;
        },
        fail: (e) => reject(e),
        timer: window.setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${what}`));
        }, WAIT_MS),
      };
      const done = () => {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
      };
      if (!waiter.check()) this.waiters.add(waiter);
    });
  }

  private checkWaiters(): void {
    for (const w of [...this.waiters]) w.check();
  }
}

export type { LogEntry };
