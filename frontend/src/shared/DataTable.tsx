// The one data table of every screen: a labelled table with its loading, failed and empty
// states, which can never be mistaken for one another (a failed load is not "nothing").
import type { HTMLAttributes, ReactNode, ThHTMLAttributes } from "react";

export interface Column<T> {
  /** Column header (text, or a sort button). */
  header: ReactNode;
  cell: (row: T) => ReactNode;
  /** Attributes of the header cell (aria-sort …). */
  th?: ThHTMLAttributes<HTMLTableCellElement>;
  className?: string | ((row: T) => string);
}

export interface DataTableProps<T> {
  /** The table's accessible name. */
  label: string;
  columns: Column<T>[];
  /** null while loading (or when the load failed: then `error` says why). */
  rows: T[] | null;
  rowKey: (row: T) => string;
  /** Said in the table when there are no rows. */
  empty: ReactNode;
  /** What is loading ("patients"). */
  loading?: string;
  /** Why the rows could not be loaded. */
  error?: string;
  rowProps?: (row: T) => HTMLAttributes<HTMLTableRowElement> & Record<`data-${string}`, string>;
}

export function DataTable<T>(props: DataTableProps<T>): ReactNode {
  const { rows, columns } = props;
  if (rows === null) {
    return props.error ? (
      <p className="error" role="alert">
        {props.label} could not be loaded: {props.error}
      </p>
    ) : (
      <p className="busy" role="status">
        Loading {props.loading ?? props.label.toLowerCase()}…
      </p>
    );
  }
  return (
    <div className="scroll">
      <table aria-label={props.label}>
        <thead>
          <tr>
            {columns.map((c, i) => (
              <th key={i} scope="col" {...c.th}>
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={props.rowKey(row)} {...props.rowProps?.(row)}>
              {columns.map((c, i) => (
                <td key={i} className={typeof c.className === "function" ? c.className(row) : c.className}>
                  {c.cell(row)}
                </td>
              ))}
            </tr>
          ))}
          {rows.length === 0 && (
            <tr>
              <td colSpan={columns.length}>{props.empty}</td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
