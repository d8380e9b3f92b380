/*
 * herald.hpp: a C++17 header-only wrapper over herald.h.
 *
 * - RAII handles: herald::Options, herald::Message, herald::Client (move-only;
 *   each frees its C handle), herald::QueuedCompletion (a completion taken
 *   from the client's queue).
 * - No exceptions are needed: every call that can fail returns a
 *   herald::Status (code + the detail herald_last_error() gave), or an
 *   herald::Expected<T> holding a value or a Status. herald's own errors
 *   never throw; only std::bad_alloc can, as everywhere in the standard
 *   library.
 * - Callbacks are std::function (lambdas with captures welcome). Each op's
 *   function is owned by herald through the op's user_token and freed right
 *   after the op's one completion, so captured objects live exactly as long
 *   as the op. Callbacks run on herald's delivery thread (see herald.h). An
 *   exception thrown by a callback cannot cross herald's C frames: it is
 *   caught and dropped.
 * - Every op also has a std::future<herald::Completion> flavour. A call that
 *   is refused gives an already-ready future whose completion carries the
 *   refusal (op 0, the status and the detail). Don't wait on such a future
 *   inside a completion callback of the same client: the completion would be
 *   delivered on that very thread, after the callback returns.
 * - herald::Completion is a deep copy of a C completion (status, detail,
 *   result items with their fields and bytes), so it may be kept, copied and
 *   moved anywhere, unlike the C struct, which lives only during the callback.
 *
 * Link as for C: `pkg-config --cflags --libs herald`.
 */
#ifndef HERALD_HPP
#define HERALD_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "herald.h"

namespace herald {

/** herald's version, "MAJOR.MINOR.PATCH", of the library loaded at run time. */
inline const char *version() noexcept { return herald_version(); }

/** The library's MAJOR * 1000000 + MINOR * 1000 + PATCH (HERALD_VERSION_NUMBER is the header's). */
inline std::uint32_t version_number() noexcept { return herald_version_number(); }

/** A status code and, when it is not OK, the reason. */
class Status {
public:
    /** OK. */
    Status() noexcept = default;
    /** `code` with `detail`. */
    Status(herald_status code, std::string detail) : code_(code), detail_(std::move(detail)) {}

    /**
     * The status a C call returned: when it failed, the detail is copied
     * from herald_last_error() (call this right after the C call, on the
     * same thread).
     */
    static Status of(herald_status code) { return code == HERALD_STATUS_OK ? Status() : Status(code, herald_last_error()); }

    /** True for HERALD_STATUS_OK. */
    bool ok() const noexcept { return code_ == HERALD_STATUS_OK; }
    /** Same as ok(). */
    explicit operator bool() const noexcept { return ok(); }
    /** The HERALD_STATUS_* code. */
    herald_status code() const noexcept { return code_; }
    /** The detail ("" for OK). */
    const std::string &detail() const noexcept { return detail_; }
    /** herald_status_str() of the code: static text. */
    const char *name() const noexcept { return herald_status_str(code_); }
    /** "name: detail", or "ok". */
    std::string message() const { return detail_.empty() ? std::string(name()) : std::string(name()) + ": " + detail_; }

private:
    herald_status code_ = HERALD_STATUS_OK;
    std::string detail_;
};

/** A value, or the Status saying why there is none. */
template <class T> class Expected {
public:
    /** A value. */
    Expected(T value) : value_(std::move(value)) {}
    /** No value: `status` (not OK) says why. */
    Expected(Status status) : status_(std::move(status)) {}

    /** True when there is a value. */
    bool ok() const noexcept { return value_.has_value(); }
    /** Same as ok(). */
    explicit operator bool() const noexcept { return ok(); }
    /** OK with a value, else why not. */
    const Status &status() const noexcept { return status_; }
    /** The value; only when ok(). */
    T &value() & noexcept { return *value_; }
    /** The value; only when ok(). */
    const T &value() const & noexcept { return *value_; }
    /** The value, moved out; only when ok(). */
    T &&value() && noexcept { return std::move(*value_); }
    /** The value's members; only when ok(). */
    T *operator->() noexcept { return &*value_; }
    /** The value's members; only when ok(). */
    const T *operator->() const noexcept { return &*value_; }

private:
    std::optional<T> value_;
    Status status_;
};

/** An op's result: items with a uid, HERALD_FIELD_* fields and maybe bytes (copied). */
class Result {
public:
    /** Number of items. */
    std::size_t size() const noexcept { return items_.size(); }
    /** True without items. */
    bool empty() const noexcept { return items_.empty(); }
    /** Item i's IMAP UID or POP3 message number; 0 if none or out of range. */
    std::uint64_t uid(std::size_t i) const noexcept { return i < items_.size() ? items_[i].uid : 0; }
    /** A text field of item i; nullptr if absent. Valid as long as this Result. */
    const char *str(std::size_t i, std::uint32_t field) const noexcept
    {
        if (i >= items_.size())
            return nullptr;
        for (const auto &f : items_[i].strs)
            if (f.first == field)
                return f.second.c_str();
        return nullptr;
    }
    /** A number field of item i; 0 if absent. */
    std::uint64_t integer(std::size_t i, std::uint32_t field) const noexcept
    {
        if (i >= items_.size())
            return 0;
        for (const auto &f : items_[i].ints)
            if (f.first == field)
                return f.second;
        return 0;
    }
    /** True when item i has bytes (a message or its header block). */
    bool has_bytes(std::size_t i) const noexcept { return i < items_.size() && items_[i].has_bytes; }
    /** Item i's bytes; empty if none. */
    const std::vector<std::uint8_t> &bytes(std::size_t i) const noexcept
    {
        static const std::vector<std::uint8_t> none;
        return i < items_.size() ? items_[i].bytes : none;
    }
    /** Item i's bytes as a string (messages are bytes: this copies them). */
    std::string bytes_str(std::size_t i) const
    {
        const auto &b = bytes(i);
        return std::string(b.begin(), b.end());
    }

    /** Copies a C result (NULL gives an empty one): fields 1..kMaxField of every item. */
    static Result copy(const herald_result *r)
    {
        Result out;
        std::size_t n = herald_result_count(r);
        out.items_.reserve(n);
        for (std::size_t i = 0; i < n; i++) {
            Item it;
            it.uid = herald_result_uid(r, i);
            for (std::uint32_t f = 1; f <= kMaxField; f++) {
                if (const char *s = herald_result_str(r, i, f))
                    it.strs.emplace_back(f, s);
                else if (std::uint64_t v = herald_result_int(r, i, f))
                    it.ints.emplace_back(f, v);
            }
            std::size_t len = 0;
            if (const std::uint8_t *b = herald_result_bytes(r, i, &len)) {
                it.has_bytes = true;
                it.bytes.assign(b, b + len);
            }
            out.items_.push_back(std::move(it));
        }
        return out;
    }

    /** The highest HERALD_FIELD_* id copy() looks at. */
    static constexpr std::uint32_t kMaxField = 64;

private:
    struct Item {
        std::uint64_t uid = 0;
        std::vector<std::pair<std::uint32_t, std::string>> strs;
        std::vector<std::pair<std::uint32_t, std::uint64_t>> ints;
        bool has_bytes = false;
        std::vector<std::uint8_t> bytes;
    };
    std::vector<Item> items_;
};

/** An op's completion, copied out of herald's C struct: keep it as long as you like. */
class Completion {
public:
    /** An empty completion (op 0, OK). */
    Completion() = default;

    /** Copies a C completion (during its callback, or before herald_completion_free). */
    static Completion copy(const herald_completion &c)
    {
        Completion out;
        out.op_ = c.op;
        out.status_ = Status(c.status, c.detail ? c.detail : "");
        out.cancelled_ = c.cancelled != 0;
        out.reply_code_ = c.reply_code;
        out.has_result_ = c.result != nullptr;
        out.result_ = Result::copy(c.result);
        return out;
    }
    /** The completion of a call that was refused: op 0, `status`. */
    static Completion refused(Status status)
    {
        Completion out;
        out.status_ = std::move(status);
        return out;
    }

    /** The op id (0 for a refused call). */
    herald_op op() const noexcept { return op_; }
    /** The status with the completion's detail. */
    const Status &status() const noexcept { return status_; }
    /** True for HERALD_STATUS_OK. */
    bool ok() const noexcept { return status_.ok(); }
    /** True exactly when the op was cancelled (status HERALD_STATUS_CANCELLED). */
    bool cancelled() const noexcept { return cancelled_; }
    /** The server's last reply code (SMTP 250, 550 ...), 0 if none. */
    std::int32_t reply_code() const noexcept { return reply_code_; }
    /** Server text or local reason. */
    const std::string &detail() const noexcept { return status_.detail(); }
    /** True when the op had a result (even an empty one). */
    bool has_result() const noexcept { return has_result_; }
    /** The result (empty when the op had none). */
    const Result &result() const noexcept { return result_; }

private:
    herald_op op_ = 0;
    Status status_;
    bool cancelled_ = false;
    std::int32_t reply_code_ = 0;
    bool has_result_ = false;
    Result result_;
};

/** A completion taken from a client's queue (RAII over herald_completion_free). */
class QueuedCompletion {
public:
    /** None. */
    QueuedCompletion() noexcept = default;
    /** Takes ownership of `c` (from herald_client_next; may be NULL). */
    explicit QueuedCompletion(herald_completion *c) noexcept : c_(c) {}
    /** Moves. */
    QueuedCompletion(QueuedCompletion &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    /** Moves. */
    QueuedCompletion &operator=(QueuedCompletion &&o) noexcept
    {
        if (this != &o) {
            herald_completion_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    QueuedCompletion(const QueuedCompletion &) = delete;
    QueuedCompletion &operator=(const QueuedCompletion &) = delete;
    /** DESTRUCTOR: herald_completion_free. */
    ~QueuedCompletion() { herald_completion_free(c_); }

    /** True when there is a completion. */
    explicit operator bool() const noexcept { return c_ != nullptr; }
    /** The C completion (valid as long as this object). */
    const herald_completion *get() const noexcept { return c_; }
    /** The C completion's members. */
    const herald_completion *operator->() const noexcept { return c_; }
    /** A deep copy (only when there is a completion). */
    Completion copy() const { return Completion::copy(*c_); }

private:
    herald_completion *c_ = nullptr;
};

/** Client options (RAII over herald_options_new / herald_options_free). */
class Options {
public:
    /** New options for `protocol` (HERALD_PROTOCOL_*); !valid() for an unknown one. */
    explicit Options(std::uint32_t protocol) noexcept : o_(herald_options_new(protocol)) {}
    /** Moves. */
    Options(Options &&o) noexcept : o_(std::exchange(o.o_, nullptr)) {}
    /** Moves. */
    Options &operator=(Options &&o) noexcept
    {
        if (this != &o) {
            herald_options_free(o_);
            o_ = std::exchange(o.o_, nullptr);
        }
        return *this;
    }
    Options(const Options &) = delete;
    Options &operator=(const Options &) = delete;
    /** DESTRUCTOR. */
    ~Options() { herald_options_free(o_); }

    /** False for an unknown protocol (every setter then fails). */
    bool valid() const noexcept { return o_ != nullptr; }
    /** Sets a string option (HERALD_OPT_*); checked now. */
    Status set_str(std::uint32_t option, const std::string &value) { return Status::of(herald_options_set_str(o_, option, value.c_str())); }
    /** Sets an integer option (HERALD_OPT_*); checked now. */
    Status set_int(std::uint32_t option, std::int64_t value) { return Status::of(herald_options_set_int(o_, option, value)); }
    /** The C handle (still owned by this object). */
    const herald_options *get() const noexcept { return o_; }

private:
    herald_options *o_;
};

/** A message being composed (RAII over herald_message_new / herald_message_free). */
class Message {
public:
    /** A new, empty message. */
    Message() noexcept : m_(herald_message_new()) {}
    /** Moves. */
    Message(Message &&o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    /** Moves. */
    Message &operator=(Message &&o) noexcept
    {
        if (this != &o) {
            herald_message_free(m_);
            m_ = std::exchange(o.m_, nullptr);
        }
        return *this;
    }
    Message(const Message &) = delete;
    Message &operator=(const Message &) = delete;
    /** DESTRUCTOR. */
    ~Message() { herald_message_free(m_); }

    /** herald_message_set_from. */
    Status set_from(const std::string &mailbox) { return Status::of(herald_message_set_from(m_, mailbox.c_str())); }
    /** herald_message_add_to. */
    Status add_to(const std::string &mailbox) { return Status::of(herald_message_add_to(m_, mailbox.c_str())); }
    /** herald_message_add_cc. */
    Status add_cc(const std::string &mailbox) { return Status::of(herald_message_add_cc(m_, mailbox.c_str())); }
    /** herald_message_add_bcc. */
    Status add_bcc(const std::string &mailbox) { return Status::of(herald_message_add_bcc(m_, mailbox.c_str())); }
    /** herald_message_set_subject. */
    Status set_subject(const std::string &utf8) { return Status::of(herald_message_set_subject(m_, utf8.c_str())); }
    /** herald_message_set_text. */
    Status set_text(const std::string &utf8) { return Status::of(herald_message_set_text(m_, utf8.c_str())); }
    /** herald_message_set_html. */
    Status set_html(const std::string &utf8) { return Status::of(herald_message_set_html(m_, utf8.c_str())); }
    /** herald_message_add_header. */
    Status add_header(const std::string &name, const std::string &value)
    {
        return Status::of(herald_message_add_header(m_, name.c_str(), value.c_str()));
    }
    /** herald_message_attach_file; an empty content_type guesses it. */
    Status attach_file(const std::string &path, const std::string &content_type = std::string())
    {
        return Status::of(herald_message_attach_file(m_, path.c_str(), content_type.empty() ? nullptr : content_type.c_str()));
    }
    /** herald_message_attach_bytes. */
    Status attach_bytes(const std::string &filename, const std::string &content_type, const void *data, std::size_t len)
    {
        return Status::of(herald_message_attach_bytes(m_, filename.c_str(), content_type.c_str(),
                                                      static_cast<const std::uint8_t *>(data), len));
    }
    /** herald_message_to_bytes: the RFC 5322 bytes herald would send. */
    Expected<std::string> to_bytes() const
    {
        std::uint8_t *p = nullptr;
        std::size_t len = 0;
        herald_status s = herald_message_to_bytes(m_, &p, &len);
        if (s != HERALD_STATUS_OK)
            return Status::of(s);
        std::string out(reinterpret_cast<const char *>(p), len);
        herald_bytes_free(p, len);
        return out;
    }
    /** The C handle (still owned by this object). */
    const herald_message *get() const noexcept { return m_; }

private:
    herald_message *m_;
};

/** A completion callback: runs on herald's delivery thread. */
using Callback = std::function<void(const Completion &)>;

/** What an *_async call gave: its op id, or why it was refused (then no callback comes). */
struct Submitted {
    /** OK, or why the call was refused. */
    Status status;
    /** The op (0 when refused). */
    herald_op op = 0;
    /** True when the op was accepted. */
    explicit operator bool() const noexcept { return status.ok(); }
};

namespace detail {

/** What one op owns until its completion: its callbacks, or its promise. */
struct Pending {
    Callback done;
    Callback on_change;
    std::promise<Completion> promise;
    bool is_future = false;
};

/** Runs `f` on a copy of `c`; exceptions stop here (they must not reach C). */
inline void call(const Callback &f, const herald_completion *c) noexcept
{
    try {
        if (f)
            f(Completion::copy(*c));
    } catch (...) {
    }
}

/** The C callback of every op submitted with a std::function or a future. */
inline void on_done(const herald_completion *c) noexcept
{
    std::unique_ptr<Pending> p(static_cast<Pending *>(c->user_token));
    if (p->is_future) {
        try {
            p->promise.set_value(Completion::copy(*c));
        } catch (...) {
        }
    } else {
        call(p->done, c);
    }
}

/**
 * IMAP IDLE's change notifications (the op's token is its Pending). Runs a
 * copy of the function: should it free the client, the IDLE's final
 * completion (which frees the Pending) is delivered while it still runs.
 */
inline void on_change(const herald_completion *c) noexcept
{
    try {
        Callback f = static_cast<Pending *>(c->user_token)->on_change;
        call(f, c);
    } catch (...) {
    }
}

/** The log callback's trampoline. */
inline void on_log(void *user, std::uint32_t level, const char *line) noexcept
{
    try {
        (*static_cast<std::function<void(std::uint32_t, const char *)> *>(user))(level, line);
    } catch (...) {
    }
}

} // namespace detail

/**
 * A client of one server (RAII over herald_client_new / herald_client_free).
 * Every method may be called from any thread, also from callbacks. The
 * destructor is herald_client_free: queued and running ops complete
 * (cancelled), their callbacks run and their futures become ready, before it
 * returns. Each op comes in three flavours:
 *   op(args, callback)  the callback gets the completion (on herald's delivery thread);
 *   op(args, nullptr)   the completion is queued: take it with next();
 *   op(args)            a std::future<Completion>.
 */
class Client {
public:
    /** Makes a client from `o` (copied): the client, or why not. */
    static Expected<Client> create(const Options &o)
    {
        herald_client *c = nullptr;
        herald_status s = herald_client_new(o.get(), &c);
        if (s != HERALD_STATUS_OK)
            return Status::of(s);
        return Client(c);
    }
    /** Moves. */
    Client(Client &&o) noexcept
        : c_(std::exchange(o.c_, nullptr)), log_(std::move(o.log_)), old_logs_(std::move(o.old_logs_))
    {
    }
    /** Moves (frees the client this one held). */
    Client &operator=(Client &&o) noexcept
    {
        if (this != &o) {
            herald_client_free(c_);
            c_ = std::exchange(o.c_, nullptr);
            log_ = std::move(o.log_);
            old_logs_ = std::move(o.old_logs_);
        }
        return *this;
    }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;
    /** DESTRUCTOR: herald_client_free (every op completes before it returns). */
    ~Client() { herald_client_free(c_); }

    /** The C handle (still owned by this object). */
    herald_client *get() const noexcept { return c_; }

    /** herald_cancel. */
    Status cancel(herald_op op) { return Status::of(herald_cancel(c_, op)); }
    /** herald_wait (-1 = forever). */
    Status wait(herald_op op, std::int32_t timeout_ms = -1) { return Status::of(herald_wait(c_, op, timeout_ms)); }
    /** herald_client_flush (-1 = forever). */
    Status flush(std::int32_t timeout_ms = -1) { return Status::of(herald_client_flush(c_, timeout_ms)); }
    /** The next queued completion (ops submitted with nullptr), or none within timeout_ms. */
    QueuedCompletion next(std::int32_t timeout_ms) noexcept { return QueuedCompletion(herald_client_next(c_, timeout_ms)); }
    /** herald_client_wakeup_handle: a file descriptor (Windows: a HANDLE) readable while completions are queued. */
    std::int64_t wakeup_handle() const noexcept { return herald_client_wakeup_handle(c_); }
    /**
     * Logs levels 1..max_level (HERALD_LOG_*) to `fn`, on herald's threads
     * (possibly several at once); an empty `fn` stops logging. `line` is
     * valid only during the call. Don't call set_log from two threads at once.
     */
    Status set_log(std::uint32_t max_level, std::function<void(std::uint32_t level, const char *line)> fn)
    {
        if (!fn) {
            Status s = Status::of(herald_client_set_log(c_, max_level, nullptr, nullptr));
            if (s.ok())
                old_logs_.push_back(std::move(log_));
            return s;
        }
        auto next = std::make_unique<std::function<void(std::uint32_t, const char *)>>(std::move(fn));
        Status s = Status::of(herald_client_set_log(c_, max_level, detail::on_log, next.get()));
        if (s.ok()) {
            // A log call on another thread may still be running with the old
            // function: keep it until the client is freed.
            old_logs_.push_back(std::move(log_));
            log_ = std::move(next);
        }
        return s;
    }

private:
    // The C call of each op, given its callback, token and op_out (declared
    // before use: their return types are deduced).
    template <class F> auto with1(F fn, const std::string &a)
    {
        return [this, fn, &a](herald_callback f, void *t, herald_op *op) { return fn(c_, a.c_str(), f, t, op); };
    }
    template <class F> auto with2(F fn, const std::string &a, const std::string &b)
    {
        return [this, fn, &a, &b](herald_callback f, void *t, herald_op *op) { return fn(c_, a.c_str(), b.c_str(), f, t, op); };
    }
    template <class F> auto with3(F fn, const std::string &a, const std::string &b, const std::string &d)
    {
        return [this, fn, &a, &b, &d](herald_callback f, void *t, herald_op *op) {
            return fn(c_, a.c_str(), b.c_str(), d.c_str(), f, t, op);
        };
    }
    auto raw(const std::string &from, const std::vector<std::string> &to, const std::string &data)
    {
        return [this, &from, &to, &data](herald_callback f, void *t, herald_op *op) {
            std::vector<const char *> rcpts;
            for (const auto &r : to)
                rcpts.push_back(r.c_str());
            return herald_send_raw_async(c_, from.c_str(), rcpts.data(), rcpts.size(),
                                         reinterpret_cast<const std::uint8_t *>(data.data()), data.size(), f, t, op);
        };
    }
    auto fetch(const std::string &mailbox, const std::string &uid_set, std::uint32_t parts)
    {
        return [this, &mailbox, &uid_set, parts](herald_callback f, void *t, herald_op *op) {
            return herald_imap_fetch_async(c_, mailbox.c_str(), uid_set.c_str(), parts, f, t, op);
        };
    }
    auto store(const std::string &mailbox, const std::string &uid_set, std::int32_t mode, const std::string &flags)
    {
        return [this, &mailbox, &uid_set, mode, &flags](herald_callback f, void *t, herald_op *op) {
            return herald_imap_store_async(c_, mailbox.c_str(), uid_set.c_str(), mode, flags.c_str(), f, t, op);
        };
    }
    auto append(const std::string &mailbox, const std::vector<std::string> &messages, const std::string &flags)
    {
        return [this, &mailbox, &messages, &flags](herald_callback f, void *t, herald_op *op) {
            std::vector<const std::uint8_t *> data;
            std::vector<std::size_t> lens;
            for (const auto &m : messages) {
                data.push_back(reinterpret_cast<const std::uint8_t *>(m.data()));
                lens.push_back(m.size());
            }
            return herald_imap_append_async(c_, mailbox.c_str(), data.data(), lens.data(), data.size(),
                                            flags.empty() ? nullptr : flags.c_str(), f, t, op);
        };
    }
    auto test_account_call()
    {
        return [this](herald_callback f, void *t, herald_op *op) { return herald_client_test_async(c_, f, t, op); };
    }
    auto pop3_list_call()
    {
        return [this](herald_callback f, void *t, herald_op *op) { return herald_pop3_list_async(c_, f, t, op); };
    }
    auto top(const std::string &uidl, std::uint32_t lines)
    {
        return [this, &uidl, lines](herald_callback f, void *t, herald_op *op) {
            return herald_pop3_top_async(c_, uidl.c_str(), lines, f, t, op);
        };
    }
    auto dele(const std::vector<std::string> &uidls)
    {
        return [this, &uidls](herald_callback f, void *t, herald_op *op) {
            std::vector<const char *> names;
            for (const auto &u : uidls)
                names.push_back(u.c_str());
            return herald_pop3_delete_async(c_, names.data(), names.size(), f, t, op);
        };
    }

public:
    // --- sending (SMTP and PICKUP clients) ---

    /** herald_send_async. */
    Submitted send(const Message &m, Callback cb)
    {
        return submit(std::move(cb), [&](herald_callback f, void *t, herald_op *op) { return herald_send_async(c_, m.get(), f, t, op); });
    }
    /** herald_send_async, as a future. */
    std::future<Completion> send(const Message &m)
    {
        return future([&](herald_callback f, void *t, herald_op *op) { return herald_send_async(c_, m.get(), f, t, op); });
    }
    /** herald_send_raw_async. */
    Submitted send_raw(const std::string &from, const std::vector<std::string> &to, const std::string &data, Callback cb)
    {
        return submit(std::move(cb), raw(from, to, data));
    }
    /** herald_send_raw_async, as a future. */
    std::future<Completion> send_raw(const std::string &from, const std::vector<std::string> &to, const std::string &data)
    {
        return future(raw(from, to, data));
    }

    // --- IMAP ---

    /** herald_imap_list_async. */
    Submitted imap_list(const std::string &pattern, Callback cb) { return submit(std::move(cb), with1(herald_imap_list_async, pattern)); }
    /** herald_imap_list_async, as a future. */
    std::future<Completion> imap_list(const std::string &pattern) { return future(with1(herald_imap_list_async, pattern)); }
    /** herald_imap_create_async. */
    Submitted imap_create(const std::string &mailbox, Callback cb) { return submit(std::move(cb), with1(herald_imap_create_async, mailbox)); }
    /** herald_imap_create_async, as a future. */
    std::future<Completion> imap_create(const std::string &mailbox) { return future(with1(herald_imap_create_async, mailbox)); }
    /** herald_imap_delete_async. */
    Submitted imap_delete(const std::string &mailbox, Callback cb) { return submit(std::move(cb), with1(herald_imap_delete_async, mailbox)); }
    /** herald_imap_delete_async, as a future. */
    std::future<Completion> imap_delete(const std::string &mailbox) { return future(with1(herald_imap_delete_async, mailbox)); }
    /** herald_imap_expunge_async. */
    Submitted imap_expunge(const std::string &mailbox, Callback cb) { return submit(std::move(cb), with1(herald_imap_expunge_async, mailbox)); }
    /** herald_imap_expunge_async, as a future. */
    std::future<Completion> imap_expunge(const std::string &mailbox) { return future(with1(herald_imap_expunge_async, mailbox)); }
    /** herald_imap_search_async. */
    Submitted imap_search(const std::string &mailbox, const std::string &criteria, Callback cb)
    {
        return submit(std::move(cb), with2(herald_imap_search_async, mailbox, criteria));
    }
    /** herald_imap_search_async, as a future. */
    std::future<Completion> imap_search(const std::string &mailbox, const std::string &criteria)
    {
        return future(with2(herald_imap_search_async, mailbox, criteria));
    }
    /** herald_imap_copy_async. */
    Submitted imap_copy(const std::string &mailbox, const std::string &uid_set, const std::string &target, Callback cb)
    {
        return submit(std::move(cb), with3(herald_imap_copy_async, mailbox, uid_set, target));
    }
    /** herald_imap_copy_async, as a future. */
    std::future<Completion> imap_copy(const std::string &mailbox, const std::string &uid_set, const std::string &target)
    {
        return future(with3(herald_imap_copy_async, mailbox, uid_set, target));
    }
    /** herald_imap_move_async. */
    Submitted imap_move(const std::string &mailbox, const std::string &uid_set, const std::string &target, Callback cb)
    {
        return submit(std::move(cb), with3(herald_imap_move_async, mailbox, uid_set, target));
    }
    /** herald_imap_move_async, as a future. */
    std::future<Completion> imap_move(const std::string &mailbox, const std::string &uid_set, const std::string &target)
    {
        return future(with3(herald_imap_move_async, mailbox, uid_set, target));
    }
    /** herald_imap_fetch_async; `parts` is HERALD_FETCH_* bits. */
    Submitted imap_fetch(const std::string &mailbox, const std::string &uid_set, std::uint32_t parts, Callback cb)
    {
        return submit(std::move(cb), fetch(mailbox, uid_set, parts));
    }
    /** herald_imap_fetch_async, as a future. */
    std::future<Completion> imap_fetch(const std::string &mailbox, const std::string &uid_set, std::uint32_t parts)
    {
        return future(fetch(mailbox, uid_set, parts));
    }
    /** herald_imap_store_async; `mode` is HERALD_STORE_ADD, _REMOVE or _REPLACE. */
    Submitted imap_store(const std::string &mailbox, const std::string &uid_set, std::int32_t mode, const std::string &flags, Callback cb)
    {
        return submit(std::move(cb), store(mailbox, uid_set, mode, flags));
    }
    /** herald_imap_store_async, as a future. */
    std::future<Completion> imap_store(const std::string &mailbox, const std::string &uid_set, std::int32_t mode, const std::string &flags)
    {
        return future(store(mailbox, uid_set, mode, flags));
    }
    /** herald_imap_append_async: the messages in one op; `flags` "" for none. */
    Submitted imap_append(const std::string &mailbox, const std::vector<std::string> &messages, const std::string &flags, Callback cb)
    {
        return submit(std::move(cb), append(mailbox, messages, flags));
    }
    /** herald_imap_append_async, as a future. */
    std::future<Completion> imap_append(const std::string &mailbox, const std::vector<std::string> &messages, const std::string &flags)
    {
        return future(append(mailbox, messages, flags));
    }
    /**
     * herald_imap_idle_async: `on_change` runs for every change (a Completion
     * whose result item 0 has HERALD_FIELD_EXISTS), on herald's delivery
     * thread (an empty `on_change` queues them: take them with next());
     * `done` once, when the IDLE ends (cancel() it). Both functions live
     * until then.
     */
    Submitted imap_idle(const std::string &mailbox, Callback on_change, Callback done)
    {
        auto p = std::make_unique<detail::Pending>();
        p->done = std::move(done);
        p->on_change = std::move(on_change);
        herald_callback change = p->on_change ? detail::on_change : nullptr;
        return start(std::move(p), [&](herald_callback f, void *t, herald_op *op) {
            return herald_imap_idle_async(c_, mailbox.c_str(), change, f, t, op);
        });
    }

    /** herald_client_test_async: connect, TLS, login, capabilities, logout (SMTP, IMAP, POP3). */
    Submitted test_account(Callback cb) { return submit(std::move(cb), test_account_call()); }
    /** herald_client_test_async, as a future. */
    std::future<Completion> test_account() { return future(test_account_call()); }

    // --- POP3 ---

    /** herald_pop3_list_async. */
    Submitted pop3_list(Callback cb) { return submit(std::move(cb), pop3_list_call()); }
    /** herald_pop3_list_async, as a future. */
    std::future<Completion> pop3_list() { return future(pop3_list_call()); }
    /** herald_pop3_retrieve_async. */
    Submitted pop3_retrieve(const std::string &uidl, Callback cb) { return submit(std::move(cb), with1(herald_pop3_retrieve_async, uidl)); }
    /** herald_pop3_retrieve_async, as a future. */
    std::future<Completion> pop3_retrieve(const std::string &uidl) { return future(with1(herald_pop3_retrieve_async, uidl)); }
    /** herald_pop3_top_async. */
    Submitted pop3_top(const std::string &uidl, std::uint32_t lines, Callback cb) { return submit(std::move(cb), top(uidl, lines)); }
    /** herald_pop3_top_async, as a future. */
    std::future<Completion> pop3_top(const std::string &uidl, std::uint32_t lines) { return future(top(uidl, lines)); }
    /** herald_pop3_delete_async. */
    Submitted pop3_delete(const std::vector<std::string> &uidls, Callback cb) { return submit(std::move(cb), dele(uidls)); }
    /** herald_pop3_delete_async, as a future. */
    std::future<Completion> pop3_delete(const std::vector<std::string> &uidls) { return future(dele(uidls)); }

private:
    explicit Client(herald_client *c) noexcept : c_(c) {}

    /** Submits with `cb` owned through the user token; an empty cb queues the completion. */
    template <class Call> Submitted submit(Callback cb, Call &&call)
    {
        if (!cb) {
            Submitted r;
            r.status = Status::of(call(nullptr, nullptr, &r.op));
            return r;
        }
        auto p = std::make_unique<detail::Pending>();
        p->done = std::move(cb);
        return start(std::move(p), std::forward<Call>(call));
    }

    template <class Call> Submitted start(std::unique_ptr<detail::Pending> p, Call &&call)
    {
        Submitted r;
        herald_status s = call(detail::on_done, p.get(), &r.op);
        r.status = Status::of(s);
        if (s == HERALD_STATUS_OK)
            p.release(); // herald's now: freed by detail::on_done
        else
            r.op = 0;
        return r;
    }

    template <class Call> std::future<Completion> future(Call &&call)
    {
        auto p = std::make_unique<detail::Pending>();
        p->is_future = true;
        std::future<Completion> f = p->promise.get_future();
        Submitted r = start(std::move(p), std::forward<Call>(call));
        if (!r) {
            std::promise<Completion> refused;
            refused.set_value(Completion::refused(r.status));
            return refused.get_future();
        }
        return f;
    }

    herald_client *c_ = nullptr;
    std::unique_ptr<std::function<void(std::uint32_t, const char *)>> log_;
    std::vector<std::unique_ptr<std::function<void(std::uint32_t, const char *)>>> old_logs_;
};

} // namespace herald

#endif /* HERALD_HPP */
