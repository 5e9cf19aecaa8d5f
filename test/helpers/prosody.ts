// A real Prosody (Debian's prosody) for a test: a config of its own under tmp, one VirtualHost
// with the user alice/secret, c2s on a free port of 127.0.0.1, logging to stderr; with a
// certificate (STARTTLS of Prosody's own) or without (no TLS at all); with s2s, server-to-server
// streams (jabber:server, dialback, encryption not required) on another free port.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Pair } from "./certs.ts";
import { freePort } from "./interop.ts";
import { untilAnswers } from "./server.ts";
import { scratchDir } from "./scratch.ts";

export interface Prosody {
  port: number;
  /** The s2s port, when asked for (else 0). */
  s2sPort: number;
  log(): string;
  stop(): Promise<void>;
}

export async function startProsody(
  domain: string,
  options: { tls?: Pair; s2s?: boolean } = {},
): Promise<Prosody> {
  const dir = scratchDir("xmpp");
  mkdirSync(join(dir, "data"));
  const port = await freePort();
  const s2sPort = options.s2s ? await freePort() : 0;
  const s2s = options.s2s
    ? [
        'modules_disabled = { "posix"; }',
        `s2s_ports = { ${s2sPort} }`,
        's2s_interfaces = { "127.0.0.1" }',
        "s2s_require_encryption = false",
        "s2s_secure_auth = false",
      ]
    : ['modules_disabled = { "s2s"; "posix"; }', "s2s_ports = {}"];
  const config = join(dir, "prosody.cfg.lua");
  const tls = options.tls
    ? [`  ssl = { certificate = "${options.tls.cert}"; key = "${options.tls.key}"; }`]
    : [];
  writeFileSync(
    config,
    [
      "run_as_root = true",
      "daemonize = false",
      `pidfile = "${join(dir, "prosody.pid")}"`,
      `data_path = "${join(dir, "data")}"`,
      'log = { info = "*stderr" }',
      `modules_enabled = { "roster"; "saslauth"; "disco"; "ping";${options.tls ? ' "tls";' : ""}${options.s2s ? ' "dialback";' : ""} }`,
      `c2s_ports = { ${port} }`,
      'c2s_interfaces = { "127.0.0.1" }',
      ...s2s,
      `c2s_require_encryption = ${options.tls ? "true" : "false"}`,
      `allow_unencrypted_plain_auth = ${options.tls ? "false" : "true"}`,
      'authentication = "internal_plain"',
      `VirtualHost "${domain}"`,
      ...tls,
      "",
    ].join("\n"),
  );
  const prosody = spawn("prosody", ["--config", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  prosody.stderr.on("data", (b: Buffer) => (log += b.toString()));
  const exited = new Promise((resolve) => prosody.once("exit", resolve));
  execFileSync("prosodyctl", ["--config", config, "register", "alice", domain, "secret"], {
    stdio: "ignore",
  });
  // Ready once it sends its stream features to a stream header `to` the domain.
  await untilAnswers(
    port,
    /<\/stream:features>/,
    `<?xml version='1.0'?><stream:stream to='${domain}' xmlns='jabber:client' ` +
      "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    () => `prosody did not start:\n${log}`,
  );
  return {
    port,
    s2sPort,
    log: () => log,
    stop: async () => {
      prosody.kill("SIGTERM");
      await exited;
    },
  };
}
