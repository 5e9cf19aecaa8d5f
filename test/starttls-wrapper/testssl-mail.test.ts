// testssl.sh -t against starttls-wrapper, SMTP and IMAP (the rest: testssl-others.test.ts).
import { starttlsScans } from "../helpers/testssl-starttls.ts";

starttlsScans(["smtp", "imap"], ["smtp"]);
