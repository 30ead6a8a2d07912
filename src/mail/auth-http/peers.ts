/**
 * Which auth service a request goes to, with nginx upstream's round robin
 * failure accounting (ngx_http_upstream_round_robin.c): a peer that failed
 * `max_fails` times is skipped until `fail_timeout` has passed since its
 * last check; then one request may try it, and a success clears its
 * failures. State is per worker process, as nginx's is without a `zone`.
 */
import { type AuthHttpPeer, type AuthHttpTarget, targetPeers } from "./target.js";

interface PeerState {
  readonly peer: AuthHttpPeer;
  fails: number;
  /** When the peer last failed (ms). */
  accessed: number;
  /** When the peer was last chosen after being taken out, or last failed (ms). */
  checked: number;
}

/** The live state of one `auth_http` group in this process. */
export class AuthPeerGroup {
  readonly #states: PeerState[];
  readonly #maxFails: number;
  readonly #failTimeout: number;
  #next = 0;

  constructor(peers: readonly AuthHttpPeer[], maxFails: number, failTimeout: number) {
    this.#states = peers.map((peer) => ({ peer, fails: 0, accessed: 0, checked: 0 }));
    this.#maxFails = maxFails;
    this.#failTimeout = failTimeout;
  }

  get size(): number {
    return this.#states.length;
  }

  /**
   * The peers to try for one request, in order: the live ones starting at
   * the round-robin position. When none is live, all of them (nginx would
   * answer "no live upstreams" once and then clear the failures; trying
   * them costs no login when one came back).
   */
  order(now: number): AuthHttpPeer[] {
    const n = this.#states.length;
    const start = this.#next;
    this.#next = (this.#next + 1) % n;
    const live: AuthHttpPeer[] = [];
    for (let i = 0; i < n; i++) {
      const s = this.#states[(start + i) % n]!;
      if (this.#maxFails === 0 || s.fails < this.#maxFails || now - s.checked > this.#failTimeout) live.push(s.peer);
    }
    if (live.length > 0) return live;
    return this.#states.map((s) => s.peer);
  }

  /** A request goes to `peer` now: past fail_timeout since its last check, this try is the check. */
  tried(peer: AuthHttpPeer, now: number): void {
    const s = this.#states.find((x) => x.peer === peer);
    if (s && now - s.checked > this.#failTimeout) s.checked = now;
  }

  /** Counts a failure; true when it takes the peer out (nginx's "temporarily disabled"). */
  failed(peer: AuthHttpPeer, now: number): boolean {
    const s = this.#states.find((x) => x.peer === peer);
    if (!s || this.#maxFails === 0) return false;
    s.fails++;
    s.accessed = now;
    s.checked = now;
    return s.fails === this.#maxFails;
  }

  /** A complete answer: the failures of a peer that was being checked are cleared. */
  succeeded(peer: AuthHttpPeer): void {
    const s = this.#states.find((x) => x.peer === peer);
    if (s && s.accessed < s.checked) s.fails = 0;
  }
}

/** One group per parsed directive value, per process (a reload parses anew). */
const groups = new WeakMap<AuthHttpTarget, AuthPeerGroup>();

/** The group of a grouped `auth_http` directive. */
export function peerGroup(target: AuthHttpTarget): AuthPeerGroup {
  let g = groups.get(target);
  if (!g) {
    g = new AuthPeerGroup(targetPeers(target), target.maxFails, target.failTimeout);
    groups.set(target, g);
  }
  return g;
}
