import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";

import { Admin, ADMIN_TABS } from "./admin/Admin";
import { Physician, type ChartRequest } from "./physician/Physician";
import { Reception, RECEPTION_TABS } from "./reception/Reception";
import { age } from "./shared/age";
import { must, Session, signedClient } from "./shared/api/client";
import { type Me, type Role } from "./shared/api/types";
import { AppContext, type Context, useApp, useDirectory } from "./shared/context";
import { drafts, useKept } from "./shared/drafts";
import {
  forgetStored,
  loadStored,
  newKeyPair,
  parseKeyFile,
  rawPublicKey,
  saveStored,
  type StoredKey,
  unlock,
  wrapPrivateKey,
} from "./shared/keys";
import { DutyBadge } from "./shared/duty";
import { Live, type LiveEvent } from "./shared/live";
import { Chat } from "./shared/Chat";
import { fullName } from "./shared/patients";
import { clock, setClinicZone, when } from "./shared/time";
import { Field, field, Status, useAction } from "./shared/ui";

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
/** The last seconds before an auto-lock are counted down on screen. */
const WARN_S = 60;

export function App(): ReactNode {
  const [stored, setStored] = useState<StoredKey | null | undefined>(undefined);
  const [unlocked, setUnlocked] = useState<Context | null>(null);
  const [lockedReason, setLockedReason] = useState("");
  const [loadError, setLoadError] = useState("");
  const [lockIn, setLockIn] = useState<number | null>(null);
  const current = useRef<Context | null>(null);

  // Unsaved work lives only in memory: leaving or reloading the page would lose it, so ask.
  useEffect(() => {
    const ask = (event: BeforeUnloadEvent): void => {
      if (drafts.unsaved().length === 0) return;
      event.preventDefault();
      event.returnValue = ""; // older browsers need it set to show the question
    };
    window.addEventListener("beforeunload", ask);
    return () => window.removeEventListener("beforeunload", ask);
  }, []);

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
    setClinicZone(me.clinic_time_zone); // every screen shows the clinic's time, wherever the browser is
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
    let deadline = 0;
    const tell = (): void => {
      const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      setLockIn(left <= WARN_S ? left : null);
    };
    const reset = (): void => {
      window.clearTimeout(timer);
      deadline = Date.now() + limit;
      tell();
      timer = window.setTimeout(() => {
        const unsaved = drafts.unsaved().length > 0;
        lock(
          `Locked after ${Math.round(limit / 1000)} seconds without activity: enter your passphrase again.` +
            (unsaved ? " Your unsaved work is kept and comes back when you unlock." : ""),
        );
      }, limit);
    };
    ACTIVITY.forEach((e) => window.addEventListener(e, reset, { passive: true }));
    reset();
    const ticking = window.setInterval(tell, 1000);
    return () => {
      window.clearTimeout(timer);
      window.clearInterval(ticking);
      setLockIn(null);
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
            drafts.clear(); // the drafts were this key's owner's
            setStored(null);
          }}
        />
      </Shell>
    );
  return (
    <AppContext.Provider value={unlocked}>
      <Workspace
        stored={stored}
        lockIn={lockIn}
        onLock={() =>
          lock(
            drafts.unsaved().length ? "Locked. Your unsaved work is kept and comes back when you unlock." : "Locked.",
          )
        }
      />
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
    const account = await must(
      signedClient(() => pair.privateKey, "register").POST("/api/v1/register", {
        body: {
          token: field(form, "token"),
          username: field(form, "username"),
          display_name: field(form, "display_name"),
          public_key: publicKey,
          ...(specialty ? { specialty } : {}),
        },
      }),
    );
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
    await props.onRegistered(record, session, await must(session.api.GET("/api/v1/me")));
  }
  return (
    <section aria-labelledby="register-title">
      <h2 id="register-title">Register on this device</h2>
      <p>
        Your Ed25519 key pair is made here, in this browser; only its public half leaves it. The private key is kept in
        this browser only encrypted under your passphrase.
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
        <Field
          label="Repeat passphrase"
          name="confirm"
          type="password"
          required
          minLength={10}
          autoComplete="new-password"
        />
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
            const me = await must(session.api.GET("/api/v1/me"));
            props.onUnlocked(session, me);
          });
        }}
      >
        <Field
          label="Passphrase"
          name="passphrase"
          type="password"
          required
          autoComplete="current-password"
          autoFocus
        />
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
  administrator: [...ADMIN_TABS, "Chat"],
  receptionist: [...RECEPTION_TABS, "Chat"],
  physician: ["Calendar", "Chart", "Chat"],
};

function slug(tab: string): string {
  return "/" + tab.toLowerCase().replace(/\s+/g, "-");
}

function initialTab(tabs: string[]): string {
  return tabs.find((t) => slug(t) === window.location.pathname) ?? tabs[0];
}

interface Notice {
  id: number;
  event: LiveEvent;
}

/** Skip links of each section to its main forms (heading ids), after "Skip to content". */
const SKIP_TO: Record<string, [string, string][]> = {
  Patients: [["register-patient-title", "Register a patient"]],
  "receptionist:Calendar": [["slots-title", "the free times and booking"]],
  "physician:Calendar": [["my-calendar-title", "your calendar"]],
  Chart: [
    ["encounter-title", "Record an encounter"],
    ["rx-title", "E-prescription"],
  ],
  "Working time": [["working-time-title", "the working hours"]],
  Tokens: [["issue-title", "Issue a registration token"]],
  Catalog: [["add-medicine-title", "Add a medicine"]],
  Keyvault: [["unseal-title", "Unseal"]],
  "Bulk export": [["export-request-title", "Request a bulk export"]],
  Chat: [["messages-title", "the messages"]],
};

/** Focus the heading a skip link names (or the content, if that form is not on screen). */
function skipTo(event: { preventDefault: () => void }, id: string): void {
  event.preventDefault();
  const target = document.getElementById(id) ?? document.getElementById("content");
  if (!target) return;
  if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
  target.focus();
  target.scrollIntoView({ block: "start" });
}

/** How long "the connection is back" stays up before the banner clears. */
const BACK_SHOWN_MS = 6000;

/** A banner (a polite live region) when the live channel is lost after it was up, and
 * when it is back; screens read again what they show then (shared/context useLoad). */
function ConnectionBanner(): ReactNode {
  const { live } = useApp();
  const [state, setState] = useState<"up" | "lost" | "back">("up");
  const wasUp = useRef(live.connected);
  useEffect(() => {
    let timer: number | undefined;
    const stop = live.watchStatus((up) => {
      window.clearTimeout(timer);
      if (!up) {
        if (wasUp.current) setState("lost");
        return;
      }
      setState((s) => (s === "lost" ? "back" : s));
      wasUp.current = true;
      timer = window.setTimeout(() => setState((s) => (s === "back" ? "up" : s)), BACK_SHOWN_MS);
    });
    return () => {
      stop();
      window.clearTimeout(timer);
    };
  }, [live]);
  return (
    <div role="status" aria-live="polite" className="connection-region">
      {state === "lost" && (
        <p className="banner lost">
          The connection to the server is lost. Trying again… What you type stays here; nothing is sent until the
          connection is back.
        </p>
      )}
      {state === "back" && <p className="banner back">The connection is back. Every screen shows the latest.</p>}
    </div>
  );
}

function Workspace({
  stored,
  lockIn,
  onLock,
}: {
  stored: StoredKey;
  lockIn: number | null;
  onLock: () => void;
}): ReactNode {
  const { me, session, live } = useApp();
  const tabs = TABS[me.role];
  const [tab, setTab] = useState(() => initialTab(tabs));
  const [unread, setUnread] = useState(0);
  const [connected, setConnected] = useState(live.connected);
  const [notices, setNotices] = useState<Notice[]>([]);
  const [chart, setChart] = useKept<ChartRequest>("chart:open", () => ({ patientId: "", n: 0 }));
  const [patients, setPatients] = useState<Record<string, string>>({});
  const asked = useRef(new Set<string>());
  const directory = useDirectory(session);

  useEffect(() => live.watchStatus(setConnected), [live]);

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
        if (
          !noticeText(
            event,
            me,
            () => "",
            () => "",
          )
        )
          return;
        setNotices((list) => [{ id: Date.now() + Math.random(), event }, ...list].slice(0, 5));
        reloadDirectory(); // names of colleagues who registered since
        const patientId = typeof event.patient_id === "string" ? event.patient_id : "";
        if (me.role === "physician" && patientId && !asked.current.has(patientId)) {
          // Name the patient: an audited read of the demographics (the booking gives the care relationship).
          asked.current.add(patientId);
          must(session.api.GET("/api/v1/patients/{patient_id}", { params: { path: { patient_id: patientId } } })).then(
            (p) =>
              setPatients((known) => ({
                ...known,
                [patientId]: `${fullName(p.demographics)} (${age(p.demographics.date_of_birth)})`,
              })),
            () => asked.current.delete(patientId),
          );
        }
      }),
    [live, me, reloadDirectory, session],
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

  const openChart = useCallback(
    (patientId: string) => {
      setChart((c) => ({ patientId, n: c.n + 1 }));
      setTab("Chart");
      if (window.location.pathname !== slug("Chart"))
        window.history.pushState(null, "", slug("Chart") + window.location.search);
    },
    [setChart],
  );

  return (
    <>
      <a className="skip" href="#content">
        Skip to content
      </a>
      {(SKIP_TO[tab] ?? SKIP_TO[`${me.role}:${tab}`] ?? []).map(([id, label]) => (
        <a key={id} className="skip" href={`#${id}`} onClick={(e) => skipTo(e, id)}>
          Skip to {label}
        </a>
      ))}
      <header>
        <h1>Medihaven</h1>
        <nav aria-label="Sections">
          {tabs.map((name) => (
            <button key={name} aria-current={tab === name ? "page" : undefined} onClick={() => go(name)}>
              {name}
              {name === "Chat" && unread > 0 && (
                <span className="badge" role="img" aria-label={`${unread} unread`}>
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
          <DutyBadge />
          <span className={connected ? "dot on" : "dot"} title={connected ? "live updates on" : "live updates off"}>
            {connected ? "live" : "offline"}
          </span>
          <button className="secondary" onClick={exportKey} title="Download your wrapped key to move to another device">
            Export key
          </button>
          <button className="secondary" onClick={onLock}>
            Lock
          </button>
          {lockIn !== null && (
            <span className="countdown" role="timer" aria-label="Auto-lock countdown">
              Locks in {lockIn} s without activity
            </span>
          )}
        </div>
      </header>
      <ConnectionBanner />
      {notices.length > 0 && (
        <aside className="notices" aria-label="Notifications" aria-live="polite">
          {notices.map((n) => (
            <p key={n.id}>
              {noticeText(n.event, me, directory.name, (id) => patients[id] ?? "")}{" "}
              <button
                className="link"
                onClick={() => setNotices((l) => l.filter((x) => x.id !== n.id))}
                aria-label="Dismiss"
              >
                ×
              </button>
            </p>
          ))}
        </aside>
      )}
      <main id="content">
        {me.role === "administrator" && tab !== "Chat" && <Admin tab={tab} go={go} />}
        {me.role === "receptionist" && tab !== "Chat" && <Reception tab={tab} go={go} />}
        {me.role === "physician" && tab !== "Chat" && <Physician tab={tab} chart={chart} onOpenChart={openChart} />}
        <div hidden={tab !== "Chat"}>
          <Chat visible={tab === "Chat"} onUnread={setUnread} />
        </div>
      </main>
    </>
  );
}

/** What a live event tells this member of staff, in words ("" when it is not news to them:
 * the desk's calendars update by themselves; what one did oneself is no notice). */
export function noticeText(
  event: LiveEvent,
  me: { role: Role; account_id: string },
  name: (id: string) => string,
  patient: (id: string) => string,
): string {
  const by = typeof event.by === "string" ? event.by : "";
  if (by && by === me.account_id) return "";
  if (me.role === "physician" && event.type.startsWith("scheduling.appointment.")) {
    const what = event.type.slice("scheduling.appointment.".length);
    const at = typeof event.start === "string" ? when(event.start) : "";
    const time = typeof event.start === "string" ? clock(event.start) : "";
    const who = patient(String(event.patient_id ?? ""));
    const withWhom = who ? ` with ${who}` : "";
    if (what === "booked") return `New appointment booked${withWhom} for ${at}.`;
    if (what === "rescheduled") return `An appointment${withWhom} moved to ${at}.`;
    if (what === "cancelled") return `The appointment${withWhom} at ${at} was cancelled.`;
    if (what === "checked_in") return `${who || "Your patient"} has arrived for ${time}.`;
    if (what === "no_show") return `${who || "The patient"} of ${time} did not come (no-show).`;
    if (what === "started") return `The visit${withWhom} at ${time} was started.`;
    if (what === "completed") return `The visit${withWhom} at ${time} was finished.`;
  }
  if (me.role === "physician" && event.type === "scheduling.availability.changed") {
    return `Your working time was changed${by ? ` by ${name(by)}` : ""}: see your calendar.`;
  }
  if (me.role === "administrator" && event.type === "records.break_glass.opened") {
    return `Emergency access (break-glass) opened by ${name(String(event.physician_id))}: review it under Break-glass.`;
  }
  return "";
}
