// Number, size and time formatting for display (one place, so every screen agrees).

export function number(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  return Number(value).toLocaleString("en-GB", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function integer(value) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-GB", { maximumFractionDigits: 0 });
}

export function percent(value) {
  if (value === null || value === undefined) return "–";
  return `${(Number(value) * 100).toFixed(1)} %`;
}

export function bytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

export function time(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function shortId(id) {
  return String(id || "").slice(0, 8);
}
