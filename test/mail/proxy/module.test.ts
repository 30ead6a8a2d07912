import { test } from "node:test";
import assert from "node:assert/strict";
import type { AnyDirective, SetContext } from "../../../src/conf/directive.js";
import { ConfError } from "../../../src/core/errors.js";
import {
  proxyModule,
  proxyBuffer,
  proxyFlag,
  proxyPassErrorMessage,
  proxyProtocol,
  proxySmtpAuth,
  proxyTimeout,
  xclient,
} from "../../../src/mail/proxy/module.js";

const cx = { name: "x", location: { file: "t.conf", line: 1 }, warn: () => {} } as unknown as SetContext;

function parse(d: AnyDirective, arg: string): unknown {
  return d.parse([arg], undefined, cx);
}
function error(d: AnyDirective, arg: string): string {
  try {
    d.parse([arg], undefined, cx);
  } catch (e) {
    assert.ok(e instanceof ConfError);
    return e.message;
  }
  throw new Error("no error");
}

test("the table has the seven directives with nginx's defaults", () => {
  assert.deepEqual(
    proxyModule.directives.map((d): unknown[] => [d.name, d.defaultValue, d.merge, d.duplicates]),
    [
      ["proxy", false, "scalar", "error"],
      ["proxy_buffer", 4096, "scalar", "error"],
      ["proxy_pass_error_message", false, "scalar", "error"],
      ["proxy_protocol", "off", "scalar", "error"],
      ["proxy_smtp_auth", false, "scalar", "error"],
      ["proxy_timeout", 86400000, "scalar", "error"],
      ["xclient", true, "scalar", "error"],
    ],
  );
  for (const d of proxyModule.directives) assert.deepEqual(d.contexts, ["mail", "server"]);
});

test("values and error messages", () => {
  assert.equal(parse(proxyFlag, "on"), true);
  assert.equal(parse(proxyPassErrorMessage, "ON"), true);
  assert.equal(error(xclient, "yes"), 'invalid value "yes" in "xclient" directive, it must be "on" or "off"');
  assert.equal(parse(proxyBuffer, "8k"), 8192);
  assert.equal(error(proxyBuffer, "1g"), '"proxy_buffer" directive invalid value');
  assert.equal(parse(proxyTimeout, "1m 30s"), 90000);
  assert.equal(error(proxyTimeout, "x"), '"proxy_timeout" directive invalid value');
  assert.equal(parse(proxyProtocol, "V2"), "v2");
  assert.equal(parse(proxyProtocol, "on"), "on");
  assert.equal(error(proxyProtocol, "v3"), 'invalid value "v3"');
  assert.equal(parse(proxySmtpAuth, "off"), false);
});
