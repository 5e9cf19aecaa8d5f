// A private ACME CA on loopback for tests: Debian's pebble, with pebble-challtestsrv as its DNS
// (every name is 127.0.0.1), validating tls-alpn-01 on `tlsPort` (where the test's tlsd
// listens) and http-01 on `httpPort`. Fast and deterministic: no validation sleeps, no rejected nonces, no reused
// authorizations. Pebble makes a new root at every start: root() fetches this run's. With
// `netns`, the CA runs in a network namespace of the test's instead, outside the host it
// validates: its validator reaches that host through the namespaces' link, as a real CA's does.
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { get } from "node:https";
import { join } from "node:path";
import { makePki } from "./certs.ts";
import { freePort } from "./interop.ts";

export interface Pebble {
  /** The ACME directory URL. */
  directory: string;
  /** Trust anchor of pebble's own HTTPS listener (for ACME_CAFILE). */
  listenerCa: string;
  /** The root that this run's certificates chain to (PEM). */
  root(): Promise<string>;
  /** What pebble logged so far. */
  log(): string;
  /** pebble-challtestsrv's DNS server (ip:port): every name is 127.0.0.1 (with `netns`, its
   * resolveTo) unless addA said. With `netns`, on that namespace's 127.0.0.1. */
  dns: string;
  /** challtestsrv's management API (http://127.0.0.1:PORT), for a dns-01 hook's set-txt and
   * clear-txt; with `netns`, inside that namespace. */
  dnsManagement: string;
  /** What pebble says of the certificate with this serial (hex): "Valid" or "Revoked" (its
   * management API's Status), with a revoked one's reason code. */
  certificateStatus(serial: string): Promise<{ status: string; reason?: number }>;
  /** Makes challtestsrv answer `host` with these IPv4 addresses (pebble's validator goes there). */
  addA(host: string, addresses: string[]): Promise<void>;
  stop(): void;
}

/** What startPebble takes. */
export interface PebbleOptions {
  tlsPort: number;
  /** Where it validates http-01 (the port-80 stand-in); default: a port nobody listens on. */
  httpPort?: number;
  validitySeconds?: number;
  /** External account binding required, with these MAC keys (base64url) by key id. */
  eab?: Record<string, string>;
  /** Runs in this namespace, its ACME listener on `listen` there (the other listeners on its
   * 127.0.0.1, fetched from inside it), every name resolving to `resolveTo`. */
  netns?: { name: string; listen: string; resolveTo: string };
}

/** A port freePort() found free was taken by another program before pebble bound it. */
class PortTaken extends Error {}

/** pebble on free ports. They are free when chosen, but another test's program may bind one
 * before pebble does: pebble then ends ("address already in use"), and it is started again on
 * new ports, three times at most. */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startPebbleOnce(options);
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt === 3) throw error;
    }
  }
}

async function startPebbleOnce(options: PebbleOptions): Promise<Pebble> {
  const pki = makePki();
  const ns = options.netns;
  const host = ns?.listen ?? "127.0.0.1";
  const listener = pki.server("localhost", ["localhost", "127.0.0.1", host]);
  const [acme, management, dns, dnsManagement, http] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );
  const config = join(pki.dir, "pebble.json");
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `${host}:${acme}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: listener.cert,
        privateKey: listener.key,
        httpPort: options.httpPort ?? http,
        tlsPort: options.tlsPort,
        ocspResponderURL: "",
        externalAccountBindingRequired: options.eab !== undefined,
        ...(options.eab ? { externalAccountMACKeys: options.eab } : {}),
        ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
      },
    }),
  );
  let logged = "";
  const children: ChildProcess[] = [];
  const start = (file: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
    const [program, argv] = ns ? ["ip", ["netns", "exec", ns.name, file, ...args]] : [file, args];
    const child = spawn(program, argv, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    child.stdout?.on("data", (b: Buffer) => (logged += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (logged += b.toString()));
    children.push(child);
  };
  start("pebble-challtestsrv", [
    "-dns01",
    `127.0.0.1:${dns}`,
    "-http01",
    "",
    "-https01",
    "",
    "-tlsalpn01",
    "",
    "-management",
    `127.0.0.1:${dnsManagement}`,
    "-defaultIPv4",
    ns?.resolveTo ?? "127.0.0.1",
    "-defaultIPv6",
    "",
  ]);
  start("pebble", ["-config", config, "-dnsserver", `127.0.0.1:${dns}`, "-strict=false"], {
    PEBBLE_VA_NOSLEEP: "1",
    PEBBLE_WFE_NONCEREJECT: "0",
    PEBBLE_AUTHZREUSE: "0",
  });
  const ca = readFileSync(pki.ca.cert);
  const fetch = (url: string) =>
    new Promise<string | undefined>((resolve) => {
      if (ns) {
        const curl = ["netns", "exec", ns.name, "curl", "-sf", "--cacert", pki.ca.cert, url];
        execFile("ip", curl, { encoding: "latin1" }, (error, body) =>
          resolve(error ? undefined : body),
        );
        return;
      }
      get(url, { ca }, (res) => {
        let body = "";
        res.on("data", (b: Buffer) => (body += b.toString()));
        res.on("end", () => resolve(res.statusCode === 200 ? body : undefined));
      }).on("error", () => resolve(undefined));
    });
  /** POSTs to challtestsrv's management API, on 127.0.0.1: with `netns`, that namespace's, so
   * from inside it, as fetch does. */
  const post = (path: string, body: string) =>
    new Promise<void>((resolve, reject) => {
      const url = `http://127.0.0.1:${dnsManagement}${path}`;
      if (ns) {
        const curl = ["netns", "exec", ns.name, "curl", "-sSf", "--data-binary", body, url];
        execFile("ip", curl, { encoding: "latin1" }, (error, _out, stderr) =>
          error ? reject(new Error(`${path}: ${stderr.trim()}`)) : resolve(),
        );
        return;
      }
      const req = request(url, { method: "POST" }, (res) => {
        res.resume();
        res.on("end", () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`${path}: ${res.statusCode}`)),
        );
      });
      req.on("error", reject);
      req.end(body);
    });
  const stop = () => {
    for (const child of children) child.kill("SIGKILL");
  };
  const directory = `https://${host}:${acme}/dir`;
  const deadline = Date.now() + 15_000;
  while ((await fetch(directory)) === undefined) {
    if (/address already in use/.test(logged)) {
      stop();
      throw new PortTaken(`pebble did not start:\n${logged}`);
    }
    if (Date.now() > deadline) {
      stop();
      throw new Error(`pebble did not start:\n${logged}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    directory,
    listenerCa: pki.ca.cert,
    root: async () => {
      const root = await fetch(`https://127.0.0.1:${management}/roots/0`);
      if (!root) throw new Error("pebble gave no root");
      return root;
    },
    certificateStatus: async (serial) => {
      const answer = await fetch(`https://127.0.0.1:${management}/cert-status-by-serial/${serial}`);
      if (!answer) throw new Error(`pebble knows no certificate ${serial}`);
      const { Status, Reason } = JSON.parse(answer) as { Status: string; Reason?: number };
      return { status: Status, ...(Reason === undefined ? {} : { reason: Reason }) };
    },
    log: () => logged,
    dns: `127.0.0.1:${dns}`,
    dnsManagement: `http://127.0.0.1:${dnsManagement}`,
    addA: (host, addresses) => post("/add-a", JSON.stringify({ host, addresses })),
    stop,
  };
}
