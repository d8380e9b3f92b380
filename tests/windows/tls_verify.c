/*
 * Certificate verification from C, for the Windows build (SChannel), run
 * under wine by tests/windows.rs against Dovecot's self-signed certificate.
 * Plain C11: it builds for Linux (OpenSSL) too.
 *
 * For each of SMTP submission (STARTTLS), IMAP (implicit TLS) and POP3
 * (STLS):
 *   - with the test CA as HERALD_OPT_CA_FILE, the op succeeds;
 *   - without it, the op completes HERALD_STATUS_TLS: certificates are
 *     verified by default, and a self-signed one is refused;
 *   - with HERALD_OPT_ACCEPT_INVALID_CERTS, it succeeds again.
 *
 * Then, only reported: the same with the test CA for the host's IP address
 * 127.0.0.1, which the certificate also names (Wine's SChannel does not
 * match IP addresses).
 *
 * Needs HERALD_TEST_HOST (default 127.0.0.1), HERALD_TEST_CA_FILE,
 * HERALD_TEST_SUBMISSION_PORT, HERALD_TEST_IMAPS_PORT, HERALD_TEST_POP3_PORT;
 * user bob / bobpass.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald.h"
#include "check.h"

#define WAIT_MS 60000

enum trust { TEST_CA, SYSTEM_ROOTS, ANYTHING };
static const char *trust_name[] = {"test CA", "system roots", "accept invalid"};

static const char *ca_file;
static const char *host;

static herald_status op_status;
static char op_detail[512];

static void remember(const herald_completion *c)
{
    op_status = c->status;
    snprintf(op_detail, sizeof op_detail, "%s", c->detail);
}

static herald_client *client(uint32_t protocol, int port, int security, enum trust trust)
{
    herald_options *o = herald_options_new(protocol);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_HOST, host), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_PORT, port), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_SECURITY, security), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_USERNAME, "bob"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_PASSWORD, "bobpass"), HERALD_STATUS_OK);
    CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_IO_TIMEOUT_MS, 20000), HERALD_STATUS_OK);
    if (trust == TEST_CA)
        CHECK_STATUS(herald_options_set_str(o, HERALD_OPT_CA_FILE, ca_file), HERALD_STATUS_OK);
    if (trust == ANYTHING)
        CHECK_STATUS(herald_options_set_int(o, HERALD_OPT_ACCEPT_INVALID_CERTS, 1), HERALD_STATUS_OK);
    herald_client *c = NULL;
    CHECK_STATUS(herald_client_new(o, &c), HERALD_STATUS_OK);
    herald_options_free(o);
    return c;
}

static const char RAW[] = "From: bob@example.org\r\nTo: rcpt@example.org\r\nSubject: tls\r\n\r\nthrough TLS\r\n";
static const char *RCPT[] = {"rcpt@example.org"};

/* Runs one op of `protocol` and returns its status. */
static herald_status run(const char *what, uint32_t protocol, int port, int security, enum trust trust)
{
    herald_client *c = client(protocol, port, security, trust);
    if (!c)
        return HERALD_STATUS_INVALID_ARGUMENT;
    herald_op op = 0;
    herald_status s;
    op_status = HERALD_STATUS_PANIC;
    op_detail[0] = 0;
    if (protocol == HERALD_PROTOCOL_SMTP)
        s = herald_send_raw_async(c, "bob@example.org", RCPT, 1, (const uint8_t *)RAW, sizeof RAW - 1, remember,
                                  NULL, &op);
    else if (protocol == HERALD_PROTOCOL_IMAP)
        s = herald_imap_list_async(c, "*", remember, NULL, &op);
    else
        s = herald_pop3_list_async(c, remember, NULL, &op);
    CHECK_STATUS(s, HERALD_STATUS_OK);
    if (s == HERALD_STATUS_OK)
        CHECK_STATUS(herald_wait(c, op, WAIT_MS), HERALD_STATUS_OK);
    herald_client_free(c);
    printf("%s with %s: %s (%s)\n", what, trust_name[trust], herald_status_str(op_status), op_detail);
    return op_status;
}

static void check_protocol(const char *what, uint32_t protocol, const char *port_var, int security)
{
    const char *p = getenv(port_var);
    if (!p) {
        fprintf(stderr, "%s is not set\n", port_var);
        failures++;
        return;
    }
    int port = atoi(p);
    CHECK(run(what, protocol, port, security, TEST_CA) == HERALD_STATUS_OK);
    herald_status refused = run(what, protocol, port, security, SYSTEM_ROOTS);
    CHECK(refused == HERALD_STATUS_TLS);
    CHECK(strlen(op_detail) > 0);
    CHECK(run(what, protocol, port, security, ANYTHING) == HERALD_STATUS_OK);
}

int main(void)
{
    ca_file = getenv("HERALD_TEST_CA_FILE");
    host = test_host();
    if (!ca_file) {
        fprintf(stderr, "HERALD_TEST_CA_FILE is not set\n");
        return 1;
    }
    check_protocol("smtp starttls", HERALD_PROTOCOL_SMTP, "HERALD_TEST_SUBMISSION_PORT", HERALD_SECURITY_STARTTLS);
    check_protocol("imap implicit tls", HERALD_PROTOCOL_IMAP, "HERALD_TEST_IMAPS_PORT", HERALD_SECURITY_IMPLICIT_TLS);
    check_protocol("pop3 stls", HERALD_PROTOCOL_POP3, "HERALD_TEST_POP3_PORT", HERALD_SECURITY_STARTTLS);
    /* Reported, not checked: verification of an IP address. */
    const char *name = host, *imaps = getenv("HERALD_TEST_IMAPS_PORT");
    if (imaps) {
        host = "127.0.0.1";
        printf("by IP address: ");
        run("imap implicit tls", HERALD_PROTOCOL_IMAP, atoi(imaps), HERALD_SECURITY_IMPLICIT_TLS, TEST_CA);
        host = name;
    }
    /* A CA file that cannot be read is refused when set, not at connect time. */
    herald_options *o = herald_options_new(HERALD_PROTOCOL_IMAP);
    CHECK(herald_options_set_str(o, HERALD_OPT_CA_FILE, "tls_verify.c-no-such-ca.pem") != HERALD_STATUS_OK);
    herald_options_free(o);
    if (failures) {
        fprintf(stderr, "tls_verify: %d checks failed\n", failures);
        return 1;
    }
    printf("tls_verify: all checks passed\n");
    return 0;
}
