import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Session } from "./api/client";
import { keyFromSeed } from "./api/httpsig";
import { Live, type LiveEvent, READ_ON_PAGE, RECONNECTED, reconnectDelay, RECONNECT_MAX_MS } from "./live";

const ORIGIN = "http://gateway.test";

/** A WebSocket the test drives: frames are handed in with `frame`, `close` ends it. */
class FakeSocket {
  static opened: FakeSocket[] = [];
  onmessage: ((message: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  closedWith: [number, string] | null = null;

  constructor(readonly url: string) {
    FakeSocket.opened.push(this);
  }

  frame(payload: object): void {
    this.onmessage?.({ data: JSON.stringify(payload) });
  }

  close(code = 1000, reason = ""): void {
    this.closedWith = [code, reason];
    this.onclose?.();
  }
}

interface Read {
  url: URL;
  signed: boolean;
}

let reads: Read[] = [];
let answer: (url: URL) => Response = () => new Response("{}", { status: 500 });

function message(id: number): Record<string, unknown> {
  return { message_id: id, conversation_id: "c1", sender_id: "acc-2", text: `m${id}`, sent_at: "" };
}

function page(ids: number[], next: number | null): Response {
  return new Response(JSON.stringify({ messages: ids.map(message), next_cursor: next }), {
    status: 200,
    headers: { "Content-Type": "application/json" },
  });
}

async function settled(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

async function started(): Promise<{ live: Live; events: LiveEvent[]; socket: FakeSocket }> {
  const session = new Session("acc-1", await keyFromSeed(new Uint8Array(32).fill(3)));
  const live = new Live(session);
  const events: LiveEvent[] = [];
  live.subscribe((event) => events.push(event));
  live.start();
  await settled();
  const socket = FakeSocket.opened[FakeSocket.opened.length - 1];
  return { live, events, socket };
}

beforeEach(() => {
  FakeSocket.opened = [];
  reads = [];
  vi.stubGlobal("WebSocket", FakeSocket);
  vi.stubGlobal("window", {
    location: { origin: ORIGIN },
    setTimeout: (fn: () => void) => setTimeout(fn, 0),
    clearTimeout: (handle: ReturnType<typeof setTimeout>) => clearTimeout(handle),
  });
  vi.stubGlobal("fetch", async (target: string, init: RequestInit) => {
    const url = new URL(target);
    const headers = new Headers(init.headers);
    reads.push({ url, signed: Boolean(headers.get("Signature") && headers.get("Signature-Input")) });
    return answer(url);
  });
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("a truncated catch-up", () => {
  it("reads the rest with signed requests and hands every message on, in order", async () => {
    answer = (url) => (url.searchParams.get("after_id") === "2" ? page([3, 4], 4) : page([5], null));
    const { live, events, socket } = await started();
    socket.frame({ type: "message", ...message(1) });
    socket.frame({ type: "message", ...message(2) });
    socket.frame({ type: "catch_up_truncated", after_id: 2 });
    socket.frame({ type: "ready", account_id: "acc-1" });
    await settled();
    expect(reads.map((r) => r.url.pathname)).toEqual(["/api/v1/chat/messages", "/api/v1/chat/messages"]);
    expect(reads.map((r) => r.url.searchParams.get("after_id"))).toEqual(["2", "4"]);
    expect(reads.every((r) => r.signed && r.url.searchParams.get("limit") === String(READ_ON_PAGE))).toBe(true);
    const ids = events.filter((e) => e.type === "message").map((e) => e.message_id);
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    expect(events.some((e) => e.type === "catch_up_truncated")).toBe(false);
    // a later reconnect goes on after the last message read
    socket.close(1006, "gone");
    await settled();
    expect(new URL(FakeSocket.opened[1].url).searchParams.get("last_id")).toBe("5");
    live.close();
  });

  it("reconnects from the last message delivered when a read fails, not from a newer push", async () => {
    answer = () =>
      new Response(JSON.stringify({ error: { code: "rate_limited", message: "slow down" } }), { status: 429 });
    const { live, events, socket } = await started();
    socket.frame({ type: "message", ...message(7) });
    socket.frame({ type: "catch_up_truncated", after_id: 7 });
    socket.frame({ type: "ready", account_id: "acc-1" });
    socket.frame({ type: "message_sent", message_id: 42, conversation_id: "c1", member_ids: ["acc-1"] });
    await settled();
    expect(socket.closedWith?.[0]).toBe(4000);
    expect(events.map((e) => e.message_id).filter(Boolean)).toEqual([7, 42]);
    const again = FakeSocket.opened[1];
    expect(again).toBeDefined();
    expect(new URL(again.url).searchParams.get("last_id")).toBe("7");
    live.close();
  });
});

describe("reconnecting", () => {
  it("tries again within a second, then backs off exponentially with jitter, up to a cap", () => {
    expect(reconnectDelay(1, () => 0)).toBe(250);
    expect(reconnectDelay(1, () => 0.999)).toBeLessThan(1000);
    expect(reconnectDelay(2, () => 0.5)).toBe(1000);
    expect(reconnectDelay(3, () => 0.5)).toBe(2000);
    expect(reconnectDelay(50, () => 0.5)).toBe(RECONNECT_MAX_MS);
    const spread = new Set([0.1, 0.4, 0.8].map((r) => reconnectDelay(4, () => r)));
    expect(spread.size).toBe(3); // jitter: browsers do not all come back at once
  });

  it("tells every listener once when the channel is back, never at the first connect", async () => {
    const { live, events, socket } = await started();
    const states: boolean[] = [];
    live.watchStatus((up) => states.push(up));
    socket.frame({ type: "ready", account_id: "acc-1" });
    expect(events.filter((e) => e.type === RECONNECTED)).toHaveLength(0);
    socket.close(1006, "gateway gone");
    await settled();
    FakeSocket.opened[1].frame({ type: "ready", account_id: "acc-1" });
    expect(events.filter((e) => e.type === RECONNECTED)).toHaveLength(1);
    expect(states).toEqual([true, false, true]);
    live.close();
  });
});

describe("resuming every kind of event", () => {
  const booked = (id: number): Record<string, unknown> => ({
    type: "scheduling.appointment.booked",
    appointment_id: `a${id}`,
    event_id: id,
  });

  it("goes on after the last event delivered, and hands each event id on once, in order", async () => {
    const { live, events, socket } = await started();
    expect(new URL(socket.url).searchParams.has("after_event")).toBe(false); // a first connect
    socket.frame({ type: "ready", account_id: "acc-1", event_id: 10 });
    socket.frame(booked(11));
    socket.frame({ type: "message_sent", message_id: 3, conversation_id: "c1", event_id: 12 });
    socket.close(1006, "gateway gone");
    await settled();
    const again = FakeSocket.opened[1];
    expect(new URL(again.url).searchParams.get("after_event")).toBe("12");
    expect(new URL(again.url).searchParams.get("last_id")).toBe("3");
    // the replay: what was missed, oldest first; an id already delivered is dropped
    again.frame(booked(12));
    again.frame({ type: "scheduling.appointment.rescheduled", appointment_id: "a11", event_id: 13 });
    again.frame({ type: "scheduling.appointment.cancelled", appointment_id: "a11", event_id: 14 });
    again.frame({ type: "message_sent", message_id: 4, conversation_id: "c1", event_id: 15 });
    again.frame({ type: "ready", account_id: "acc-1", event_id: 15 });
    again.frame({ type: "message_sent", message_id: 4, conversation_id: "c1", event_id: 15 });
    const logged = events.filter((e) => typeof e.event_id === "number" && e.type !== "ready");
    expect(logged.map((e) => e.event_id)).toEqual([11, 12, 13, 14, 15]);
    expect(logged.map((e) => e.type)).toEqual([
      "scheduling.appointment.booked",
      "message_sent",
      "scheduling.appointment.rescheduled",
      "scheduling.appointment.cancelled",
      "message_sent",
    ]);
    // the reconnect is told after the replay, so screens read again with it in hand
    const reconnected = events.findIndex((e) => e.type === RECONNECTED);
    expect(reconnected).toBeGreaterThan(events.findIndex((e) => e.event_id === 15));
    live.close();
  });

  it("resumes from where the log stands when it was reset (a lower head)", async () => {
    const { live, events, socket } = await started();
    socket.frame({ type: "ready", account_id: "acc-1", event_id: 500 });
    socket.close(1006, "gone");
    await settled();
    FakeSocket.opened[1].frame({ type: "ready", account_id: "acc-1", event_id: 2 });
    FakeSocket.opened[1].frame(booked(3));
    expect(events.filter((e) => e.event_id === 3)).toHaveLength(1);
    FakeSocket.opened[1].close(1006, "gone");
    await settled();
    expect(new URL(FakeSocket.opened[2].url).searchParams.get("after_event")).toBe("3");
    live.close();
  });
});
