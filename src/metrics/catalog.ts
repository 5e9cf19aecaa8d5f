// Every metric of the package, in one place (docs/tcpserver.md lists the same). Label values
// are always from a small fixed set or from the command line and environment, never from a
// client (a name it asked for, an address), so that no client can grow the number of series.
import { family } from "./family.ts";

// tcpserver

export const accepted = family({
  name: "tcpserver_connections_accepted_total",
  help: "Connections accepted, whatever became of them.",
  type: "counter",
});

export const refusedPerIp = family({
  name: "tcpserver_connections_refused_total",
  help: "Connections over the per-client limit (-C), closed at once.",
  type: "counter",
});

export const denied = family({
  name: "tcpserver_connections_denied_total",
  help: "Connections denied by the rules (-x).",
  type: "counter",
});

export const dropped = family({
  name: "tcpserver_connections_dropped_total",
  help: "Connections dropped before a program ran: unreadable rules, a bad PROXY header, or a stop.",
  type: "counter",
  labels: ["reason"],
});

export const spawnFailures = family({
  name: "tcpserver_spawn_failures_total",
  help: "Programs that could not be run (not found, not executable, no resources), by tcpserver or a stage in its process.",
  type: "counter",
});

export const programExits = family({
  name: "tcpserver_program_exits_total",
  help: "Connections served, by how the last program of the chain ended: its exit code, or the signal that killed it.",
  type: "counter",
  labels: ["status"],
});

export const activeConnections = family({
  name: "tcpserver_connections_active",
  help: "Connections being served now.",
  type: "gauge",
  observed: true,
});

export const connectionLimit = family({
  name: "tcpserver_connections_limit",
  help: "The most connections served at once (-c).",
  type: "gauge",
  observed: true,
});

export const limitFullSeconds = family({
  name: "tcpserver_limit_full_seconds_total",
  help: "Seconds during which every -c slot was taken: tcpserver did not accept, and new clients waited in the kernel's backlog.",
  type: "counter",
  observed: true,
});

// tlsd

export const handshakes = family({
  name: "tlsd_handshakes_total",
  help: "TLS handshakes: result ok (with version, key exchange group and resumption) or failed (with a reason).",
  type: "counter",
  labels: ["result", "reason", "version", "group", "resumed"],
});

export const handshakeSteps = family({
  name: "tlsd_handshake_steps_total",
  help: "Steps of TLS handshakes on tlsd's native engine, by where they ran: on the event loop, or on a handshake thread while other handshakes waited.",
  type: "counter",
  labels: ["on"],
  observed: true,
});

export const certificateExpiry = family({
  name: "tlsd_certificate_expiry_timestamp_seconds",
  help: "When each certificate tlsd serves expires (notAfter), in seconds since the epoch.",
  type: "gauge",
  labels: ["name", "file"],
  aggregate: "min",
  observed: true,
});

export const ocspNextUpdate = family({
  name: "tlsd_ocsp_next_update_timestamp_seconds",
  help: "Until when each OCSP response tlsd staples is valid (its nextUpdate), in seconds since the epoch: none is stapled after.",
  type: "gauge",
  labels: ["file"],
  aggregate: "min",
  observed: true,
});

export const trustReads = family({
  name: "tlsd_trust_reads_total",
  help: "Reads of the trust anchors for client certificates (CAFILE or CADIR) and of CRLFILE: one at start, then one per change on disk and per reload, whatever the number of certificates.",
  type: "counter",
  labels: ["file"],
});

export const acmeOrders = family({
  name: "tlsd_acme_orders_total",
  help: "Certificate orders to the ACME CA: issued, failed, or not made (rate_limited by ACME_RATE).",
  type: "counter",
  labels: ["result"],
});

// starttls-wrapper

export const upgrades = family({
  name: "starttls_wrapper_upgrades_total",
  help: "Clients that asked for TLS and were handed to it.",
  type: "counter",
  labels: ["protocol"],
});

export const declines = family({
  name: "starttls_wrapper_declines_total",
  help: "Clients that went on in plaintext (opportunistic mode).",
  type: "counter",
  labels: ["protocol"],
});

export const refusals = family({
  name: "starttls_wrapper_refusals_total",
  help: "Commands or connections refused because TLS is required first (-r).",
  type: "counter",
  labels: ["protocol"],
});

// tls-sniff

export const sniffed = family({
  name: "tls_sniff_connections_total",
  help: "Connections looked at, by verdict on their first bytes and the route they took.",
  type: "counter",
  labels: ["verdict", "route"],
});

// tcpforward

export const forwardConnects = family({
  name: "tcpforward_connections_total",
  help: "Connections to services: made (ok, an --if-plain probe's included), or not and why (refused, timeout, unreachable, failed), or a loop refused.",
  type: "counter",
  labels: ["result"],
});

export const forwardBroken = family({
  name: "tcpforward_relays_broken_total",
  help: "Relays that ended in a broken connection (a reset or an error), by the side that broke.",
  type: "counter",
  labels: ["side"],
});

export const ifPlainClients = family({
  name: "tcpforward_if_plain_clients_total",
  help: "TLS clients under --if-plain, by where they went: to the service (it speaks TLS itself) or to the --if-plain program.",
  type: "counter",
  labels: ["to"],
});

export const ifPlainProbes = family({
  name: "tcpforward_if_plain_probes_total",
  help: "Services asked under --if-plain whether they speak TLS (a verdict not in memory), by their answer.",
  type: "counter",
  labels: ["answer"],
});
