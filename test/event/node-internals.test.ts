/** The Node.js internals Postern relies on: present here, and a clear start-up error when a release drops one. */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { checkNodeInternals } from "../../src/event/node-internals.js";

test("this Node.js has every internal Postern uses", () => {
  assert.doesNotThrow(() => checkNodeInternals());
});

test("without net._createServerHandle the check names it", (t) => {
  const host = net as unknown as { _createServerHandle?: unknown };
  const saved = host._createServerHandle;
  t.after(() => {
    host._createServerHandle = saved;
  });
  delete host._createServerHandle;
  assert.throws(() => checkNodeInternals(), /lacks net\._createServerHandle\(\), which Postern relies on/);
});

test("without TLSWrap.verifyError the check names it", (t) => {
  const s = new tls.TLSSocket(
    new Duplex({
      read() {},
      write(_c, _e, done) {
        done();
      },
    }),
    { isServer: true, secureContext: tls.createSecureContext({}) },
  );
  const proto = Object.getPrototypeOf((s as unknown as { _handle: object })._handle) as { verifyError?: unknown };
  s.destroy();
  const saved = proto.verifyError;
  t.after(() => {
    proto.verifyError = saved;
  });
  delete proto.verifyError;
  assert.throws(() => checkNodeInternals(), /lacks TLSSocket\._handle\.verifyError\(\)/);
});
