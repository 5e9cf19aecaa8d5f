// Makes two servers' outputs comparable: pids and ports aside, everything else byte for byte.

/** Replaces pid fields of tcpserver's -v lines with PID. */
export function normalizeLog(log: string): string {
  return log
    .replace(/^(tcpserver: (?:pid|ok|deny|end)) \d+/gm, "$1 PID")
    .replace(/:(\d+)( |$)/gm, ":PORT$2")
    .replace(/:(\d+)$/gm, ":PORT");
}

/** Replaces the given port numbers (as whole words) with PORT. */
export function hidePorts(text: string, ports: readonly number[]): string {
  let out = text;
  for (const port of ports) out = out.replace(new RegExp(`\\b${port}\\b`, "g"), "PORT");
  return out;
}

/** Replaces the value of every *PORT= variable with PORT. */
export function hidePortVars(text: string): string {
  return text.replace(/^(\w*PORT)=\d+$/gm, "$1=PORT");
}

/** `text` as a pattern that matches it and nothing else (for the RegExp constructor). */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A runtime's words in a log line, where ours belong: Node's error codes and system-call
 * errors ("write ECONNRESET", "spawn /x ENOENT"), stack frames, "undefined", "[object ...]";
 * and our safety net's "internal error" (a bug of ours). */
export const RUNTIME_WORDS =
  /internal error|node:|ERR_[A-Z]|\bat .*\.c?js|undefined|\[object |\b(read|write|connect|spawn)\b.* E(CONN[A-Z]+|PIPE|NOENT|ACCES|AGAIN|ADDR[A-Z]+|NOTCONN|HOSTUNREACH|NETUNREACH|TIMEDOUT)\b/;
