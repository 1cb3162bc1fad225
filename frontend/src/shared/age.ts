// A patient's age as a clinician reads it: years, months for infants, days for the newborn.

function parts(day: string): [number, number, number] {
  const [y, m, d] = day.split("-").map(Number);
  return [y, m, d];
}

function localDay(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

/** Age on a day (both YYYY-MM-DD): years from 2 on, months for infants, days for the
 * newborn; "" for a birth date after `on` or not a date. */
export function ageOn(dateOfBirth: string, on: string): string {
  const [by, bm, bd] = parts(dateOfBirth);
  const [ty, tm, td] = parts(on);
  if ([by, bm, bd, ty, tm, td].some((n) => !Number.isFinite(n)) || dateOfBirth > on) return "";
  let months = (ty - by) * 12 + (tm - bm);
  if (td < bd) months -= 1;
  if (months >= 24) return plural(Math.floor(months / 12), "year");
  if (months >= 1) return plural(months, "month");
  const days = Math.round((Date.UTC(ty, tm - 1, td) - Date.UTC(by, bm - 1, bd)) / 86_400_000);
  return days === 0 ? "newborn" : plural(days, "day");
}

/** Age today (the browser's day). */
export function age(dateOfBirth: string): string {
  return ageOn(dateOfBirth, localDay(new Date()));
}
