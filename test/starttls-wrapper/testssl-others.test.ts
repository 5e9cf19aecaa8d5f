// testssl.sh -t against starttls-wrapper, NNTP, XMPP, PostgreSQL and MySQL (the mail protocols:
// testssl-mail.test.ts).
import { starttlsScans } from "../helpers/testssl-starttls.ts";

starttlsScans(["nntp", "xmpp", "postgres", "mysql"], ["postgres"]);
