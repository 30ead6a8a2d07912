/**
 * The session's cancellation behaves like the AbortSignal it replaces on
 * the hot path: listeners run once, on the first cancel; removed listeners
 * and listeners added afterwards never run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Cancellation } from "../../src/mail/cancel.js";

test("cancel runs each listener once; removed and late listeners never run", () => {
  const c = new Cancellation();
  const ran: string[] = [];
  const kept = (): void => void ran.push("kept");
  const removed = (): void => void ran.push("removed");
  c.addEventListener("abort", kept, { once: true });
  c.addEventListener("abort", removed, { once: true });
  c.removeEventListener("abort", removed);
  assert.equal(c.aborted, false);
  c.cancel();
  c.cancel();
  assert.equal(c.aborted, true);
  c.addEventListener("abort", () => void ran.push("late"));
  assert.deepEqual(ran, ["kept"]);
});
