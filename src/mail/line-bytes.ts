/**
 * Bytes that must never travel inside a value Postern puts into a line of
 * its own (a backend command, an auth_http header): CR and LF end the line
 * and let the rest run as a command of its own, NUL splits SASL PLAIN fields
 * and C strings. Every value from a client, the auth server or DNS is
 * checked with these before it is used in such a line.
 *
 * Rule: docs/behaviour/session.md#session-11-values-that-are-never-passed-on.
 */

/** True when `value` holds a CR, LF or NUL. */
export function hasLineBreakOrNul(value: Buffer | string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = typeof value === "string" ? value.charCodeAt(i) : value[i]!;
    if (c === 0x0d || c === 0x0a || c === 0x00) return true;
  }
  return false;
}

/** True when `value` holds any control byte (0x00-0x1F, DEL): TAB included. */
export function hasControlByte(value: Buffer | string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = typeof value === "string" ? value.charCodeAt(i) : value[i]!;
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Upper-cases ASCII letters only, as nginx compares command words and SASL
 * mechanism names (ngx_strncasecmp): a locale-aware upper-casing would turn
 * Latin-1 `\xdf` into `SS` and let bytes nginx refuses pass as a name.
 */
export function asciiUpper(b: Buffer): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c >= 0x61 && c <= 0x7a ? c - 0x20 : c);
  return s;
}
