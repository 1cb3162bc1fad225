// Small shared pieces: an async action with its loading, error and field-error state, and
// labelled fields that show the API's problem with that field right under it.
import { useCallback, useId, useState, type InputHTMLAttributes, type ReactNode, type SelectHTMLAttributes } from "react";

import { describe, fieldProblems } from "./api";

export interface Action {
  busy: boolean;
  error: string;
  message: string;
  problems: Record<string, string>;
  run: (action: () => Promise<string | void>) => Promise<void>;
  clear: () => void;
}

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [message, setMessage] = useState("");
  const [problems, setProblems] = useState<Record<string, string>>({});
  const run = useCallback(async (action: () => Promise<string | void>): Promise<void> => {
    setBusy(true);
    setError("");
    setMessage("");
    setProblems({});
    try {
      const done = await action();
      if (done) setMessage(done);
    } catch (exc) {
      setError(describe(exc));
      setProblems(fieldProblems(exc));
    } finally {
      setBusy(false);
    }
  }, []);
  const clear = useCallback(() => {
    setError("");
    setMessage("");
    setProblems({});
  }, []);
  return { busy, error, message, problems, run, clear };
}

export function Status({ action, busyText }: { action: Action; busyText?: string }): ReactNode {
  return (
    <div className="status" aria-live="polite">
      {action.busy && busyText && <p className="busy">{busyText}</p>}
      {action.error && (
        <p className="error" role="alert">
          {action.error}
        </p>
      )}
      {action.message && (
        <p className="ok" role="status">
          {action.message}
        </p>
      )}
    </div>
  );
}

type InputProps = InputHTMLAttributes<HTMLInputElement> & { label: string; name: string; action?: Action; hint?: string };

/** A labelled input; the API's problem with the field of the same name shows under it. */
export function Field({ label, name, action, hint, ...rest }: InputProps): ReactNode {
  const id = `${useId()}${name}`;
  const problem = action?.problems[name];
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        name={name}
        aria-invalid={problem ? true : undefined}
        aria-describedby={problem ? `${id}-problem` : hint ? `${id}-hint` : undefined}
        {...rest}
      />
      {hint && !problem && (
        <small id={`${id}-hint`} className="hint">
          {hint}
        </small>
      )}
      {problem && (
        <small id={`${id}-problem`} className="field-error" role="alert">
          {problem}
        </small>
      )}
    </div>
  );
}

type SelectProps = SelectHTMLAttributes<HTMLSelectElement> & { label: string; name: string; action?: Action; children: ReactNode };

export function Select({ label, name, action, children, ...rest }: SelectProps): ReactNode {
  const id = `${useId()}${name}`;
  const problem = action?.problems[name];
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} name={name} aria-invalid={problem ? true : undefined} {...rest}>
        {children}
      </select>
      {problem && (
        <small className="field-error" role="alert">
          {problem}
        </small>
      )}
    </div>
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
