/*
 * herald_parse and its accessors from C: a nested multipart with an RFC
 * 2047 subject, an inline image and an RFC 2231 named attachment; a broken
 * multipart; NULL and out-of-range arguments. Saves an attachment into the
 * current directory and reads it back. No server needed.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static const char NESTED[] =
    "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>\r\n"
    "To: Bob <bob@example.org>, carol@example.org\r\n"
    "Subject: =?UTF-8?B?R3LDvMOfZQ==?= aus =?ISO-8859-1?Q?K=F6ln?=\r\n"
    "Date: Tue, 2 Jan 2024 10:30:00 +0100\r\n"
    "X-Label: =?UTF-8?Q?wichtig?=\r\n"
    "X-Label: second\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=\"alt\"\r\n"
    "\r\n"
    "--alt\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Gr=FC=DFe\r\n"
    "--alt\r\n"
    "Content-Type: multipart/related; boundary=\"rel\"\r\n"
    "\r\n"
    "--rel\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>Hallo <img src=\"cid:logo@x\"></p>\r\n"
    "--rel\r\n"
    "Content-Type: image/png\r\n"
    "Content-ID: <logo@x>\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBORw0KGgo=\r\n"
    "--rel--\r\n"
    "--alt--\r\n"
    "--outer\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.bin\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "AAEC/f7/\r\n"
    "--outer--\r\n";

static const char BROKEN[] =
    "Subject: broken\r\n"
    "Content-Type: multipart/mixed; boundary=\"x\"\r\n"
    "\r\n"
    "--x\r\n"
    "Content-Type: multipart/mixed; boundary=\"x\"\r\n"
    "\r\n"
    "--x\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "@@@@ not base64 and no closing boundary";

static void check_nested(void)
{
    herald_parsed *p = NULL;
    CHECK_STATUS(herald_parse((const uint8_t *)NESTED, strlen(NESTED), &p), HERALD_STATUS_OK);
    if (!p)
        return;
    CHECK(strcmp(herald_parsed_subject(p), "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln") == 0);
    const char *text = herald_parsed_text(p);
    CHECK(text && strncmp(text, "Gr\xc3\xbc\xc3\x9f" "e", 6) == 0);
    const char *html = herald_parsed_html(p);
    CHECK(html && strstr(html, "<p>Hallo") != NULL);
    CHECK(herald_parsed_date(p) == 1704187800);
    CHECK(strcmp(herald_parsed_header(p, "x-label", 0), "wichtig") == 0);
    CHECK(strcmp(herald_parsed_header(p, "X-LABEL", 1), "second") == 0);
    CHECK(herald_parsed_header(p, "X-Label", 2) == NULL);

    const char *name = NULL;
    CHECK(herald_parsed_address_count(p, HERALD_ADDR_FROM) == 1);
    CHECK(strcmp(herald_parsed_address(p, HERALD_ADDR_FROM, 0, &name), "joerg@example.org") == 0);
    CHECK(name && strcmp(name, "J\xc3\xb6rg") == 0);
    CHECK(herald_parsed_address_count(p, HERALD_ADDR_TO) == 2);
    CHECK(strcmp(herald_parsed_address(p, HERALD_ADDR_TO, 1, &name), "carol@example.org") == 0);
    CHECK(name && strcmp(name, "") == 0);
    CHECK(herald_parsed_address(p, HERALD_ADDR_TO, 2, NULL) == NULL);
    CHECK(herald_parsed_address_count(p, HERALD_ADDR_CC) == 0);
    CHECK(herald_parsed_address_count(p, 99) == 0);

    CHECK(herald_parsed_attachment_count(p) == 2);
    herald_attachment a;
    CHECK_STATUS(herald_parsed_attachment(p, 0, &a), HERALD_STATUS_OK);
    CHECK(strcmp(a.content_type, "image/png") == 0);
    CHECK(strcmp(a.content_id, "logo@x") == 0);
    CHECK(strcmp(a.filename, "") == 0);
    CHECK(a.is_inline == 1);
    CHECK(a.len == 8 && memcmp(a.data, "\x89PNG\r\n\x1a\n", 8) == 0);
    CHECK_STATUS(herald_parsed_attachment(p, 1, &a), HERALD_STATUS_OK);
    CHECK(strcmp(a.filename, "\xe2\x82\xac rates.bin") == 0);
    CHECK(a.is_inline == 0);
    static const uint8_t want[] = {0x00, 0x01, 0x02, 0xfd, 0xfe, 0xff};
    CHECK(a.len == sizeof want && memcmp(a.data, want, sizeof want) == 0);
    CHECK_STATUS(herald_parsed_attachment(p, 2, &a), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_parsed_attachment(p, 0, NULL), HERALD_STATUS_INVALID_ARGUMENT);

    /* Saved byte-exact; a path that can't be written is IO. */
    CHECK_STATUS(herald_parsed_attachment_save(p, 1, "saved.bin"), HERALD_STATUS_OK);
    FILE *f = fopen("saved.bin", "rb");
    CHECK(f != NULL);
    if (f) {
        uint8_t buf[16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        CHECK(n == sizeof want && memcmp(buf, want, sizeof want) == 0);
    }
    remove("saved.bin");
    CHECK_STATUS(herald_parsed_attachment_save(p, 1, "no/such/dir/x.bin"), HERALD_STATUS_IO);
    CHECK_STATUS(herald_parsed_attachment_save(p, 1, NULL), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_parsed_attachment_save(p, 5, "x.bin"), HERALD_STATUS_INVALID_ARGUMENT);
    herald_parsed_free(p);
}

static void check_broken_and_null(void)
{
    herald_parsed *p = NULL;
    CHECK_STATUS(herald_parse((const uint8_t *)BROKEN, strlen(BROKEN), &p), HERALD_STATUS_OK);
    CHECK(p != NULL);
    CHECK(strcmp(herald_parsed_subject(p), "broken") == 0);
    size_t n = herald_parsed_attachment_count(p);
    for (size_t i = 0; i < n; i++) {
        herald_attachment a;
        CHECK_STATUS(herald_parsed_attachment(p, i, &a), HERALD_STATUS_OK);
        CHECK(a.filename && a.content_type && a.content_id && (a.data || a.len == 0));
    }
    CHECK(herald_parsed_date(p) == 0);
    herald_parsed_free(p);

    /* A message without a Subject: "" (never NULL); no HTML: NULL. */
    static const char PLAIN[] = "From: a@b\r\n\r\nhello\r\n";
    CHECK_STATUS(herald_parse((const uint8_t *)PLAIN, strlen(PLAIN), &p), HERALD_STATUS_OK);
    CHECK(strcmp(herald_parsed_subject(p), "") == 0);
    CHECK(herald_parsed_html(p) == NULL);
    CHECK(herald_parsed_attachment_count(p) == 0);
    herald_parsed_free(p);

    p = NULL;
    CHECK_STATUS(herald_parse(NULL, 5, &p), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_parse((const uint8_t *)"", 0, &p), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(herald_parse((const uint8_t *)PLAIN, strlen(PLAIN), NULL), HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(p == NULL);
    herald_parsed_free(NULL);
    CHECK(strcmp(herald_parsed_subject(NULL), "") == 0);
    CHECK(herald_parsed_text(NULL) == NULL && herald_parsed_html(NULL) == NULL);
    CHECK(herald_parsed_header(NULL, "Subject", 0) == NULL);
    CHECK(herald_parsed_address_count(NULL, HERALD_ADDR_FROM) == 0);
    CHECK(herald_parsed_address(NULL, HERALD_ADDR_FROM, 0, NULL) == NULL);
    CHECK(herald_parsed_date(NULL) == 0);
    CHECK(herald_parsed_attachment_count(NULL) == 0);
    CHECK(herald_result_parsed(NULL, 0) == NULL);
    CHECK(strstr(herald_last_error(), "NULL") != NULL);
}

int main(void)
{
    check_nested();
    check_broken_and_null();
    if (failures) {
        fprintf(stderr, "parse.c: %d checks failed\n", failures);
        return 1;
    }
    printf("parse.c: ok\n");
    return 0;
}
