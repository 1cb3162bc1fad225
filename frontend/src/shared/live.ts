// The live channel: one signed WebSocket per unlocked session. The gateway pushes ids only
// (chat messages sent and read, appointment changes, check-ins, break-glass notices), each
// with the `event_id` of the gateway's live log; screens fetch the details with signed
// requests. On a drop it reconnects with a fresh signature, `after_event` (the last event
// id delivered here: the gateway first replays every later event this user may hear, of
// every kind, oldest first) and `last_id`, so missed chat messages arrive with their text:
// the handshake's one read brings up to a page of them, and if more were missed a
// `catch_up_truncated` notice names the `after_id` from which the rest is read here with
// signed requests (GET /api/v1/chat/messages), handed to listeners as the same "message"
// events. An event id already delivered is dropped (each event reaches listeners once).
// `close()` (at lock) ends it for good.
//
// Reconnecting: the first try comes within a second (RECONNECT_BASE_MS, doubled per failed
// try up to RECONNECT_MAX_MS, each with ±50 % jitter so a restarted gateway is not hit by
// every browser at once). Once it is back, listeners get one `{type: "reconnected"}` after
// the replay: every screen also reads again what it shows (what a log too short for a long
// absence no longer holds, `resume_gap`).
import { liveUrl, must, type Session } from "./api/client";

export interface LiveEvent {
  type: string;
  [key: string]: unknown;
}

type Listener = (event: LiveEvent) => void;

interface MessagePage {
  messages: { message_id: number; [key: string]: unknown }[];
  next_cursor?: number | null;
}

/** Messages per signed read when the catch-up goes on after a truncated page. */
export const READ_ON_PAGE = 200;
export const RECONNECT_BASE_MS = 500;
export const RECONNECT_MAX_MS = 15_000;

/** The wait before reconnect try `attempt` (1, 2, …): 250–750 ms first, then doubling
 * (jittered ±50 %) up to RECONNECT_MAX_MS. `random` is Math.random (a parameter for tests). */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(RECONNECT_BASE_MS * 2 ** Math.max(0, attempt - 1), RECONNECT_MAX_MS);
  return Math.round(base * (0.5 + random()));
}

/** The event every listener gets when the channel is up again after a drop. */
export const RECONNECTED = "reconnected";

export class Live {
  #socket: WebSocket | null = null;
  #closed = false;
  #listeners = new Set<Listener>();
  /** Every chat message up to this id reached the listeners (where a reconnect goes on). */
  #lastMessageId = 0;
  /** Every live-log event up to this id reached the listeners (null: not connected yet). */
  #lastEventId: number | null = null;
  /** While the rest of a truncated catch-up is read: the highest id pushed meanwhile. */
  #readingOn: { highest: number } | null = null;
  #retry = 0;
  #timer: number | undefined;
  /** The channel was up once: a later "ready" is a reconnect. */
  #wasUp = false;
  connected = false;
  #watchers = new Set<(connected: boolean) => void>();

  constructor(private readonly session: Session) {}

  start(): void {
    void this.#connect();
  }

  /** Told whenever the channel goes up or down (the header's badge and banner). */
  watchStatus(watcher: (connected: boolean) => void): () => void {
    this.#watchers.add(watcher);
    return () => this.#watchers.delete(watcher);
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    window.clearTimeout(this.#timer);
    this.#socket?.close(1000, "locked");
    this.#socket = null;
    this.#setConnected(false);
  }

  #setConnected(value: boolean): void {
    this.connected = value;
    for (const watcher of this.#watchers) watcher(value);
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.session.locked) return;
    let url: string;
    try {
      url = await liveUrl(this.session, this.#lastMessageId || undefined, this.#lastEventId ?? undefined);
    } catch {
      return; // locked meanwhile
    }
    if (this.#closed) return;
    const socket = new WebSocket(url);
    this.#socket = socket;
    this.#readingOn = null;
    socket.onmessage = (message) => {
      let event: LiveEvent;
      try {
        event = JSON.parse(String(message.data)) as LiveEvent;
      } catch {
        return;
      }
      if (event.type === "ready") {
        // where the gateway's log stands (lower than ours only if the log was reset)
        const head = Number(event.event_id);
        if (Number.isSafeInteger(head) && head >= 0) this.#lastEventId = head;
        this.#retry = 0;
        this.#setConnected(true);
        if (this.#wasUp) this.#emit({ type: RECONNECTED });
        this.#wasUp = true;
      }
      if (event.type === "catch_up_truncated") {
        void this.#readOn(socket, Number(event.after_id));
        return;
      }
      this.#emit(event);
    };
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#readingOn = null;
      this.#setConnected(false);
      if (this.#closed) return;
      this.#retry = Math.min(this.#retry + 1, 10);
      this.#timer = window.setTimeout(() => void this.#connect(), reconnectDelay(this.#retry));
    };
  }

  #emit(event: LiveEvent, fromReadOn = false): void {
    if (typeof event.event_id === "number" && event.type !== "ready") {
      if (this.#lastEventId !== null && event.event_id <= this.#lastEventId) return; // had it
      this.#lastEventId = event.event_id;
    }
    const id = Number(event.message_id);
    if (Number.isFinite(id)) {
      if (this.#readingOn && !fromReadOn) {
        // pushed while the gap is still being read: a reconnect must not skip the gap
        this.#readingOn.highest = Math.max(this.#readingOn.highest, id);
      } else if (id > this.#lastMessageId) {
        this.#lastMessageId = id;
      }
    }
    for (const listener of this.#listeners) listener(event);
  }

  /** The rest of a truncated catch-up, oldest first, with signed reads. If a read fails
   * the socket is closed, so the reconnect's catch-up goes on from the last message
   * delivered. */
  async #readOn(socket: WebSocket, afterId: number): Promise<void> {
    if (!Number.isSafeInteger(afterId) || afterId < 0) return;
    const state = { highest: 0 };
    this.#readingOn = state;
    let after = Math.max(afterId, this.#lastMessageId);
    const current = (): boolean => this.#socket === socket && this.#readingOn === state && !this.#closed;
    while (current()) {
      let page: MessagePage;
      try {
        page = await must(
          this.session.api.GET("/api/v1/chat/messages", {
            params: { query: { after_id: after, limit: READ_ON_PAGE } },
          }),
        );
      } catch {
        if (current()) socket.close(4000, "catch-up incomplete");
        return;
      }
      if (!current()) return;
      for (const message of page.messages) {
        this.#emit({ ...message, type: "message" }, true);
        after = Math.max(after, message.message_id);
      }
      const next = page.next_cursor;
      if (next === null || next === undefined || page.messages.length === 0) break;
      after = Math.max(after, next);
    }
    if (!current()) return;
    this.#readingOn = null;
    this.#lastMessageId = Math.max(this.#lastMessageId, state.highest);
  }
}
