// Search as you type: a combobox whose options come from a debounced signed search (ICD-10
// diagnoses, drug vocabulary, medicine catalog). Arrow keys move, Enter picks, Escape
// closes; a late answer to an older query is dropped.
import { useEffect, useId, useLayoutEffect, useRef, useState, type ReactNode } from "react";

import { describe } from "../shared/problems";

export interface TypeaheadProps<T> {
  label: string;
  name: string;
  query: string;
  onQuery: (query: string) => void;
  search: (query: string) => Promise<T[]>;
  optionKey: (option: T) => string;
  optionLabel: (option: T) => ReactNode;
  optionHint?: (option: T) => string;
  onPick: (option: T) => void;
  minLength?: number;
  placeholder?: string;
  hint?: string;
  /** Said when a search finds nothing. */
  none: string;
  debounceMs?: number;
  problem?: string;
}

export function Typeahead<T>(props: TypeaheadProps<T>): ReactNode {
  const { query, minLength = 2, debounceMs = 250 } = props;
  const id = `${useId()}${props.name}`;
  const [options, setOptions] = useState<T[]>([]);
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const [state, setState] = useState<"idle" | "searching" | "done" | "error">("idle");
  const [error, setError] = useState("");
  const search = useRef(props.search);
  useLayoutEffect(() => {
    search.current = props.search;
  });
  const asked = useRef(0);

  useEffect(() => {
    const q = query.trim();
    if (q.length < minLength) {
      asked.current += 1;
      // eslint-disable-next-line react-hooks/set-state-in-effect -- a query too short clears what an older one found
      setOptions([]);
      setState("idle");
      setError("");
      return;
    }
    const n = ++asked.current;
    const timer = window.setTimeout(() => {
      setState("searching");
      search.current(q).then(
        (found) => {
          if (n !== asked.current) return;
          setOptions(found);
          setActive(0);
          setState("done");
          setError("");
        },
        (exc: unknown) => {
          if (n !== asked.current) return;
          setOptions([]);
          setState("error");
          setError(describe(exc));
        },
      );
    }, debounceMs);
    return () => window.clearTimeout(timer);
  }, [query, minLength, debounceMs]);

  const pick = (option: T): void => {
    props.onPick(option);
    setOpen(false);
  };
  const shown = open && options.length > 0;
  const listId = `${id}-options`;
  const optionId = (i: number): string => `${id}-option-${i}`;
  const problem = props.problem || (state === "error" ? error : "");
  return (
    <div className="field typeahead">
      <label htmlFor={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        role="combobox"
        aria-expanded={shown}
        aria-controls={listId}
        aria-autocomplete="list"
        aria-activedescendant={shown ? optionId(active) : undefined}
        aria-invalid={problem ? true : undefined}
        autoComplete="off"
        spellCheck={false}
        placeholder={props.placeholder}
        value={query}
        onChange={(e) => {
          props.onQuery(e.target.value);
          setOpen(true);
        }}
        onFocus={() => setOpen(true)}
        onBlur={() => setOpen(false)}
        onKeyDown={(e) => {
          if (e.key === "ArrowDown" && options.length) {
            e.preventDefault();
            setOpen(true);
            setActive((i) => (i + 1) % options.length);
          } else if (e.key === "ArrowUp" && options.length) {
            e.preventDefault();
            setActive((i) => (i - 1 + options.length) % options.length);
          } else if (e.key === "Enter" && shown) {
            e.preventDefault();
            pick(options[active]);
          } else if (e.key === "Escape") {
            setOpen(false);
          }
        }}
      />
      <ul id={listId} role="listbox" aria-label="Suggestions" className="options" hidden={!shown}>
        {options.map((option, i) => (
          <li
            key={props.optionKey(option)}
            id={optionId(i)}
            role="option"
            aria-selected={i === active}
            className={i === active ? "active" : undefined}
            onMouseDown={(e) => e.preventDefault()}
            onClick={() => pick(option)}
          >
            {props.optionLabel(option)}
            {props.optionHint && <div className="hint">{props.optionHint(option)}</div>}
          </li>
        ))}
      </ul>
      {state === "searching" && <small className="busy">Searching…</small>}
      {state === "done" && options.length === 0 && open && <small className="hint">{props.none}</small>}
      {props.hint && state !== "searching" && !problem && !(state === "done" && options.length === 0 && open) && (
        <small className="hint">{props.hint}</small>
      )}
      {problem && (
        <small className="field-error" role="alert">
          {problem}
        </small>
      )}
    </div>
  );
}
