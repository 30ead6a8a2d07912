/**
 * What the master forks: the inspector guard, then the worker. The master
 * may forward USR1 (reopen logs) while the worker is still loading; without
 * a handler Node would open its inspector (see inspector.ts).
 */
import { shutInspector } from "./inspector.js";

shutInspector();
await import("./worker-main.js");
