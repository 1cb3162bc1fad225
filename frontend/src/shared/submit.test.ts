import { describe, expect, it } from "vitest";

import { submitOnce, writeOnce } from "./submit";

describe("submitOnce", () => {
  it("sends a double submit once: the second joins the first", async () => {
    const sent: string[] = [];
    let made = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const send = async (body: string, key: string): Promise<string> => {
      sent.push(`${key}:${body}`);
      await gate;
      return "done";
    };
    const make = (): string => `body-${++made}`;
    const first = submitOnce("form-a", { dose: 1 }, make, send);
    const second = submitOnce("form-a", { dose: 1 }, make, send);
    release();
    expect(await Promise.all([first, second])).toEqual(["done", "done"]);
    expect(sent).toHaveLength(1);
    expect(made).toBe(1);
  });

  it("retries with the same key and body after a failure, a new one once the form changed", async () => {
    const keys: string[] = [];
    const bodies: number[] = [];
    let made = 0;
    let fail = true;
    const send = async (body: number, key: string): Promise<number> => {
      keys.push(key);
      bodies.push(body);
      if (fail) throw new Error("The gateway cannot be reached");
      return body;
    };
    const make = (): number => ++made;
    await expect(submitOnce("form-b", { dose: 1 }, make, send)).rejects.toThrow("cannot be reached");
    await expect(submitOnce("form-b", { dose: 1 }, make, send)).rejects.toThrow("cannot be reached");
    expect(keys[0]).toBe(keys[1]);
    expect(bodies).toEqual([1, 1]); // the same signed body, not a new signature
    await expect(submitOnce("form-b", { dose: 2 }, make, send)).rejects.toThrow();
    expect(keys[2]).not.toBe(keys[1]);
    fail = false;
    expect(await submitOnce("form-b", { dose: 2 }, make, send)).toBe(2);
    expect(keys[3]).toBe(keys[2]);
    // after success the same form content is a new submission (e.g. a second, equal booking)
    await submitOnce("form-b", { dose: 2 }, make, send);
    expect(keys[4]).not.toBe(keys[3]);
    expect(keys[4]).toMatch(/^[A-Za-z0-9_-]{8,100}$/);
  });
});

describe("writeOnce (chat sends and the smaller writes)", () => {
  const message = (text: string) => ({ params: { path: { conversation_id: "c1" } }, body: { text } });

  it("sends the options with one key per write, kept across a retry and a double click", async () => {
    const sent: { key: string; text: string }[] = [];
    let fail = true;
    const send = async (o: ReturnType<typeof message> & { headers: { "Idempotency-Key": string } }) => {
      sent.push({ key: o.headers["Idempotency-Key"], text: o.body.text });
      await Promise.resolve();
      if (fail) throw new Error("the gateway cannot be reached");
      return sent.length;
    };
    await expect(writeOnce("chat:send", message("hello"), send)).rejects.toThrow("cannot be reached");
    fail = false;
    const [a, b] = await Promise.all([
      writeOnce("chat:send", message("hello"), send),
      writeOnce("chat:send", message("hello"), send), // the double click joins
    ]);
    expect(a).toBe(b);
    expect(sent).toHaveLength(2);
    expect(sent[1].key).toBe(sent[0].key); // the retry: the same key, so the server writes once
    expect(sent[0].key).toMatch(/^[A-Za-z0-9_-]{8,100}$/);
    // the same text again, after the first succeeded, is a new message: a new key
    await writeOnce("chat:send", message("hello"), send);
    expect(sent[2].key).not.toBe(sent[0].key);
    await writeOnce("chat:send", message("other"), send);
    expect(new Set(sent.map((s) => s.key)).size).toBe(3);
  });
});
