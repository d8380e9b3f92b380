/*
 * herald.hpp against real servers: PICKUP always, SMTP to the smtp-sink at
 * HERALD_TEST_SMTP_PORT, IMAP and POP3 to the Dovecot at
 * HERALD_TEST_IMAP_PORT and HERALD_TEST_POP3_PORT (STARTTLS, certificate
 * HERALD_TEST_CA_FILE, user carol). Run by
 * tests/cpp.rs under valgrind: every std::function and promise herald holds
 * must be freed by the time the client is.
 */
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include "herald.hpp"

static int failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define CHECK_OK(status_expr)                                                                   \
    do {                                                                                        \
        herald::Status st_ = (status_expr);                                                     \
        if (!st_.ok()) {                                                                        \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #status_expr, st_.message().c_str()); \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

using namespace std::chrono_literals;

/* Waits at most 30 s: a hang is a failure, not a stuck test. */
static herald::Completion get(std::future<herald::Completion> f)
{
    if (f.wait_for(30s) != std::future_status::ready) {
        std::fprintf(stderr, "a future was not ready within 30 s\n");
        std::exit(2);
    }
    return f.get();
}

static herald::Message hello(const std::string &subject)
{
    herald::Message m;
    CHECK_OK(m.set_from("C++ <cpp@example.org>"));
    CHECK_OK(m.add_to("one@example.org"));
    CHECK_OK(m.add_cc("two@example.org"));
    CHECK_OK(m.set_subject(subject));
    CHECK_OK(m.set_text("from herald.hpp\n"));
    return m;
}

static void test_basics()
{
    CHECK(std::strcmp(herald::version(), HERALD_VERSION) == 0);
    CHECK(herald::version_number() == HERALD_VERSION_NUMBER);

    CHECK(!herald::Options(99).valid());
    herald::Options o(HERALD_PROTOCOL_SMTP);
    CHECK(o.valid());
    herald::Status s = o.set_int(HERALD_OPT_PORT, 0);
    CHECK(!s && s.code() == HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(s.detail().find("PORT") != std::string::npos);
    CHECK(s.message().rfind("invalid argument: ", 0) == 0);
    CHECK(!o.set_str(HERALD_OPT_USERNAME, "bob\r\nQUIT"));
    CHECK(o.set_int(HERALD_OPT_PORT, 25).ok());

    auto no_host = herald::Client::create(o);
    CHECK(!no_host && no_host.status().code() == HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(!no_host.status().detail().empty());

    herald::Message m;
    CHECK(m.add_to("a@b\r\nRCPT TO:<evil@x>").code() == HERALD_STATUS_INVALID_ARGUMENT);
    CHECK(!m.to_bytes()); /* no From yet */
    m = hello("bytes");
    auto bytes = m.to_bytes();
    CHECK(bytes && bytes->find("Subject: bytes\r\n") != std::string::npos);
}

static void test_pickup(const std::string &dir)
{
    herald::Options o(HERALD_PROTOCOL_PICKUP);
    CHECK_OK(o.set_str(HERALD_OPT_PICKUP_DIR, dir));
    auto created = herald::Client::create(o);
    CHECK(created);
    if (!created)
        return;
    auto witness = std::make_shared<int>(0); /* captured by every callback */
    std::atomic<int> done{0};
    {
        herald::Client c = std::move(created).value();
        herald::Message m = hello("pickup");
        for (int i = 0; i < 5; i++) {
            auto sub = c.send(m, [witness, &done](const herald::Completion &r) {
                CHECK(r.ok());
                CHECK(r.result().size() == 1);
                CHECK(r.result().str(0, HERALD_FIELD_NAME) != nullptr);
                done++;
            });
            CHECK(sub && sub.op != 0);
        }
        /* A callback that throws: herald.hpp keeps the exception out of C. */
        CHECK(c.send(m, [&done](const herald::Completion &) {
            done++;
            throw std::runtime_error("not across the C ABI");
        }));
        /* Futures. */
        std::vector<std::future<herald::Completion>> fs;
        for (int i = 0; i < 3; i++)
            fs.push_back(c.send(m));
        for (auto &f : fs) {
            herald::Completion r = get(std::move(f));
            CHECK(r.ok() && r.op() != 0 && !r.cancelled());
            const char *path = r.result().str(0, HERALD_FIELD_NAME);
            CHECK(path && std::strstr(path, ".eml"));
        }
        /* A refused call: a ready future carrying the refusal. */
        herald::Message empty;
        herald::Completion refused = get(c.send(empty));
        CHECK(refused.op() == 0 && refused.status().code() == HERALD_STATUS_INVALID_ARGUMENT);
        CHECK(!refused.detail().empty());
        herald::Submitted bad = c.send(empty, [](const herald::Completion &) { CHECK(!"never called"); });
        CHECK(!bad && bad.op == 0);
        /* No callback: the completion is queued. */
        herald::Submitted q = c.send(m, nullptr);
        CHECK(q);
        herald::QueuedCompletion qc = c.next(30000);
        CHECK(qc && qc->op == q.op && qc->status == HERALD_STATUS_OK);
        CHECK(qc.copy().result().size() == 1);
        CHECK(!c.next(0));
        CHECK_OK(c.flush(30000));
        CHECK(done == 6);
    }
    /* Every std::function herald held is gone with the client. */
    CHECK(witness.use_count() == 1);
}

static herald::Client connect(std::uint32_t protocol, std::initializer_list<std::pair<std::uint32_t, std::string>> strs,
                              std::initializer_list<std::pair<std::uint32_t, std::int64_t>> ints)
{
    herald::Options o(protocol);
    for (const auto &s : strs)
        CHECK_OK(o.set_str(s.first, s.second));
    for (const auto &i : ints)
        CHECK_OK(o.set_int(i.first, i.second));
    auto c = herald::Client::create(o);
    if (!c) {
        std::fprintf(stderr, "client: %s\n", c.status().message().c_str());
        std::exit(2);
    }
    return std::move(c).value();
}

static void test_smtp(int port)
{
    herald::Client c = connect(HERALD_PROTOCOL_SMTP, {{HERALD_OPT_HOST, "127.0.0.1"}},
                               {{HERALD_OPT_PORT, port}, {HERALD_OPT_SECURITY, HERALD_SECURITY_NONE}});
    std::mutex mu;
    std::vector<std::string> lines;
    CHECK_OK(c.set_log(HERALD_LOG_TRACE, [&](std::uint32_t level, const char *line) {
        std::lock_guard<std::mutex> g(mu);
        CHECK(level >= HERALD_LOG_ERROR && level <= HERALD_LOG_TRACE);
        lines.emplace_back(line);
    }));
    herald::Message m = hello("smtp");
    std::vector<std::future<herald::Completion>> fs;
    for (int i = 0; i < 10; i++)
        fs.push_back(c.send(m));
    for (auto &f : fs) {
        herald::Completion r = get(std::move(f));
        CHECK(r.ok() && r.reply_code() == 250);
        CHECK(r.result().size() == 2);
        CHECK(r.result().str(0, HERALD_FIELD_NAME) && std::string(r.result().str(0, HERALD_FIELD_NAME)) == "one@example.org");
        CHECK(r.result().str(1, HERALD_FIELD_NAME) && std::string(r.result().str(1, HERALD_FIELD_NAME)) == "two@example.org");
        CHECK(r.result().integer(1, HERALD_FIELD_REPLY_CODE) == 250);
    }
    std::promise<herald::Completion> p;
    CHECK(c.send_raw("raw@example.org", {"x@example.org"}, "Subject: raw\r\n\r\nraw body\r\n",
                     [&p](const herald::Completion &r) { p.set_value(r); }));
    herald::Completion raw = get(p.get_future());
    CHECK(raw.ok() && raw.result().size() == 1);
    CHECK_OK(c.set_log(0, nullptr));
    std::lock_guard<std::mutex> g(mu);
    bool saw_mail_from = false;
    for (const auto &l : lines)
        saw_mail_from |= l.find("MAIL FROM") != std::string::npos;
    CHECK(saw_mail_from);
}

static std::string note(int i)
{
    return "From: a@example.org\r\nTo: carol@example.org\r\nSubject: cpp " + std::to_string(i) +
           "\r\nMessage-ID: <cpp" + std::to_string(i) + "@example.org>\r\n\r\nbody " + std::to_string(i) + "\r\n";
}

static void test_imap(int port, const std::string &ca)
{
    auto idle_done = std::make_shared<std::atomic<int>>(0);
    {
        herald::Client c = connect(HERALD_PROTOCOL_IMAP,
                                   {{HERALD_OPT_HOST, "127.0.0.1"}, {HERALD_OPT_CA_FILE, ca},
                                    {HERALD_OPT_USERNAME, "carol"}, {HERALD_OPT_PASSWORD, "carolpass"}},
                                   {{HERALD_OPT_PORT, port}});
        CHECK(get(c.imap_create("Cpp")).ok());
        herald::Completion appended = get(c.imap_append("Cpp", {note(1), note(2), note(3)}, "\\Seen"));
        CHECK(appended.ok() && appended.result().size() == 3);
        CHECK(appended.result().uid(0) != 0);

        herald::Completion found = get(c.imap_search("Cpp", "SUBJECT \"cpp\""));
        CHECK(found.ok() && found.result().size() == 3);

        std::promise<herald::Completion> fetched;
        CHECK(c.imap_fetch("Cpp", "1:*", HERALD_FETCH_ENVELOPE | HERALD_FETCH_BODY | HERALD_FETCH_FLAGS,
                           [&fetched](const herald::Completion &r) { fetched.set_value(r); }));
        herald::Completion f = get(fetched.get_future());
        CHECK(f.ok() && f.result().size() == 3);
        CHECK(f.result().str(1, HERALD_FIELD_SUBJECT) && std::string(f.result().str(1, HERALD_FIELD_SUBJECT)) == "cpp 2");
        CHECK(f.result().bytes_str(2) == note(3)); /* byte-exact, and copied out of the C result */

        CHECK(get(c.imap_store("Cpp", "1:*", HERALD_STORE_ADD, "\\Flagged")).ok());
        herald::Completion flags = get(c.imap_fetch("Cpp", "1", HERALD_FETCH_FLAGS));
        CHECK(flags.ok() && flags.result().str(0, HERALD_FIELD_FLAGS) &&
              std::strstr(flags.result().str(0, HERALD_FIELD_FLAGS), "\\Flagged"));
        CHECK(get(c.imap_store("Cpp", "1:*", HERALD_STORE_REMOVE, "\\Flagged")).ok());

        herald::Completion none = get(c.imap_search("NoSuchBox", "ALL"));
        CHECK(none.status().code() == HERALD_STATUS_NOT_FOUND);

        /* IDLE: many changes to one std::function, then one completion. The
           IDLE reports changes after its own SELECT, so messages are stored
           until one is reported (a store before that SELECT is not a change). */
        std::promise<std::uint64_t> saw;
        std::atomic<bool> saw_set{false};
        std::promise<herald::Completion> idle_end;
        herald::Submitted idle = c.imap_idle(
            "Cpp",
            [&](const herald::Completion &r) {
                CHECK(r.ok() && r.result().size() == 1);
                std::uint64_t exists = r.result().integer(0, HERALD_FIELD_EXISTS);
                if (exists >= 4 && !saw_set.exchange(true))
                    saw.set_value(exists);
            },
            [&idle_end, idle_done](const herald::Completion &r) {
                (*idle_done)++;
                idle_end.set_value(r);
            });
        CHECK(idle);
        /* The IDLE holds one pooled connection; the append takes another. */
        auto changed = saw.get_future();
        bool reported = false;
        for (int attempt = 0; attempt < 30 && !reported; attempt++) {
            CHECK(get(c.imap_append("Cpp", {note(4 + attempt)}, "")).ok());
            reported = changed.wait_for(1s) == std::future_status::ready;
        }
        CHECK(reported);
        CHECK_OK(c.cancel(idle.op));
        herald::Completion end = get(idle_end.get_future());
        CHECK(end.cancelled() && end.status().code() == HERALD_STATUS_CANCELLED && end.op() == idle.op);

        /* Two messages for the POP3 test. */
        CHECK(get(c.imap_append("INBOX", {note(11), note(12)}, "")).ok());

        /* An IDLE still running when the client goes: it completes, cancelled, before the destructor returns. */
        CHECK(c.imap_idle("INBOX", nullptr, [idle_done](const herald::Completion &r) {
            CHECK(r.cancelled());
            (*idle_done)++;
        }));
    }
    CHECK(*idle_done == 2);
    CHECK(idle_done.use_count() == 1);
}

static void test_pop3(int port, const std::string &ca)
{
    herald::Client c = connect(HERALD_PROTOCOL_POP3,
                               {{HERALD_OPT_HOST, "127.0.0.1"}, {HERALD_OPT_CA_FILE, ca},
                                {HERALD_OPT_USERNAME, "carol"}, {HERALD_OPT_PASSWORD, "carolpass"}},
                               {{HERALD_OPT_PORT, port}});
    herald::Completion list = get(c.pop3_list());
    CHECK(list.ok() && list.result().size() == 2);
    if (list.result().size() != 2)
        return;
    std::vector<std::string> uidls;
    for (std::size_t i = 0; i < 2; i++) {
        const char *u = list.result().str(i, HERALD_FIELD_NAME);
        CHECK(u != nullptr);
        uidls.emplace_back(u ? u : "");
        CHECK(list.result().integer(i, HERALD_FIELD_SIZE) == note(11 + static_cast<int>(i)).size());
    }
    /* Retrieve and TOP queued together (pipelined), as callbacks and a future. */
    std::promise<herald::Completion> first;
    CHECK(c.pop3_retrieve(uidls[0], [&first](const herald::Completion &r) { first.set_value(r); }));
    auto top = c.pop3_top(uidls[1], 0);
    herald::Completion r = get(first.get_future());
    CHECK(r.ok() && r.result().bytes_str(0) == note(11));
    herald::Completion t = get(std::move(top));
    CHECK(t.ok() && t.result().bytes_str(0).find("Subject: cpp 12\r\n") != std::string::npos);
    CHECK(t.result().bytes_str(0).find("body 12") == std::string::npos);
    CHECK(get(c.pop3_retrieve("no-such-uidl")).status().code() == HERALD_STATUS_NOT_FOUND);

    herald::Completion del = get(c.pop3_delete(uidls));
    CHECK(del.ok() && del.result().size() == 2);
    CHECK(get(c.pop3_list()).result().size() == 0);
}

int main(int argc, char **argv)
{
    std::string dir = argc > 1 ? argv[1] : "cpp-outbox";
    mkdir(dir.c_str(), 0755);
    test_basics();
    test_pickup(dir);
    std::string with;
    if (const char *smtp = std::getenv("HERALD_TEST_SMTP_PORT")) {
        test_smtp(std::atoi(smtp));
        with += " SMTP";
    }
    const char *imap = std::getenv("HERALD_TEST_IMAP_PORT");
    const char *ca = std::getenv("HERALD_TEST_CA_FILE");
    if (imap && ca) {
        test_imap(std::atoi(imap), ca);
        with += " IMAP";
    }
    const char *pop3 = std::getenv("HERALD_TEST_POP3_PORT");
    if (pop3 && ca) {
        test_pop3(std::atoi(pop3), ca);
        with += " POP3";
    }
    if (failures) {
        std::fprintf(stderr, "herald_test.cpp: %d checks failed\n", failures);
        return 1;
    }
    std::printf("herald_test.cpp: ok (PICKUP%s)\n", with.c_str());
    return 0;
}
