import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";

import { Admin } from "./Admin";
import { call, Session, signedCall } from "./api";
import { Chat } from "./Chat";
import {
  forgetStored,
  loadStored,
  newKeyPair,
  parseKeyFile,
  rawPublicKey,
  saveStored,
  unlock,
  wrapPrivateKey,
  type StoredKey,
} from "./keys";
import { Live, type LiveEvent } from "./live";
import { Physician } from "./Physician";
import { Reception } from "./Reception";
import { AppContext, useApp, useDirectory, when, type Context, type Me, type Role } from "./shared";
import { Field, field, Status, useAction } from "./ui";

const DEFAULT_LOCK_S = 600;

/** Seconds of inactivity before the key is forgotten: the gateway's setting (a meta tag in
 * index.html, MEDIHAVEN_WEB_AUTO_LOCK_S), which `?lock=<seconds>` may shorten, never lengthen. */
export function autoLockSeconds(): number {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="medihaven-auto-lock-seconds"]');
  const configured = Number(meta?.content) > 0 ? Number(meta?.content) : DEFAULT_LOCK_S;
  const asked = Number(new URLSearchParams(window.location.search).get("lock"));
  return asked >= 2 && asked < configured ? asked : configured;
}

const ACTIVITY = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"] as const;

export function App(): ReactNode {
  const [stored, setStored] = useState<StoredKey | null | undefined>(undefined);
  const [unlocked, setUnlocked] = useState<Context | null>(null);
  const [lockedReason, setLockedReason] = useState("");
  const [loadError, setLoadError] = useState("");
  const current = useRef<Context | null>(null);

  useEffect(() => {
    loadStored().then(
      (value) => setStored(value ?? null),
      () => {
        setLoadError("This browser does not allow IndexedDB here, where the wrapped key is kept.");
        setStored(null);
      },
    );
  }, []);

  const lock = useCallback((reason: string) => {
    const context = current.current;
    current.current = null;
    if (context) {
      context.live.close(); // closes the WebSocket
      context.session.lock(); // drops the CryptoKey: nothing signs with it any more
    }
    setUnlocked(null);
    setLockedReason(reason);
  }, []);

  const open = useCallback((session: Session, me: Me) => {
    const live = new Live(session);
    const context = { session, me, live };
    current.current = context;
    setUnlocked(context);
    setLockedReason("");
    live.start();
  }, []);

  useEffect(() => {
    if (!unlocked) return;
    const limit = autoLockSeconds() * 1000;
    let timer = 0;
    const reset = (): void => {
      window.clearTimeout(timer);
      timer = window.setTimeout(
        () => lock(`Locked after ${Math.round(limit / 1000)} seconds without activity: enter your passphrase again.`),
        limit,
      );
    };
    ACTIVITY.forEach((e) => window.addEventListener(e, reset, { passive: true }));
    reset();
    return () => {
      window.clearTimeout(timer);
      ACTIVITY.forEach((e) => window.removeEventListener(e, reset));
    };
  }, [unlocked, lock]);

  useEffect(() => () => current.current?.live.close(), []);

  if (!window.isSecureContext || !globalThis.crypto?.subtle) {
    return (
      <Shell>
        <p className="error" role="alert">
          This page must be opened over HTTPS (or on this computer as localhost / 127.0.0.1): the browser only offers
          the cryptography that makes and keeps your key on a secure connection.
        </p>
      </Shell>
    );
  }
  if (stored === undefined) return <p role="status">Loading…</p>;
  if (stored === null)
    return (
      <Shell>
        {loadError && <p className="error">{loadError}</p>}
        <Register
          onRegistered={async (record, session, me) => {
            setStored(record);
            open(session, me);
          }}
          onImported={(record) => {
            setStored(record);
            setLockedReason("Key imported: unlock it with the passphrase you chose when you registered.");
          }}
        />
      </Shell>
    );
  if (!unlocked)
    return (
      <Shell>
        <Unlock
          stored={stored}
          reason={lockedReason}
          onUnlocked={open}
          onForget={async () => {
            await forgetStored();
            setStored(null);
          }}
        />
      </Shell>
    );
  return (
    <AppContext.Provider value={unlocked}>
      <Workspace stored={stored} onLock={() => lock("Locked.")} />
    </AppContext.Provider>
  );
}

function Shell({ children }: { children: ReactNode }): ReactNode {
  return (
    <>
      <header>
        <h1>Medihaven</h1>
      </header>
      <main className="narrow">{children}</main>
    </>
  );
}

function Register(props: {
  onRegistered: (record: StoredKey, session: Session, me: Me) => Promise<void>;
  onImported: (record: StoredKey) => void;
}): ReactNode {
  const action = useAction();
  async function submit(form: HTMLFormElement): Promise<string | void> {
    const passphrase = (form.elements.namedItem("passphrase") as HTMLInputElement).value;
    if (passphrase !== (form.elements.namedItem("confirm") as HTMLInputElement).value) {
      throw new Error("The two passphrases differ.");
    }
    const pair = await newKeyPair();
    const publicKey = await rawPublicKey(pair);
    const wrapped = await wrapPrivateKey(pair.privateKey, passphrase);
    const specialty = field(form, "specialty");
    const account = await signedCall<Me>(pair.privateKey, "register", "POST", "/api/v1/register", {
      token: field(form, "token"),
      username: field(form, "username"),
      display_name: field(form, "display_name"),
      public_key: publicKey,
      ...(specialty ? { specialty } : {}),
    });
    const record: StoredKey = {
      accountId: account.account_id,
      username: account.username,
      role: account.role,
      publicKey,
      baseUrl: window.location.origin,
      ...wrapped,
    };
    await saveStored(record);
    // From here on only the non-extractable key, unwrapped from what was stored, signs.
    const session = new Session(record.accountId, await unlock(record, passphrase));
    await props.onRegistered(record, session, account);
  }
  return (
    <section aria-labelledby="register-title">
      <h2 id="register-title">Register on this device</h2>
      <p>
        Your Ed25519 key pair is made here, in this browser; only its public half leaves it. The private key is
        kept in this browser only encrypted under your passphrase.
      </p>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          void action.run(() => submit(form));
        }}
      >
        <Field label="Registration token" name="token" action={action} required autoComplete="off" spellCheck={false} />
        <Field
          label="Username"
          name="username"
          action={action}
          required
          autoComplete="username"
          hint="Lower case letters, digits, . _ - (3 to 64 characters)"
        />
        <Field label="Display name" name="display_name" action={action} required autoComplete="name" />
        <Field label="Specialty (physicians, optional)" name="specialty" action={action} />
        <Field
          label="Passphrase"
          name="passphrase"
          type="password"
          action={action}
          required
          minLength={10}
          autoComplete="new-password"
          hint="At least 10 characters. It never leaves this browser; it cannot be recovered."
        />
        <Field label="Repeat passphrase" name="confirm" type="password" required minLength={10} autoComplete="new-password" />
        <button disabled={action.busy}>{action.busy ? "Registering…" : "Register"}</button>
      </form>
      <Status action={action} busyText="Making your key and registering…" />
      <ImportKey onImported={props.onImported} />
    </section>
  );
}

function ImportKey({ onImported }: { onImported: (record: StoredKey) => void }): ReactNode {
  const action = useAction();
  return (
    <details>
      <summary>Already registered elsewhere? Import your key file</summary>
      <p>Use the file you exported from your other device (it holds your key wrapped under your passphrase).</p>
      <Field
        label="Key file"
        name="keyfile"
        type="file"
        accept="application/json,.json"
        onChange={(e) => {
          const file = e.currentTarget.files?.[0];
          void action.run(async () => {
            if (!file) return;
            const record = parseKeyFile(await file.text());
            await saveStored(record);
            onImported(record);
          });
        }}
      />
      <Status action={action} />
    </details>
  );
}

function Unlock(props: {
  stored: StoredKey;
  reason: string;
  onUnlocked: (session: Session, me: Me) => void;
  onForget: () => void;
}): ReactNode {
  const action = useAction();
  const [confirmForget, setConfirmForget] = useState(false);
  return (
    <section aria-labelledby="unlock-title">
      <h2 id="unlock-title">Unlock</h2>
      {props.reason && (
        <p className="notice" role="status">
          {props.reason}
        </p>
      )}
      <p>
        This device holds the key of <strong>{props.stored.username}</strong> ({props.stored.role}).
      </p>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const input = form.elements.namedItem("passphrase") as HTMLInputElement;
          void action.run(async () => {
            const key = await unlock(props.stored, input.value);
            input.value = "";
            const session = new Session(props.stored.accountId, key);
            const me = await call<Me>(session, "GET", "/api/v1/me");
            props.onUnlocked(session, me);
          });
        }}
      >
        <Field label="Passphrase" name="passphrase" type="password" required autoComplete="current-password" autoFocus />
        <button disabled={action.busy}>{action.busy ? "Unlocking…" : "Unlock"}</button>
      </form>
      <Status action={action} />
      {confirmForget ? (
        <p>
          Forget the key on this device? Without an exported key file you would need a new registration token.{" "}
          <button className="danger" onClick={props.onForget}>
            Forget it
          </button>{" "}
          <button className="secondary" onClick={() => setConfirmForget(false)}>
            Keep it
          </button>
        </p>
      ) : (
        <p>
          <button className="secondary" onClick={() => setConfirmForget(true)}>
            Forget this device's key…
          </button>
        </p>
      )}
    </section>
  );
}

const TABS: Record<Role, string[]> = {
  administrator: ["Tokens", "Staff", "Keyvault", "Audit", "Break-glass", "Chat"],
  receptionist: ["Patients", "Calendar", "Chat"],
  physician: ["Calendar", "Chart", "Chat"],
};

function slug(tab: string): string {
  return "/" + tab.toLowerCase();
}

function initialTab(tabs: string[]): string {
  return tabs.find((t) => slug(t) === window.location.pathname) ?? tabs[0];
}

interface Notice {
  id: number;
  event: LiveEvent;
}

function Workspace({ stored, onLock }: { stored: StoredKey; onLock: () => void }): ReactNode {
  const { me, session, live } = useApp();
  const tabs = TABS[me.role];
  const [tab, setTab] = useState(() => initialTab(tabs));
  const [unread, setUnread] = useState(0);
  const [connected, setConnected] = useState(live.connected);
  const [notices, setNotices] = useState<Notice[]>([]);
  const [chartFor, setChartFor] = useState("");
  const directory = useDirectory(session);

  useEffect(() => {
    live.onStatus = setConnected;
    return () => {
      live.onStatus = () => undefined;
    };
  }, [live]);

  useEffect(() => {
    const onPop = (): void => setTab(initialTab(tabs));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, [tabs]);

  const go = (name: string): void => {
    setTab(name);
    if (window.location.pathname !== slug(name)) {
      window.history.pushState(null, "", slug(name) + window.location.search);
    }
  };

  const reloadDirectory = directory.reload;
  useEffect(
    () =>
      live.subscribe((event: LiveEvent) => {
        if (!noticeText(event, me.role, () => "")) return;
        setNotices((list) => [{ id: Date.now() + Math.random(), event }, ...list].slice(0, 5));
        reloadDirectory(); // names of colleagues who registered since
      }),
    [live, me.role, reloadDirectory],
  );

  const exportKey = (): void => {
    const blob = new Blob([JSON.stringify(stored, null, 2)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `medihaven-key-${me.username}.json`;
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  };

  const openChart = useCallback((patientId: string) => {
    setChartFor(patientId);
    setTab("Chart");
    window.history.pushState(null, "", slug("Chart") + window.location.search);
  }, []);

  return (
    <>
      <a className="skip" href="#content">
        Skip to content
      </a>
      <header>
        <h1>Medihaven</h1>
        <nav aria-label="Sections">
          {tabs.map((name) => (
            <button key={name} aria-current={tab === name ? "page" : undefined} onClick={() => go(name)}>
              {name}
              {name === "Chat" && unread > 0 && (
                <span className="badge" aria-label={`${unread} unread`}>
                  {unread}
                </span>
              )}
            </button>
          ))}
        </nav>
        <div className="who">
          <span>
            {me.display_name} · {me.role}
          </span>
          <span className={connected ? "dot on" : "dot"} title={connected ? "live updates on" : "live updates off"}>
            {connected ? "live" : "offline"}
          </span>
          <button className="secondary" onClick={exportKey} title="Download your wrapped key to move to another device">
            Export key
          </button>
          <button className="secondary" onClick={onLock}>
            Lock
          </button>
        </div>
      </header>
      {notices.length > 0 && (
        <aside className="notices" aria-label="Notifications" aria-live="polite">
          {notices.map((n) => (
            <p key={n.id}>
              {noticeText(n.event, me.role, directory.name)}{" "}
              <button className="link" onClick={() => setNotices((l) => l.filter((x) => x.id !== n.id))} aria-label="Dismiss">
                ×
              </button>
            </p>
          ))}
        </aside>
      )}
      <main id="content">
        {me.role === "administrator" && tab !== "Chat" && <Admin tab={tab} />}
        {me.role === "receptionist" && tab !== "Chat" && <Reception tab={tab} go={go} />}
        {me.role === "physician" && tab !== "Chat" && <Physician tab={tab} chartFor={chartFor} onOpenChart={openChart} />}
        <div hidden={tab !== "Chat"}>
          <Chat visible={tab === "Chat"} onUnread={setUnread} />
        </div>
      </main>
    </>
  );
}

function noticeText(event: LiveEvent, role: Role, name: (id: string) => string): string {
  if (role === "physician" && event.type.startsWith("scheduling.appointment.")) {
    const what = event.type.split(".").pop();
    const at = typeof event.start === "string" ? when(event.start) : "";
    if (what === "booked") return `New appointment booked for ${at}.`;
    if (what === "rescheduled") return `An appointment moved to ${at}.`;
    if (what === "cancelled") return `The appointment at ${at} was cancelled.`;
  }
  if (role === "administrator" && event.type === "records.break_glass.opened") {
    return `Emergency access (break-glass) opened by ${name(String(event.physician_id))}: review it under Break-glass.`;
  }
  return "";
}
