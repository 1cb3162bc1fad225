// Chat for every role: conversations with unread badges, messages arriving live over the
// WebSocket (ids only; the text is fetched with a signed request), read receipts. The open
// conversation and an unsent message are kept through a lock (drafts.ts).
import { useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";

import { must } from "./api/client";
import type { components } from "./api/schema";
import { useApp, useDirectory, useLive, useReconnected } from "./context";
import { useDraft, useKept } from "./drafts";
import { when } from "./time";
import { Select, Status, useAction } from "./ui";
import { writeOnce } from "./submit";

type S = components["schemas"];
type Conversation = S["Conversation"];
type Summary = S["ConversationSummary"];
type Message = S["Message"];
type Receipt = S["Receipt"];

export function Chat({ visible, onUnread }: { visible: boolean; onUnread: (count: number) => void }): ReactNode {
  const { session, me } = useApp();
  const directory = useDirectory(session);
  const list = useAction();
  const send = useAction();
  const [summaries, setSummaries] = useState<Summary[]>([]);
  const [selected, setSelected] = useKept<string | null>("chat:open", () => null);
  const [text, setText, discardText] = useDraft<string>(`chat:message:${selected ?? ""}`, () => "");
  const [messages, setMessages] = useState<Message[]>([]);
  const [receipts, setReceipts] = useState<Receipt[]>([]);
  const [loaded, setLoaded] = useState(false);
  const marked = useRef<Record<string, number>>({});
  const selectedRef = useRef<string | null>(selected);
  const messagesRef = useRef<Message[]>([]);
  const bottom = useRef<HTMLDivElement>(null);
  const knownRef = useRef((id: string) => directory.staff.some((s) => s.account_id === id));
  // What the callbacks below read: the latest of each, once rendered.
  useLayoutEffect(() => {
    selectedRef.current = selected;
    messagesRef.current = messages;
    knownRef.current = (id: string) => directory.staff.some((s) => s.account_id === id);
  });

  const loadList = useCallback(async () => {
    const reply = await must(session.api.GET("/api/v1/chat/conversations"));
    setSummaries(reply.conversations);
    setLoaded(true);
    onUnread(reply.conversations.reduce((n, s) => n + s.unread, 0));
  }, [session, onUnread]);

  const loadReceipts = useCallback(
    async (conversationId: string) => {
      const reply = await must(
        session.api.GET("/api/v1/chat/conversations/{conversation_id}/receipts", {
          params: { path: { conversation_id: conversationId } },
        }),
      );
      if (selectedRef.current === conversationId) setReceipts(reply.receipts);
    },
    [session],
  );

  const loadNewer = useCallback(
    async (conversationId: string) => {
      const known = messagesRef.current;
      const after = known.length ? known[known.length - 1].message_id : 0;
      const page = await must(
        session.api.GET("/api/v1/chat/messages", {
          params: { query: { conversation_id: conversationId, after_id: after, limit: 200 } },
        }),
      );
      if (selectedRef.current !== conversationId || page.messages.length === 0) return;
      setMessages((current) => {
        const seen = new Set(current.map((m) => m.message_id));
        return [...current, ...page.messages.filter((m) => !seen.has(m.message_id))];
      });
    },
    [session],
  );

  const openConversation = useCallback(
    async (conversationId: string) => {
      setSelected(conversationId);
      selectedRef.current = conversationId;
      setMessages([]);
      messagesRef.current = [];
      setReceipts([]);
      // The newest page (newest first when paging backward), shown oldest first.
      const page = await must(
        session.api.GET("/api/v1/chat/messages", {
          params: { query: { conversation_id: conversationId, before_id: Number.MAX_SAFE_INTEGER, limit: 100 } },
        }),
      );
      if (selectedRef.current !== conversationId) return;
      const ordered = [...page.messages].sort((a, b) => a.message_id - b.message_id);
      setMessages(ordered);
      messagesRef.current = ordered;
      await loadReceipts(conversationId);
    },
    [session, loadReceipts, setSelected],
  );

  useEffect(() => {
    void list.run(loadList);
  }, [loadList]); // eslint-disable-line react-hooks/exhaustive-deps
  // Back after a drop: the unread counts (and the open conversation) as they are now, even
  // if the gateway's log no longer held every message sent meanwhile (`resume_gap`).
  useReconnected(
    useCallback(() => {
      void loadList().catch(() => undefined);
      const open = selectedRef.current;
      if (open) void loadNewer(open).catch(() => undefined);
    }, [loadList, loadNewer]),
  );

  // Back from a lock: the conversation that was open opens again.
  const reopen = useRef(selected);
  useEffect(() => {
    if (reopen.current) void list.run(() => openConversation(reopen.current as string));
  }, [openConversation]); // eslint-disable-line react-hooks/exhaustive-deps

  // Colleagues registered since: the directory is read again whenever chat is opened.
  const { reload } = directory;
  useEffect(() => {
    if (visible) reload();
  }, [visible, reload]);

  useLive(
    ["message", "messages_read"],
    useCallback(
      (event) => {
        const conversationId = String(event.conversation_id ?? "");
        if (event.type === "messages_read") {
          if (conversationId === selectedRef.current) void loadReceipts(conversationId).catch(() => undefined);
          return;
        }
        if (conversationId && conversationId === selectedRef.current)
          void loadNewer(conversationId).catch(() => undefined);
        void loadList().catch(() => undefined);
        if (!knownRef.current(String(event.sender_id ?? ""))) reload();
      },
      [loadList, loadNewer, loadReceipts, reload],
    ),
  );

  // Reading a conversation on screen marks it read (and the sender sees the receipt).
  useEffect(() => {
    if (!visible || !selected || messages.length === 0) return;
    const last = messages[messages.length - 1].message_id;
    if ((marked.current[selected] ?? 0) >= last) return;
    marked.current[selected] = last;
    writeOnce(
      "/api/v1/chat/conversations/{conversation_id}/read",
      {
        params: { path: { conversation_id: selected } },
        body: { up_to_message_id: last },
      },
      (o) => must(session.api.POST("/api/v1/chat/conversations/{conversation_id}/read", o)),
    ).then(
      () => loadList(),
      () => {
        marked.current[selected] = 0;
      },
    );
  }, [visible, selected, messages, session, loadList]);

  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: "end" });
  }, [messages]);

  const title = (c: Conversation): string =>
    c.kind === "group"
      ? (c.name ?? "Group")
      : c.member_ids
          .filter((id) => id !== me.account_id)
          .map(directory.name)
          .join(", ") || "Notes to self";

  const current = summaries.find((s) => s.conversation.conversation_id === selected)?.conversation;
  const readBy = (message: Message): string[] =>
    receipts
      .filter((r) => r.account_id !== me.account_id && r.read_up_to >= message.message_id)
      .map((r) => directory.name(r.account_id));
  const colleagues = directory.staff.filter((s) => s.account_id !== me.account_id);

  return (
    <div className="grid2">
      <section aria-labelledby="conversations-title">
        <h2 id="conversations-title">Conversations</h2>
        <form
          className="stack"
          onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const other = (form.elements.namedItem("colleague") as HTMLSelectElement).value;
            void list.run(async () => {
              if (!other) throw new Error("Choose a colleague.");
              const conversation = await writeOnce("/api/v1/chat/direct", { body: { other_account_id: other } }, (o) =>
                must(session.api.POST("/api/v1/chat/direct", o)),
              );
              await loadList();
              await openConversation(conversation.conversation_id);
            });
          }}
        >
          <Select label="Start a conversation with" name="colleague" action={list} defaultValue="">
            <option value="" disabled>
              Choose a colleague…
            </option>
            {colleagues.map((s) => (
              <option key={s.account_id} value={s.account_id}>
                {s.display_name} ({s.role}
                {s.specialty ? `, ${s.specialty}` : ""})
              </option>
            ))}
          </Select>
          <button disabled={list.busy}>Open conversation</button>
        </form>
        <Status action={list} />
        {!loaded && <p className="busy">Loading conversations…</p>}
        {loaded && summaries.length === 0 && <p>No conversations yet.</p>}
        <ul className="conversations" aria-label="Conversation list">
          {summaries.map((s) => (
            <li key={s.conversation.conversation_id}>
              <button
                className={s.conversation.conversation_id === selected ? "selected" : "secondary"}
                aria-current={s.conversation.conversation_id === selected ? "true" : undefined}
                onClick={() => void list.run(() => openConversation(s.conversation.conversation_id))}
              >
                <span>{title(s.conversation)}</span>
                {s.unread > 0 && (
                  <span className="badge" role="img" aria-label={`${s.unread} unread`}>
                    {s.unread}
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
      </section>
      <section aria-labelledby="messages-title">
        <h2 id="messages-title">{current ? title(current) : "Messages"}</h2>
        {!selected && <p>Choose a conversation, or start one with a colleague.</p>}
        {selected && (
          <>
            <div className="messages" role="log" aria-label="Messages" aria-live="polite">
              {messages.length === 0 && <p className="hint">No messages yet.</p>}
              {messages.map((m) => {
                const mine = m.sender_id === me.account_id;
                const readers = mine ? readBy(m) : [];
                return (
                  <div key={m.message_id} className={mine ? "message mine" : "message"}>
                    <div className="meta">
                      {mine ? "You" : directory.name(m.sender_id)} · {when(m.sent_at)}
                    </div>
                    <div className="text">{m.text}</div>
                    {mine && (
                      <div className="receipt" role="note" aria-label="Read receipt">
                        {readers.length ? `Read by ${readers.join(", ")}` : "Sent"}
                      </div>
                    )}
                  </div>
                );
              })}
              <div ref={bottom} />
            </div>
            <form
              className="send"
              onSubmit={(e) => {
                e.preventDefault();
                const message = text.trim();
                const conversationId = selected;
                void send.run(async () => {
                  if (!message) throw new Error("Write a message first.");
                  await writeOnce(
                    "/api/v1/chat/conversations/{conversation_id}/messages",
                    {
                      params: { path: { conversation_id: conversationId } },
                      body: { text: message },
                    },
                    (o) => must(session.api.POST("/api/v1/chat/conversations/{conversation_id}/messages", o)),
                  );
                  discardText();
                  await loadNewer(conversationId);
                });
              }}
            >
              <label htmlFor="chat-text">Message</label>
              <textarea
                id="chat-text"
                name="text"
                rows={2}
                maxLength={4000}
                value={text}
                onChange={(e) => {
                  setText(e.target.value);
                  send.clear();
                }}
                onKeyDown={(e) => {
                  if (e.key === "Enter" && !e.shiftKey) {
                    e.preventDefault();
                    e.currentTarget.form?.requestSubmit();
                  }
                }}
              />
              <button disabled={send.busy}>{send.busy ? "Sending…" : "Send"}</button>
            </form>
            <Status action={send} />
          </>
        )}
      </section>
    </div>
  );
}
