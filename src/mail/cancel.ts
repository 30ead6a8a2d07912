/**
 * One-shot cancellation for a session's outstanding work (the auth_http
 * request, the proxied session at worker_shutdown_timeout).
 *
 * `CancelSignal` is the part of AbortSignal the mail code uses, so callers
 * may pass an AbortSignal; sessions use `Cancellation`, because an
 * AbortController per session costs EventTarget machinery and, when
 * aborted, a DOMException with a stack trace: about 3% of a worker's CPU
 * per login in the benchmark's profile (bench/README.md).
 */

/** What a cancellable operation listens to. */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** A CancelSignal with its trigger: listeners run once, on the first cancel(). */
export class Cancellation implements CancelSignal {
  #aborted = false;
  #listeners: (() => void)[] = [];

  get aborted(): boolean {
    return this.#aborted;
  }

  addEventListener(_type: "abort", listener: () => void, _options?: { once?: boolean }): void {
    if (!this.#aborted) this.#listeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const i = this.#listeners.indexOf(listener);
    if (i >= 0) this.#listeners.splice(i, 1);
  }

  cancel(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const l of listeners) l();
  }
}
