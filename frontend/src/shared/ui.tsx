// Small shared pieces: an async action with its loading, error and field-problem state, and
// labelled fields that show the API's problem with that field right under it, as a sentence
// (problems.ts). Each problem is shown once: under the field that shows it, or else in the
// action's status line.
import {
  useCallback,
  useEffect,
  useId,
  useRef,
  useState,
  type InputHTMLAttributes,
  type ReactNode,
  type SelectHTMLAttributes,
  type TextareaHTMLAttributes,
} from "react";

import { describe, problemFor, problemsOf, unshown, type Problem } from "./problems";

/** The names of the fields on screen that show an action's problems. */
class Shown {
  #names = new Map<string, number>();

  add(name: string): () => void {
    this.#names.set(name, (this.#names.get(name) ?? 0) + 1);
    return () => {
      const left = (this.#names.get(name) ?? 1) - 1;
      if (left > 0) this.#names.set(name, left);
      else this.#names.delete(name);
    };
  }

  names(): string[] {
    return [...this.#names.keys()];
  }
}

export interface Action {
  busy: boolean;
  error: string;
  message: string;
  problems: Problem[];
  /** The sentence under the field named `name`, if the last run's refusal has one. */
  problem: (name: string) => string | undefined;
  shown: Shown;
  run: (action: () => Promise<string | void>) => Promise<void>;
  clear: () => void;
}

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [message, setMessage] = useState("");
  const [problems, setProblems] = useState<Problem[]>([]);
  const [shown] = useState(() => new Shown());
  const run = useCallback(async (action: () => Promise<string | void>): Promise<void> => {
    setBusy(true);
    setError("");
    setMessage("");
    setProblems([]);
    try {
      const done = await action();
      if (done) setMessage(done);
    } catch (exc) {
      setError(describe(exc));
      setProblems(problemsOf(exc));
    } finally {
      setBusy(false);
    }
  }, []);
  const clear = useCallback(() => {
    setError("");
    setMessage("");
    setProblems([]);
  }, []);
  const problem = useCallback((name: string) => problemFor(problems, name, shown.names())?.sentence, [problems, shown]);
  return { busy, error, message, problems, problem, shown, run, clear };
}

/** Registers `name` as shown on screen for `action` while the caller is mounted, and
 * gives the problem's sentence for it. */
export function useProblem(action: Action | undefined, name: string): string | undefined {
  const shown = action?.shown;
  useEffect(() => shown?.add(name), [shown, name]);
  return action?.problem(name);
}

export function Status({ action, busyText }: { action: Action; busyText?: string }): ReactNode {
  const rest = action.problems.length ? unshown(action.problems, action.shown.names()) : [];
  const fieldsSay = action.problems.length > rest.length;
  const error = action.error
    ? [
        fieldsSay
          ? rest.length
            ? "Some entries need correcting (see under the fields):"
            : "Some entries need correcting: see the messages under the fields."
          : rest.length
            ? ""
            : action.error,
        ...rest.map((p) => p.sentence),
      ]
        .filter(Boolean)
        .join(" ")
    : "";
  const result = useRef<HTMLParagraphElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const said = error || action.message;
  // Focus moves to an action's result when it was left on nothing (the button is disabled
  // while busy, so focus falls back to the page): the first field in error when a field
  // shows the refusal, else the message or the refusal; a screen reader keeps its place.
  // Never taken from a field or button the user is on.
  useEffect(() => {
    const on = document.activeElement;
    if (!said || (on !== null && on !== document.body)) return;
    const scope = box.current?.closest("form, [role='region'], section, .card") ?? null;
    const field = fieldsSay ? scope?.querySelector<HTMLElement>("[aria-invalid='true']") : null;
    (field ?? result.current)?.focus();
  }, [said, fieldsSay]);
  return (
    <div className="status" aria-live="polite" ref={box}>
      {action.busy && busyText && <p className="busy">{busyText}</p>}
      {error && (
        <p className="error" role="alert" tabIndex={-1} ref={result}>
          {error}
        </p>
      )}
      {action.message && (
        <p className="ok" role="status" tabIndex={-1} ref={action.message && !error ? result : undefined}>
          {action.message}
        </p>
      )}
    </div>
  );
}

function Problem({ id, text }: { id: string; text: string }): ReactNode {
  return (
    <small id={id} className="field-error" role="alert">
      {text}
    </small>
  );
}

/** A labelled control's id, the problem it shows (`shows`, for `action`) and the ARIA
 * attributes that tie the control to that problem, or else to its hint. */
function useControl(name: string, action: Action | undefined, shows: string, hint: string | undefined) {
  const id = `${useId()}${name}`;
  const problem = useProblem(action, shows);
  const aria = {
    "aria-invalid": problem ? true : undefined,
    "aria-describedby": problem ? `${id}-problem` : hint ? `${id}-hint` : undefined,
  } as const;
  return { id, problem, aria };
}

/** The frame of a labelled control: its label, then the control, then its hint or its problem. */
function Labelled(props: {
  className: string;
  id: string;
  label: string;
  hint?: string;
  problem: string | undefined;
  children: ReactNode;
}): ReactNode {
  const { id, hint, problem } = props;
  return (
    <div className={props.className}>
      <label htmlFor={id}>{props.label}</label>
      {props.children}
      {hint && !problem && (
        <small id={`${id}-hint`} className="hint">
          {hint}
        </small>
      )}
      {problem && <Problem id={`${id}-problem`} text={problem} />}
    </div>
  );
}

type InputProps = InputHTMLAttributes<HTMLInputElement> & {
  label: string;
  name: string;
  action?: Action;
  hint?: string;
  /** The problem key this field shows, when it is not its name. */
  shows?: string;
};

/** A labelled input; the API's problem with the field of the same name shows under it. */
export function Field({ label, name, action, hint, shows, ...rest }: InputProps): ReactNode {
  const { id, problem, aria } = useControl(name, action, shows ?? name, hint);
  return (
    <Labelled className="field" id={id} label={label} hint={hint} problem={problem}>
      <input id={id} name={name} {...aria} {...rest} />
    </Labelled>
  );
}

type TextAreaProps = TextareaHTMLAttributes<HTMLTextAreaElement> & {
  label: string;
  name: string;
  action?: Action;
  hint?: string;
};

/** A labelled multi-line field (notes, reasons), with the API's problem under it. */
export function TextArea({ label, name, action, hint, ...rest }: TextAreaProps): ReactNode {
  const { id, problem, aria } = useControl(name, action, name, hint);
  return (
    <Labelled className="field wide" id={id} label={label} hint={hint} problem={problem}>
      <textarea id={id} name={name} rows={3} {...aria} {...rest} />
    </Labelled>
  );
}

type SelectProps = SelectHTMLAttributes<HTMLSelectElement> & {
  label: string;
  name: string;
  action?: Action;
  children: ReactNode;
};

export function Select({ label, name, action, children, ...rest }: SelectProps): ReactNode {
  const { id, problem, aria } = useControl(name, action, name, undefined);
  return (
    <Labelled className="field" id={id} label={label} problem={problem}>
      <select id={id} name={name} {...aria} {...rest}>
        {children}
      </select>
    </Labelled>
  );
}

/** The draft's keys whose values are text (what a field can edit). */
type TextKeys<D> = { [K in keyof D]-?: D[K] extends string ? K : never }[keyof D] & string;

/** Binds fields to a draft: `<Field label="Dose" {...bind("dose")} />` gives the field its
 * name, the draft's value under that name, a change handler that writes it back with
 * `onChange`, and the action whose problems it shows. */
export function bindTo<D>(draft: D, onChange: (draft: D) => void, action: Action) {
  return (name: TextKeys<D>) => ({
    name,
    value: draft[name] as string,
    onChange: (e: { target: { value: string } }) => onChange({ ...draft, [name]: e.target.value }),
    action,
  });
}

/** A vocabulary's value in words: oral_solution, "oral solution". */
export const words = (value: string): string => value.replace(/_/g, " ");

/** One option per value of a vocabulary, shown in words. */
export function WordOptions({ values }: { values: readonly string[] }): ReactNode {
  return values.map((v) => (
    <option key={v} value={v}>
      {words(v)}
    </option>
  ));
}

/** Terms and what they say, in a description list; the empty ones are left out. */
export function Terms({ className, rows }: { className: string; rows: [string, ReactNode][] }): ReactNode {
  return (
    <dl className={className}>
      {rows
        .filter(([, value]) => value !== "")
        .map(([label, value]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
    </dl>
  );
}

export function field(form: HTMLFormElement, name: string): string {
  const element = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | null;
  return element?.value.trim() ?? "";
}

export function checked(form: HTMLFormElement, name: string): boolean {
  const element = form.elements.namedItem(name) as HTMLInputElement | null;
  return element?.checked ?? false;
}

/** A number field, or undefined when it is empty. */
export function numberField(form: HTMLFormElement, name: string): number | undefined {
  const value = field(form, name);
  return value === "" ? undefined : Number(value);
}

export function Loading({ what }: { what: string }): ReactNode {
  return (
    <p className="busy" role="status">
      Loading {what}…
    </p>
  );
}
