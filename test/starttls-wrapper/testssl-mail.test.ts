// testssl.sh -t against starttls-wrapper, the mail protocols (the rest: testssl-others.test.ts).
import { starttlsScans } from "../helpers/testssl-starttls.ts";

starttlsScans(["smtp", "lmtp", "pop3", "imap"], ["smtp"]);
