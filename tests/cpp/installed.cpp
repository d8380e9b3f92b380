/*
 * Built by scripts/test.d/20-install.sh against an installed herald, with
 * `pkg-config --cflags --libs herald`: sends three messages through PICKUP
 * into the directory argv[1], one with a lambda, two as futures.
 */
#include <chrono>
#include <cstdio>
#include <future>

#include <herald.hpp>

int main(int argc, char **argv)
{
    if (argc != 2)
        return std::fprintf(stderr, "usage: installed DIR\n"), 2;
    if (herald::version_number() != HERALD_VERSION_NUMBER)
        return std::fprintf(stderr, "header %s, library %s\n", HERALD_VERSION, herald::version()), 1;
    herald::Options o(HERALD_PROTOCOL_PICKUP);
    if (herald::Status s = o.set_str(HERALD_OPT_PICKUP_DIR, argv[1]); !s)
        return std::fprintf(stderr, "%s\n", s.message().c_str()), 1;
    auto client = herald::Client::create(o);
    if (!client)
        return std::fprintf(stderr, "%s\n", client.status().message().c_str()), 1;
    herald::Message m;
    m.set_from("me@example.org");
    m.add_to("you@example.org");
    m.set_subject("installed");
    m.set_text("hello\n");
    std::promise<bool> first;
    client->send(m, [&first](const herald::Completion &c) { first.set_value(c.ok()); });
    auto second = client->send(m);
    auto third = client->send(m);
    using namespace std::chrono_literals;
    auto f = first.get_future();
    if (f.wait_for(30s) != std::future_status::ready || !f.get())
        return std::fprintf(stderr, "the callback's send failed\n"), 1;
    for (auto *fut : {&second, &third}) {
        if (fut->wait_for(30s) != std::future_status::ready)
            return std::fprintf(stderr, "a future did not complete\n"), 1;
        herald::Completion c = fut->get();
        if (!c.ok())
            return std::fprintf(stderr, "%s\n", c.status().message().c_str()), 1;
    }
    std::printf("installed.cpp: ok\n");
    return 0;
}
