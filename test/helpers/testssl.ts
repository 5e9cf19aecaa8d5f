// testssl.sh (Debian's) as a test peer: one scan of 127.0.0.1:port, its findings by check.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./programs.ts";

export interface Finding {
  id: string;
  severity: string;
  finding: string;
}

export interface Scan {
  /** Where its JSON file goes. */
  dir: string;
  /** The CA the certificate is checked against. */
  ca: string;
  /** testssl.sh's checks: -p, -U, ... */
  checks: string[];
  /** A STARTTLS protocol (-t), if any. */
  starttls?: string;
  /** How long the scan may take (240 s unless said). */
  timeoutMs?: number;
}

/** testssl.sh's `scan.checks` against 127.0.0.1:`port` (a file named `name` in `scan.dir`). */
export async function testssl(
  name: string,
  port: number,
  scan: Scan,
): Promise<Map<string, Finding>> {
  const json = join(scan.dir, `${name}.json`);
  const r = await run(
    "/usr/bin/testssl",
    [
      ...["--quiet", "--color", "0", "--warnings", "off", "--openssl", "/usr/bin/openssl"],
      ...["--add-ca", scan.ca, "--ip", "127.0.0.1", "--jsonfile", json],
      ...(scan.starttls ? ["-t", scan.starttls] : []),
      ...scan.checks,
      `127.0.0.1:${port}`,
    ],
    { timeoutMs: scan.timeoutMs ?? 240_000 },
  );
  // testssl.sh's status is the number of findings of some severity, not a failure.
  assert.equal(r.signal, null, `testssl.sh against ${name} did not end:\n${r.stdout}`);
  const findings = JSON.parse(readFileSync(json, "latin1")) as Finding[];
  return new Map(findings.map((f) => [f.id, f]));
}

/** What a scan must say of the protocols offered: TLS 1.2 and 1.3, nothing older. */
export const TLS12_AND_13: Record<string, RegExp> = {
  SSLv3: /^not offered/,
  TLS1: /^not offered/,
  TLS1_1: /^not offered/,
  TLS1_2: /^offered/,
  TLS1_3: /^offered/,
};

const RANK: Record<string, number> = {
  DEBUG: 0,
  INFO: 0,
  OK: 0,
  LOW: 1,
  MEDIUM: 2,
  HIGH: 3,
  CRITICAL: 4,
  WARN: 5,
  FATAL: 5,
};
const rank = (f: Finding | undefined) => RANK[f?.severity ?? "FATAL"] ?? 5;

/** What a scan found, for a message. */
const summary = (scan: Map<string, Finding>) =>
  [...scan.values()].map((f) => `${f.severity} ${f.id}: ${f.finding}`).join("\n");

/** Findings about the certificate or the host rather than the TLS layer (a test CA, no DNS). */
const notTheLayer = (id: string) => /^(cert|DNS_CAA|OCSP|service)/.test(id);

/** The findings worse than OK or INFO, the certificate's aside. */
const worseThanOk = (scan: Map<string, Finding>) =>
  [...scan.values()].filter((f) => !notTheLayer(f.id) && rank(f) > 0);

/** Each check in `expected` is in the scan and says what its pattern wants (a scan cut short
 * must not pass), and no finding is worse than OK or INFO, the certificate's aside. */
export function assertScan(scan: Map<string, Finding>, expected: Record<string, RegExp>): void {
  for (const [id, pattern] of Object.entries(expected))
    assert.match(scan.get(id)?.finding ?? "(no such check)", pattern, `${id}:\n${summary(scan)}`);
  assert.deepEqual(worseThanOk(scan), [], `worse than OK:\n${summary(scan)}`);
}
