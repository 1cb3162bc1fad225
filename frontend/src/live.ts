// The live channel: one signed WebSocket per unlocked session. The gateway pushes ids only
// (chat messages sent and read, appointment changes, break-glass notices); screens fetch
// the details with signed requests. On a drop it reconnects with a fresh signature and
// `last_id`, so missed chat messages arrive first. `close()` (at lock) ends it for good.
import { liveUrl, type Session } from "./api";

export interface LiveEvent {
  type: string;
  [key: string]: unknown;
}

type Listener = (event: LiveEvent) => void;

export class Live {
  #socket: WebSocket | null = null;
  #closed = false;
  #listeners = new Set<Listener>();
  #lastMessageId = 0;
  #retry = 0;
  #timer: number | undefined;
  connected = false;
  onStatus: (connected: boolean) => void = () => undefined;

  constructor(private readonly session: Session) {}

  start(): void {
    void this.#connect();
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
    this.onStatus(value);
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.session.locked) return;
    let url: string;
    try {
      url = await liveUrl(this.session, this.#lastMessageId || undefined);
    } catch {
      return; // locked meanwhile
    }
    if (this.#closed) return;
    const socket = new WebSocket(url);
    this.#socket = socket;
    socket.onmessage = (message) => {
      let event: LiveEvent;
      try {
        event = JSON.parse(String(message.data)) as LiveEvent;
      } catch {
        return;
      }
      if (event.type === "ready") {
        this.#retry = 0;
        this.#setConnected(true);
      }
      const id = Number(event.message_id);
      if (Number.isFinite(id) && id > this.#lastMessageId) this.#lastMessageId = id;
      for (const listener of this.#listeners) listener(event);
    };
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#setConnected(false);
      if (this.#closed) return;
      this.#retry = Math.min(this.#retry + 1, 6);
      this.#timer = window.setTimeout(() => void this.#connect(), 500 * 2 ** this.#retry);
    };
  }
}
