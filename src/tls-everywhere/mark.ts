// The variable that marks tls-everywhere's chains, apart from the rest of it: tcpserver takes it
// out of what its programs get, and loads nothing more of tls-everywhere for that.

/** Each chain is started with this variable naming the tls-everywhere that started it (its
 * pid and start time): its record is made before any chain starts, so a SIGKILL at any moment
 * leaves no chain that the next start or --remove cannot find, even one it never recorded. It
 * is found in /proc/PID/environ, which keeps the environment a process started with; tcpserver
 * unsets it for the programs it runs, which are not chains. */
export const OWNER_VARIABLE = "TLS_EVERYWHERE_OWNER";
