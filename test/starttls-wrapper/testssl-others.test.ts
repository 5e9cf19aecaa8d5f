// testssl.sh -t against starttls-wrapper, XMPP, PostgreSQL and MySQL (SMTP and IMAP:
// testssl-mail.test.ts).
import { starttlsScans } from "../helpers/testssl-starttls.ts";

starttlsScans(["xmpp", "postgres", "mysql"], ["postgres"]);
