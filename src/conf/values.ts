/**
 * nginx's value syntaxes: sizes (`64k`), times (`1h30m`, `500ms`) and plain
 * numbers, read exactly as nginx reads them. Each returns null when invalid.
 */

const MAX = Number.MAX_SAFE_INTEGER;

/** An unsigned decimal number (digits only), as ngx_atoi reads it. */
export function parseNumber(text: string): number | null {
  if (!/^[0-9]+$/.test(text)) return null;
  const n = Number(text);
  return n <= MAX ? n : null;
}

/** A size: digits with an optional k/K (×1024) or m/M (×1048576). */
export function parseSize(text: string): number | null {
  if (text.length === 0) return null;
  const unit = text[text.length - 1]!;
  const scale = unit === "k" || unit === "K" ? 1024 : unit === "m" || unit === "M" ? 1024 * 1024 : 1;
  const digits = scale === 1 ? text : text.slice(0, -1);
  const n = parseNumber(digits);
  if (n === null || n * scale > MAX) return null;
  return n * scale;
}

const UNIT_SECONDS: Readonly<Record<string, number>> = {
  y: 365 * 86400, M: 30 * 86400, w: 7 * 86400, d: 86400, h: 3600, m: 60, s: 1,
};
/** Units in the order they must appear; a unit may not follow a smaller one. */
const UNIT_RANK: Readonly<Record<string, number>> = { y: 1, M: 2, w: 3, d: 4, h: 5, m: 6, s: 7, ms: 8 };

/**
 * The longest delay Node's timers wait: 2^31-1 ms, about 24.8 days. A
 * longer one fires after 1 ms (TimeoutOverflowWarning), so a configured
 * `timeout 30d` would end every session at once.
 */
export const MAX_TIMER_MS = 0x7fffffff;

/** A configured time (ms) as a timer's delay: as written, at most MAX_TIMER_MS (docs/compat.md). */
export function timerMs(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}

/**
 * A time. `inSeconds` selects nginx's second-resolution form (allows `y`,
 * forbids `ms`); otherwise the result is in milliseconds and neither `y`
 * nor `M` is accepted. A number without unit means seconds; components must
 * go from larger to smaller units; spaces may follow each component.
 */
export function parseTime(text: string, inSeconds: boolean): number | null {
  let rank = inSeconds ? 0 : UNIT_RANK.M!;
  let value = 0;
  let total = 0;
  let sawDigit = false;
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch >= "0" && ch <= "9") {
      value = value * 10 + (ch.charCodeAt(0) - 48);
      if (value > MAX) return null;
      sawDigit = true;
      i++;
      continue;
    }
    let unit = ch;
    i++;
    if (ch === "m" && text[i] === "s") {
      unit = "ms";
      i++;
    }
    let scaleMs: number;
    if (unit === "ms") {
      if (inSeconds || rank >= UNIT_RANK.ms!) return null;
      rank = UNIT_RANK.ms!;
      scaleMs = 1;
    } else if (unit === " ") {
      // a bare number followed by a space counts as seconds, and ends the units
      if (rank >= UNIT_RANK.s!) return null;
      rank = 9;
      scaleMs = 1000;
    } else {
      const r = UNIT_RANK[unit];
      if (r === undefined) return null;
      if (unit === "y" ? rank > 0 : rank >= r) return null;
      rank = r;
      scaleMs = UNIT_SECONDS[unit]! * 1000;
    }
    const scale = inSeconds ? scaleMs / 1000 : scaleMs;
    total += value * scale;
    if (total > MAX) return null;
    value = 0;
    while (text[i] === " ") i++;
  }
  if (!sawDigit) return null;
  total += value * (inSeconds ? 1 : 1000);
  return total > MAX ? null : total;
}
