/**
 * The time variables of the access log (access-log/variables.ts): nginx's
 * formats, the per-second cache of $time_local and $time_iso8601 (a new
 * second, or a clock stepped back, gives a new string) and the
 * millisecond values of $msec and $session_time.
 */
process.env.TZ = "Europe/Paris";
import { test } from "node:test";
import assert from "node:assert/strict";
import { VARIABLES } from "../../../src/mail/access-log/variables.js";
import type { SessionFacts } from "../../../src/mail/session-events.js";

const get = (name: string, facts: Partial<SessionFacts>, now: Date): string | undefined => VARIABLES.get(name)!(facts as SessionFacts, now.getTime());

test("$time_local and $time_iso8601 in nginx's formats, made again when the second changes", () => {
  const at = Date.UTC(2026, 11, 2, 10, 12, 0, 250);
  assert.equal(get("time_local", {}, new Date(at)), "02/Dec/2026:11:12:00 +0100");
  assert.equal(get("time_local", {}, new Date(at + 700)), "02/Dec/2026:11:12:00 +0100");
  assert.equal(get("time_local", {}, new Date(at + 750)), "02/Dec/2026:11:12:01 +0100");
  assert.equal(get("time_iso8601", {}, new Date(at + 750)), "2026-12-02T11:12:01+01:00");
  // the clock stepped back
  assert.equal(get("time_local", {}, new Date(at - 3_600_000)), "02/Dec/2026:10:12:00 +0100");
  assert.equal(get("time_iso8601", {}, new Date(at - 3_600_000)), "2026-12-02T10:12:00+01:00");
  // summer time
  assert.equal(get("time_local", {}, new Date(Date.UTC(2026, 6, 1, 0, 0, 5))), "01/Jul/2026:02:00:05 +0200");
});

test("$msec and $session_time with three decimals", () => {
  const now = new Date(1764670320007);
  assert.equal(get("msec", {}, now), "1764670320.007");
  assert.equal(get("session_time", { startMs: 1764670320007 - 61_230 }, now), "61.230");
  assert.equal(get("session_time", { startMs: 1764670320007 - 5 }, now), "0.005");
  assert.equal(get("session_time", { startMs: 1764670320007 - 99 }, now), "0.099");
  // a clock stepped back during the session: never negative
  assert.equal(get("session_time", { startMs: 1764670320007 + 10 }, now), "0.000");
});
