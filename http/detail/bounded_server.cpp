#include "bg_jobs/http/detail/bounded_server.hpp"

#include <atomic>
#include <cctype>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::string http_request::header(const std::string& name) const {
  auto i = headers.find(name);
  return i == headers.end() ? std::string{} : i->second;
}

std::optional<std::string> percent_decoded(std::string_view text,
                                           bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size())
        return std::nullopt;
      int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
      if (hi < 0 || lo < 0)
        return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

class session;

} // namespace

struct bounded_server::impl : std::enable_shared_from_this<impl> {
  http_limits limits;
  http_handler handler;
  std::atomic<bool> stopping{false};
  /// Open sessions, so that `stop` can close them; declared before the
  /// I/O context, whose destruction destroys the sessions it still holds.
  std::mutex mtx;
  std::set<session*> sessions;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  uint16_t port = 0;

  void accept();
  void close_all();
};

namespace {

/// One connection: reads one request at a time within the deadline,
/// answers it, and reads the next while the client keeps it alive.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, std::shared_ptr<bounded_server::impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {
    std::lock_guard<std::mutex> guard{server_->mtx};
    server_->sessions.insert(this);
  }

  ~session() {
    std::lock_guard<std::mutex> guard{server_->mtx};
    server_->sessions.erase(this);
  }

  void run() {
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this()] { self->read(); });
  }

  /// Closes the connection from another thread.
  void close() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      self->stream_.close();
    });
  }

private:
  void read() {
    if (server_->stopping)
      return;
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(server_->limits.header_bytes));
    parser_->body_limit(server_->limits.body_bytes);
    stream_.expires_after(server_->limits.request_deadline);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec,
                                                 std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::body_limit) {
      bool headers = ec == http::error::header_limit;
      answer(http_response{headers ? 431 : 413, "text/plain; charset=utf-8",
                           headers ? "request headers too large\n"
                                   : "request body too large\n",
                           {}},
             false, 11);
      return;
    }
    if (ec) {
      // A timeout, a closed connection or a malformed request: nothing
      // more is read. A malformed request that arrived whole is told so.
      if (ec.category() ==
              http::make_error_code(http::error::end_of_stream).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message)
        answer(http_response{400, "text/plain; charset=utf-8",
                             "malformed request\n", {}},
               false, 11);
      else
        stream_.close();
      return;
    }
    if (server_->stopping) {
      stream_.close();
      return;
    }
    auto& msg = parser_->get();
    http_request req;
    req.method = std::string{msg.method_string()};
    size_t fields = 0;
    for (auto& f : msg) {
      if (++fields > server_->limits.header_fields) {
        answer(http_response{431, "text/plain; charset=utf-8",
                             "too many request headers\n", {}},
               false, 11);
        return;
      }
      std::string name{f.name_string()};
      for (auto& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto [i, fresh] = req.headers.emplace(name, std::string{f.value()});
      if (!fresh)
        i->second += ", " + std::string{f.value()};
    }
    req.body = std::move(msg.body());
    std::string_view target{msg.target().data(), msg.target().size()};
    auto q = target.find('?');
    auto path = percent_decoded(target.substr(0, q), false);
    bool ok = path.has_value();
    if (ok)
      req.path = std::move(*path);
    if (ok && q != std::string_view::npos) {
      auto rest = target.substr(q + 1);
      while (ok && !rest.empty()) {
        auto amp = rest.find('&');
        auto pair = rest.substr(0, amp);
        auto eq = pair.find('=');
        auto key = percent_decoded(pair.substr(0, eq), true);
        auto value = percent_decoded(
            eq == std::string_view::npos ? std::string_view{}
                                         : pair.substr(eq + 1),
            true);
        ok = key && value;
        if (ok && !key->empty())
          req.query[*key] = *value;
        rest = amp == std::string_view::npos ? std::string_view{}
                                             : rest.substr(amp + 1);
      }
    }
    if (!ok) {
      answer(http_response{400, "text/plain; charset=utf-8",
                           "malformed percent-encoding\n", {}},
             false, msg.version());
      return;
    }
    http_response res;
    try {
      res = server_->handler(req);
    } catch (const std::exception&) {
      res = http_response{500, "text/plain; charset=utf-8",
                          "internal error\n", {}};
    }
    answer(std::move(res), msg.keep_alive(), msg.version());
  }

  void answer(http_response r, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version);
    res->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers)
      res->insert(k, v);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive && !server_->stopping);
    res->prepare_payload();
    stream_.expires_after(server_->limits.request_deadline);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec,
                                                       std::size_t) {
                        if (ec || !res->keep_alive()) {
                          beast::error_code ignored;
                          self->stream_.socket().shutdown(
                              tcp::socket::shutdown_send, ignored);
                          self->stream_.close();
                          return;
                        }
                        self->buffer_.consume(self->buffer_.size());
                        self->read();
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<bounded_server::impl> server_;
};

/// Answers 503 to a connection beyond the limit and closes it.
void refuse(tcp::socket socket) {
  auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
  auto res = std::make_shared<http::response<http::string_body>>(
      http::status::service_unavailable, 11);
  res->set(http::field::content_type, "text/plain; charset=utf-8");
  res->body() = "too many connections\n";
  res->keep_alive(false);
  res->prepare_payload();
  stream->expires_after(std::chrono::seconds{1});
  http::async_write(*stream, *res,
                    [stream, res](beast::error_code, std::size_t) {
                      stream->close();
                    });
}

} // namespace

void bounded_server::impl::accept() {
  acceptor.async_accept(
      net::make_strand(ioc),
      [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (ec || self->stopping)
          return; // closed by stop
        size_t open = 0;
        {
          std::lock_guard<std::mutex> guard{self->mtx};
          open = self->sessions.size();
        }
        if (open >= self->limits.max_connections)
          refuse(std::move(socket));
        else
          std::make_shared<session>(std::move(socket), self)->run();
        self->accept();
      });
}

void bounded_server::impl::close_all() {
  std::vector<std::shared_ptr<session>> open;
  {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto* s : sessions)
      if (auto p = s->weak_from_this().lock())
        open.push_back(std::move(p));
  }
  for (auto& s : open)
    s->close();
}

caf::expected<std::unique_ptr<bounded_server>>
bounded_server::start(const std::string& host, uint16_t port,
                      http_limits limits, http_handler handler) {
  auto p = std::make_shared<impl>();
  p->limits = limits;
  p->handler = std::move(handler);
  beast::error_code ec;
  auto address = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host,
                                       ec);
  if (ec)
    return make_error(errc::invalid_config,
                      "cannot listen on '" + host + "': not an IP address");
  tcp::endpoint at{address, port};
  p->acceptor.open(at.protocol(), ec);
  // SO_REUSEADDR (for a restart while old connections linger), never
  // SO_REUSEPORT: a second server on a port in use fails to bind.
  if (!ec)
    p->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec)
    p->acceptor.bind(at, ec);
  if (!ec)
    p->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(errc::invalid_config, "cannot listen on " + host + ":" +
                                                std::to_string(port) + ": " +
                                                ec.message());
  p->port = p->acceptor.local_endpoint().port();
  p->accept();
  for (size_t i = 0; i < std::max<size_t>(1, limits.threads); ++i)
    p->threads.emplace_back([raw = p.get()] { raw->ioc.run(); });
  return std::unique_ptr<bounded_server>{new bounded_server(std::move(p))};
}

bounded_server::bounded_server(std::shared_ptr<impl> p)
    : impl_(std::move(p)) {}

bounded_server::~bounded_server() {
  stop();
}

uint16_t bounded_server::port() const {
  return impl_->port;
}

void bounded_server::stop() {
  if (!impl_ || impl_->stopping.exchange(true))
    return;
  net::post(impl_->ioc, [p = impl_] {
    beast::error_code ignored;
    p->acceptor.close(ignored);
  });
  impl_->close_all();
  // Handlers under way finish; nothing waits for a client.
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
  // The aborted operations' handlers hold the sessions (and they this
  // server): run them out, bounded.
  impl_->ioc.restart();
  impl_->ioc.run_for(std::chrono::seconds{2});
}

} // namespace bg_jobs::detail
