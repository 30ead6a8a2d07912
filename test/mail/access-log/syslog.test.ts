/**
 * An access log sent to syslog: each line one datagram, the line's bytes as
 * they are (escape=json and escape=none leave 8-bit bytes, such as a
 * Latin-1 login, unescaped: they must not turn into U+FFFD on the way).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { parseSyslog } from "../../../src/core/error-log-conf.js";
import { AccessLogSyslog } from "../../../src/mail/access-log/writer.js";

test("access_log syslog: one datagram per line, severity info, the line's 8-bit bytes unchanged", async () => {
  const rx = createSocket("udp4");
  rx.bind(0, "127.0.0.1");
  await once(rx, "listening");
  const writer = new AccessLogSyslog(parseSyslog(`server=127.0.0.1:${rx.address().port},tag=mail,nohostname`));
  try {
    const got = once(rx, "message") as Promise<[Buffer]>;
    // a byte string: "josé" in Latin-1 (one byte 0xE9), then a lone 0xFF
    writer.write('{"login":"jos\xe9","x":"\xff"}');
    const [datagram] = await got;
    // facility local7 (23) * 8 + info (6)
    assert.match(datagram.toString("latin1"), /^<190>\w{3} [ \d]\d \d\d:\d\d:\d\d mail: /);
    assert.ok(datagram.subarray(datagram.length - 24).equals(Buffer.from('{"login":"jos\xe9","x":"\xff"}', "latin1")), datagram.toString("latin1"));
  } finally {
    writer.close();
    rx.close();
  }
});
