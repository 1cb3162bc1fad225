import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { LockedError, must, Session } from "./client";
import { keyFromSeed } from "./httpsig";

function answer(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

const limited = (): Response =>
  answer(429, { error: { code: "rate_limited", message: "too many requests" } }, { "Retry-After": "1" });

let fetched: Request[];
let replies: Response[];

beforeEach(() => {
  fetched = [];
  replies = [];
  vi.stubGlobal("window", { location: { origin: "http://127.0.0.1:8000" } });
  vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
    fetched.push(new Request(url, init));
    return replies.shift() ?? answer(500, {});
  });
});
afterEach(() => {
  vi.unstubAllGlobals();
});

async function session(): Promise<Session> {
  return new Session("acc-1", await keyFromSeed(new Uint8Array(32).fill(3)));
}

describe("the generated client", () => {
  it("signs the very URL it sends, with the body's digest", async () => {
    replies.push(answer(201, { appointment_id: "a1" }));
    const body = { patient_id: "p1", physician_id: "d1", start: "s", end: "e", reason: "Cough" };
    await must((await session()).api.POST("/api/v1/appointments", { body }));
    const sent = fetched[0];
    expect(sent.method).toBe("POST");
    expect(sent.url).toBe("http://127.0.0.1:8000/api/v1/appointments");
    const input = sent.headers.get("signature-input") ?? "";
    expect(input).toContain('keyid="acc-1"');
    expect(input).toContain('"@target-uri"');
    expect(await sent.text()).toBe(JSON.stringify(body));
    expect(sent.headers.get("content-digest")).toMatch(/^sha-256=:/);
    expect(sent.credentials).toBe("omit");
  });

  it("puts path and query parameters in the URL, percent-encoded", async () => {
    replies.push(answer(200, { appointments: [] }));
    await must(
      (await session()).api.GET("/api/v1/physicians/{physician_id}/calendar", {
        params: { path: { physician_id: "dr a/b" }, query: { day: "2026-12-03", span: "week" } },
      }),
    );
    expect(fetched[0].url).toBe("http://127.0.0.1:8000/api/v1/physicians/dr%20a%2Fb/calendar?day=2026-12-03&span=week");
  });

  it("turns the gateway's error into an ApiError with its words and details", async () => {
    const details = { conflict: { start: "2026-12-03T09:00:00+00:00" } };
    replies.push(answer(409, { error: { code: "conflict", message: "Dr Berg already has 10:00–10:30.", details } }));
    const pending = must(
      (await session()).api.POST("/api/v1/appointments/{appointment_id}/check-in", {
        params: { path: { appointment_id: "a1" } },
      }),
    );
    await expect(pending).rejects.toMatchObject({
      status: 409,
      code: "conflict",
      message: "Dr Berg already has 10:00–10:30.",
      details,
    });
    expect(await fetched[0].text()).toBe(""); // a step without a body sends none…
    expect(fetched[0].headers.get("content-type")).toBe("application/json"); // …as JSON, as writes are
  });
});

describe("reads refused by the rate limit", () => {
  it("are sent once more after a short Retry-After, signed afresh", async () => {
    replies.push(limited(), answer(200, { account_id: "acc-1" }));
    const started = Date.now();
    expect(await must((await session()).api.GET("/api/v1/me"))).toEqual({ account_id: "acc-1" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950); // after the Retry-After
    expect(fetched).toHaveLength(2);
    expect(fetched[0].headers.get("signature")).not.toBe(fetched[1].headers.get("signature"));
  });

  it("as is a read the gateway was too busy to take (503 busy), once", async () => {
    const busy = (): Response =>
      answer(503, { error: { code: "busy", message: "Medihaven is very busy right now" } }, { "Retry-After": "1" });
    replies.push(busy(), answer(200, { account_id: "acc-1" }));
    expect(await must((await session()).api.GET("/api/v1/me"))).toEqual({ account_id: "acc-1" });
    expect(fetched).toHaveLength(2);
    replies.push(busy(), busy());
    await expect(must((await session()).api.GET("/api/v1/me"))).rejects.toMatchObject({ status: 503, code: "busy" });
    expect(fetched).toHaveLength(4); // sent twice, not more
  });

  it("are not sent again once the app locked meanwhile", async () => {
    replies.push(limited());
    const unlocked = await session();
    const pending = must(
      unlocked.api.GET("/api/v1/patients/{patient_id}/summary", { params: { path: { patient_id: "p1" } } }),
    );
    await vi.waitFor(() => expect(fetched).toHaveLength(1));
    unlocked.lock(); // while it waits out the Retry-After
    await expect(pending).rejects.toBeInstanceOf(LockedError);
    expect(fetched).toHaveLength(1);
  });

  it("a write is never repeated by itself", async () => {
    replies.push(limited());
    const pending = must((await session()).api.POST("/api/v1/chat/direct", { body: { other_account_id: "b" } }));
    await expect(pending).rejects.toMatchObject({ status: 429, retryAfter: 1 });
    expect(fetched).toHaveLength(1);
  });
});
