/**
 * Reading Node's serialized TLS sessions (OpenSSL's SSL_SESSION in DER)
 * just far enough to tell what they are: the session id, and the protocol
 * version. A session that comes back from the shared store is checked
 * here before OpenSSL sees it.
 */

/**
 * The first four fields of Node's serialized SSL_SESSION (ASN.1 SEQUENCE:
 * version, ssl_version, cipher, session_id), as raw contents.
 */
function sessionFields(der: Buffer): Buffer[] | undefined {
  let pos = 0;
  const header = (): { tag: number; len: number } | undefined => {
    if (pos + 2 > der.length) return undefined;
    const tag = der[pos++]!;
    let len = der[pos++]!;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n > 4 || pos + n > der.length) return undefined;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[pos++]!;
    }
    return { tag, len };
  };
  if (header()?.tag !== 0x30) return undefined;
  const fields: Buffer[] = [];
  for (let field = 0; field < 4; field++) {
    const h = header();
    if (!h || pos + h.len > der.length) return undefined;
    if ((field < 2 && h.tag !== 0x02) || (field >= 2 && h.tag !== 0x04)) return undefined;
    fields.push(der.subarray(pos, pos + h.len));
    pos += h.len;
  }
  return fields;
}

/** The session id inside Node's serialized SSL_SESSION. */
export function sessionIdOf(der: Buffer): Buffer | undefined {
  return sessionFields(der)?.[3];
}

/**
 * True for a TLS 1.3 session. Those resume only through a ticket (PSK);
 * the session id a TLS 1.3 ClientHello carries is random (RFC 8446 4.1.2),
 * so storing them in an id-keyed cache would only cost memory and IPC.
 */
export function isTls13Session(der: Buffer): boolean {
  const version = sessionFields(der)?.[1];
  return version !== undefined && version.length === 2 && version.readUInt16BE(0) === 0x0304;
}

/**
 * True for a TLS 1.2 session whose id is `id`: what a session-id lookup may
 * hand to OpenSSL. Anything else (another version, another id, bytes that
 * are no SSL_SESSION) is a miss.
 */
export function isTls12SessionFor(der: Buffer, id: Buffer): boolean {
  const f = sessionFields(der);
  if (!f) return false;
  const version = f[1]!;
  return version.length === 2 && version.readUInt16BE(0) === 0x0303 && f[3]!.equals(id);
}
